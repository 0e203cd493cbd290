"""Our Wanda and SparseGPT against llmcompressor 0.14 run in its own environment.

The reference interpreter is PRUNE_TTS_REFERENCE_PYTHON (default .venv-ref/bin/python under
the repository root); tests skip when it is absent or lacks llmcompressor.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.models.models import decoder_layers, load_model
from pipeline.prune import driver
from pipeline.stages.masks import prune_unstructured
from tests import tiny_models

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).resolve().parent / "reference_llmcompressor.py"

pytestmark = pytest.mark.reference


@pytest.fixture(scope="module")
def reference_python():
    path = Path(os.environ.get("PRUNE_TTS_REFERENCE_PYTHON", ".venv-ref/bin/python"))
    path = path if path.is_absolute() else ROOT / path
    if not path.exists():
        pytest.skip(f"reference interpreter {path} not found; create .venv-ref with llmcompressor==0.14.0.1 "
                    "or set PRUNE_TTS_REFERENCE_PYTHON")
    check = subprocess.run([str(path), "-c", "import llmcompressor"], capture_output=True)
    if check.returncode:
        pytest.skip(f"{path} cannot import llmcompressor")
    return path


CASES = [
    ("wanda", 0.5, None),
    ("wanda", 0.5, "2:4"),
    ("wanda", [0.3, 0.6, 0.45, 0.2], None),
    ("sparsegpt", 0.5, None),
    ("sparsegpt", 0.5, "2:4"),
    ("sparsegpt", [0.3, 0.6, 0.45, 0.2], None),
]
SAMPLES = torch.randint(0, 500, (8, 48), generator=torch.Generator().manual_seed(1)).tolist()


def _model(architecture, tiny_model_factory, folder):
    """The tiny model a case prunes: test_masks_identical_to_llmcompressor's dense models,
    or tiny_models' mixture-of-experts, mixed-attention and fused-projection ones."""
    if architecture in tiny_models.ARCHITECTURES:
        return tiny_models.build(folder / architecture, architecture)
    return tiny_model_factory(architecture=architecture, hidden=128, heads=4, kv_heads=2, intermediate=256)


def _case(architecture, method, sparsity, nm):
    return architecture, method, json.dumps(sparsity), nm  # json: a list of sparsities is a key too


@pytest.fixture(scope="module")
def reference(request, reference_python, tiny_model_factory, tmp_path_factory):
    """llmcompressor's result for every selected case of this module, by _case: {"model":
    folder, "result": RESULT.npz path (absent if the job failed), "ended": how the reference
    process ended, "log": the job's stderr}.

    One reference process runs every case (--jobs): its imports (~10 s) cost more than a
    case's pruning, so one process per case spent most of this module's time importing. The
    script starts each job afresh (bit-identical to one process per case). Only the cases
    pytest selected run, so -k stays cheap."""
    folder = tmp_path_factory.mktemp("reference")
    (folder / "samples.json").write_text(json.dumps(SAMPLES))
    cases = []
    for item in request.session.items:
        params = getattr(item, "callspec", None) and item.callspec.params
        if item.module is request.module and params and "architecture" in params:
            case = _case(params["architecture"], params["method"], params.get("sparsity", 0.5), params["nm"])
            cases += [case] if case not in cases else []
    models = {a: _model(a, tiny_model_factory, folder) for a in dict.fromkeys(c[0] for c in cases)}
    jobs = [{"model": str(models[architecture]), "samples": str(folder / "samples.json"), "method": method,
             "sparsity": json.loads(sparsity), "nm": nm or "0:0", "out": str(folder / f"{i}.npz")}
            for i, (architecture, method, sparsity, nm) in enumerate(cases)]
    (folder / "jobs.json").write_text(json.dumps(jobs))
    cmd = [str(reference_python), str(SCRIPT), "--jobs", str(folder / "jobs.json")]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                              timeout=600 + 120 * len(jobs))
        stderr, ended = proc.stderr, f"exit status {proc.returncode}"
    except subprocess.TimeoutExpired as e:  # keep the jobs that finished; fail the others
        stderr = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr or ""
        ended = f"timed out after {e.timeout} s"
    # the script marks each job's start on stderr: give each case its own part (all of it
    # for a job the process never began)
    logs = re.split(r"^=== job \d+ ===$", stderr, flags=re.M)[1:]
    return {case: {"model": models[case[0]], "result": Path(job["out"]), "ended": ended,
                   "log": logs[i] if i < len(logs) else stderr}
            for i, (case, job) in enumerate(zip(cases, jobs))}


