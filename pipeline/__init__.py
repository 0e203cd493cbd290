"""prune-tts: what pruning does to a reasoning LLM's test-time scaling."""

__version__ = "0.1.0"
