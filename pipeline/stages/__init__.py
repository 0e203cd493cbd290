"""The workflow's stages: one module per Snakemake rule (rules/*.smk), in rule order, each run as
`python -m pipeline.stages.<name>` (`--help` lists its arguments):

- train_demo      train a demo model from scratch on the synthetic task (rule train_demo)
- convert_gguf    dequantize a model's GGUF file once into a safetensors checkpoint (rule convert_gguf)
- base_model      resolve a base model to a local folder and write its manifest (rule base_model)
- benchmark_data  load a benchmark into the normalised table (rule benchmark_data)
- calibration     sample calibration sequences with the model's own tokenizer (rule calibration)
- stats           per-model statistics shared by every variant (rules stats_weights, stats_activations)
- allocation      AlphaPruning's per-block sparsities, checked before any masks job (rule allocation)
- masks           a variant's pruning masks, or the blocks it removes (rule masks)
- export          the pruned checkpoint that vLLM loads (rule export)
- perplexity      perplexity of a base or pruned model on a text (rule perplexity)
- generate        test-time scaling generations of a variant on a benchmark (rule generate)
- grade           grade every answer of one generations file (rule grade)
- judge           a judge's second opinion, and where it differs from the grader (rules judge,
                  judge_disagreements)
- aggregate       the main table and its pivots (rule aggregate)
- plots           accuracy against budget and against sparsity (rule plots)

A stage parses its arguments, checks its config slice and calls the libraries (pipeline.data,
pipeline.models, pipeline.prune, pipeline.generation, pipeline.grading, pipeline.reporting) on
top of pipeline.core; no library imports a stage.
"""