def _compare(reference, architecture, method, sparsity, nm, causal=True):
    """Ours on the case's model against the reference's result; assert every mask and every
    pruned weight equal.

    Exact by construction: ours runs the reference's shapes and operations. One sequence per
    forward and per statistics update, as the reference (batch size 1; batched products round
    differently); eager attention, which llmcompressor forces while calibrating (sdpa computes
    the same function with other rounding, which SparseGPT's weight updates carry into later
    blocks); the tiny models' widths fit one Gram slab (driver.GRAM_CHUNK) and their stacked
    SparseGPT matrices need no lazy column update, so every product has the reference's shape.

    causal=False: llmcompressor 0.14 calibrates some architectures (Qwen3-MoE, Mixtral, Phi3) with
    no attention mask at all, so their attention sees later tokens; the stages keep the causal
    mask. To compare the rest of the method (experts' statistics, selection, updates) ours
    then drops the mask too; docs/REFERENCE_AGREEMENT.md has the figures with it kept."""
    ref = reference[_case(architecture, method, sparsity, nm)]
    if not ref["result"].exists():  # this job failed: its own stderr (the traceback at its end)
        pytest.fail(f"llmcompressor failed on {architecture} {method} {sparsity} {nm} (reference process: "
                    f"{ref['ended']}):\n{ref['log'][-3000:]}")
    theirs = np.load(ref["result"])

    model = load_model(ref["model"])
    model.set_attn_implementation("eager")
    blocks = decoder_layers(model)
    per_block = sparsity if isinstance(sparsity, list) else [sparsity] * len(blocks)
    target = {(b, n): per_block[b] for b, blk in enumerate(blocks) for n, _ in driver.matrices(blk)}
    nm_pair = tuple(map(int, nm.split(":"))) if nm else None
    original = driver.capture_inputs

    def maskless(*args, **kwargs):
        data = original(*args, **kwargs)
        for _, per_type in data:
            for kw in per_type.values():
                kw["attention_mask"] = None
        return data

    with pytest.MonkeyPatch.context() as mp:
        if not causal:
            mp.setattr(driver, "capture_inputs", maskless)
        rows = prune_unstructured(model, method, target, nm_pair, SAMPLES, batch_tokens=1)
    assert len(rows) == len([k for k in theirs.files if "." in k]) == len(target)
    for row in rows:
        ref = theirs[f"{row['block']}.{row['name']}"]
        bits = np.unpackbits(np.frombuffer(row["zeroed"], np.uint8), count=ref.size).astype(bool).reshape(ref.shape)
        assert np.array_equal(bits, ref == 0), (row["block"], row["name"], float((bits != (ref == 0)).mean()))
        ours = driver.matrix(blocks[row["block"]], row["name"]).detach().numpy()
        np.testing.assert_array_equal(ours, ref, err_msg=f"{row['block']}.{row['name']}")


@pytest.mark.parametrize("architecture", ["llama", "qwen2", "qwen3"])
@pytest.mark.parametrize("method,sparsity,nm", CASES)
def test_masks_identical_to_llmcompressor(reference, architecture, method, sparsity, nm):
    _compare(reference, architecture, method, sparsity, nm)


@pytest.mark.parametrize("architecture", ["qwen3_moe", "mixtral", "gemma3_text", "phi3"])
@pytest.mark.parametrize("method,nm", [("wanda", None), ("wanda", "2:4"), ("sparsegpt", None), ("sparsegpt", "2:4")])
def test_experts_and_mixed_attention_identical_to_llmcompressor(reference, architecture, method, nm):
    """Mixture-of-experts (every expert's gate, up and down, statistics from every token as
    llmcompressor's default calibration), Gemma3's 5 sliding : 1 full attention, and Phi3's
    fused projections (Wanda's running mean in the reference's order)."""
    _compare(reference, architecture, method, 0.5, nm, causal=architecture == "gemma3_text")


def test_speed_benchmark_runs_the_stage_path(reference_python):
    """benchmarks/prune_speed.py at a toy size: ours as the masks stage runs it (model read
    block by block, table written) agrees with llmcompressor on nearly every mask bit.

    Not bit for bit: the stage batches several sequences per forward and per statistics
    update, the reference runs one sequence at a time, so their matrix products take other
    kernels and round differently; which near-tied weights flip then depends on the CPU
    (99.9995% on some). What holds on every CPU is near-total agreement; exact agreement, on the
    reference's batch shapes, is test_masks_identical_to_llmcompressor's job."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "prune_speed.py"), "--hidden", "128", "--blocks", "2",
           "--samples", "4", "--length", "32", "--repeat", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PRUNE_TTS_REFERENCE_PYTHON": str(reference_python)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = {line.split()[0]: line for line in proc.stdout.splitlines() if line.split()}
    for method in ("wanda", "sparsegpt"):
        agreement = float(lines[method].split("mask agreement ")[1].split("%")[0])
        assert agreement >= 99.0, proc.stdout  # a wrong statistic or selection agrees on far fewer
        assert "time ratio" in lines[method] and "peak RSS" in lines[method]
