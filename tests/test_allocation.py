"""Layer-wise sparsity allocations: OWL, AlphaPruning, LayerIF, and the LayerIF score files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.prune import allocation as al

FIXTURES = Path(__file__).parent / "fixtures"


# --------------------------------------------------------------------------- OWL


def test_outlier_ratio_counts_scores_above_M_times_mean():
    # mean = (1*8 + 2 + 30) / 10 = 4.0; M = 5 -> threshold 20: only 30 is above -> 10 %
    scores = torch.tensor([1.0] * 8 + [2.0, 30.0])
    assert al.outlier_ratio(scores, 5) == pytest.approx(10.0)
    # M = 0.4 -> threshold 1.6: 2 and 30 -> 20 %; a 2-D tensor is flattened
    assert al.outlier_ratio(scores.reshape(2, 5), 0.4) == pytest.approx(20.0)


def test_owl_mapping_by_hand():
    # D = [1, 2, 3, 5], lambda 0.08, s 0.5:
    # r = (D - 1) / 4 * 0.16 = [0, 0.04, 0.08, 0.16]; mean 0.07
    # r - 0.07 + 0.5 = [0.43, 0.47, 0.51, 0.59]; s_l = 1 - r = [0.57, 0.53, 0.49, 0.41]
    out = al.owl_block_sparsity(np.array([1.0, 2, 3, 5]), 0.5, 0.08, clamp_min=0.01)
    np.testing.assert_allclose(out, [0.57, 0.53, 0.49, 0.41], atol=1e-12)
    assert al.weighted_mean(out, np.full(4, 1000)) == pytest.approx(0.5)
    # the block with the most outliers keeps the most weights
    assert np.argmin(out) == 3


def test_owl_clamp_of_non_positive_sparsity():
    # s 0.05: r = [0, 0.04, 0.08, 0.16] - 0.07 + 0.95 = [0.88, 0.92, 0.96, 1.04]
    # s_l = [0.12, 0.08, 0.04, -0.04]; the last one is <= 0 and becomes 0.01
    raw = al.owl_block_sparsity(np.array([1.0, 2, 3, 5]), 0.05, 0.08, clamp_min=None)
    np.testing.assert_allclose(raw, [0.12, 0.08, 0.04, -0.04], atol=1e-12)
    clamped = al.owl_block_sparsity(np.array([1.0, 2, 3, 5]), 0.05, 0.08, clamp_min=0.01)
    np.testing.assert_allclose(clamped, [0.12, 0.08, 0.04, 0.01], atol=1e-12)
    assert al.weighted_mean(clamped, np.ones(4)) > 0.05  # clamping is the documented exception


def test_owl_weighted_mean_on_random_ratios():
    rng = np.random.default_rng(0)
    for _ in range(20):
        ratios = rng.uniform(0, 10, size=rng.integers(2, 40))
        s = rng.uniform(0.1, 0.8)
        out = al.owl_block_sparsity(ratios, s, 0.08, clamp_min=0.01)
        assert al.weighted_mean(out, np.full(ratios.size, 7)) == pytest.approx(s)
        assert out.max() - out.min() == pytest.approx(0.16)


def test_owl_equal_ratios_give_uniform_sparsity():
    np.testing.assert_allclose(al.owl_block_sparsity(np.full(5, 3.0), 0.3, 0.08, 0.01), 0.3)


# --------------------------------------------------------------------------- AlphaPruning


def _llama7b_block_alphas() -> np.ndarray:
    data = json.loads((FIXTURES / "alphapruning_llama7b_alpha_peak.json").read_text())
    alphas = np.array(data["alpha_peak"])
    assert alphas.shape == (224,)
    return alphas.reshape(data["blocks"], data["matrices_per_block"]).mean(1)


def test_alphapruning_reproduces_published_llama7b_ratios():
    block_params = np.full(32, 4 * 4096 * 4096 + 3 * 11008 * 4096)
    out = al.alphapruning_block_sparsity(_llama7b_block_alphas(), block_params, 0.7, 0.2)
    # reference values of the AlphaPruning code for LLaMA-7B, eps 0.2, s 0.7, block-wise
    for block, expected in {0: 0.5704, 9: 0.5680, 25: 0.8521, 31: 0.7317}.items():
        assert round(float(out[block]), 4) == expected
    assert al.weighted_mean(out, block_params) == pytest.approx(0.7)


def test_alphapruning_mapping_by_hand_and_weighted_mean():
    # alphas [2, 3, 4], eps 0.25 -> ratio [0.75, 1.0, 1.25]; params [1, 2, 1]
    # scaler = 0.4 * 4 / (0.75 + 2.0 + 1.25) = 0.4 -> [0.3, 0.4, 0.5]
    out = al.alphapruning_block_sparsity(np.array([2.0, 3, 4]), np.array([1, 2, 1]), 0.4, 0.25)
    np.testing.assert_allclose(out, [0.3, 0.4, 0.5], atol=1e-12)
    rng = np.random.default_rng(1)
    alphas, params = rng.uniform(2, 6, 30), rng.integers(1, 10, 30)
    out = al.alphapruning_block_sparsity(alphas, params, 0.6, 0.3)
    assert al.weighted_mean(out, params) == pytest.approx(0.6)
    assert np.all(np.diff(out[np.argsort(alphas)]) > 0)  # higher alpha, more pruning


def _power_law_matrix(alpha: float, n: int = 1000, seed: int = 0) -> torch.Tensor:
    """A square matrix whose eigenvalues of W^T W are the quantiles of a Pareto law
    p(lambda) ~ lambda^-alpha, lambda >= 1."""
    q = (np.arange(n) + 0.5) / n
    eigs = q ** (-1.0 / (alpha - 1))
    gen = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    return (u * torch.from_numpy(np.sqrt(eigs))) @ v.T


@pytest.mark.parametrize("alpha", [2.5, 4.0])
def test_esd_alpha_recovers_power_law_exponent(alpha):
    assert al.esd_alpha(_power_law_matrix(alpha)) == pytest.approx(alpha, rel=0.05)


def _alpha_by_scanning(weight: torch.Tensor) -> float:
    """The alpha_peak scan written as a plain loop over candidate xmin values."""
    eigs = torch.linalg.svdvals(weight.float()).square().sort().values
    log10 = torch.log10(eigs)
    counts = torch.histc(log10, 100, min=log10.min().item(), max=log10.max().item())
    peak = 10 ** torch.linspace(log10.min().item(), log10.max().item(), 101)[torch.argmax(counts)]
    best = (1.0, 0.0)  # (distance, alpha)
    for i in range(len(eigs) - 1):
        if eigs[i] < torch.log10(0.95 * peak) or eigs[i] > 1.5 * peak:
            continue
        tail = eigs[i:].double()
        alpha = 1 + len(tail) / torch.log(tail / tail[0]).sum().item()
        if alpha > 1:
            model_cdf = 1 - (tail / tail[0]) ** (1 - alpha)
            distance = (model_cdf - torch.arange(len(tail)) / len(tail)).abs().max().item()
            best = min(best, (distance, alpha), key=lambda x: x[0])
    return best[1]


@pytest.mark.parametrize("shape", [(96, 160), (160, 96)])
def test_esd_alpha_equals_a_plain_scan(shape):
    gen = torch.Generator().manual_seed(shape[0])
    weight = torch.randn(*shape, generator=gen) * torch.linspace(0.2, 3.0, shape[1])
    assert al.esd_alpha(weight) == pytest.approx(_alpha_by_scanning(weight), rel=1e-6)


def test_esd_alpha_on_tiny_model(tiny_model):
    from pipeline.models.models import decoder_layers, load_model

    model = load_model(tiny_model)
    alphas = [al.esd_alpha(m.weight) for block in decoder_layers(model)
              for m in block.modules() if isinstance(m, torch.nn.Linear)]
    assert len(alphas) == 4 * 7
    assert all(np.isfinite(a) and a > 1 for a in alphas)


# --------------------------------------------------------------------------- Savitzky-Golay


def test_savgol_interior_coefficients_and_polynomials():
    # the classic window-5 quadratic smoothing coefficients (-3, 12, 17, 12, -3) / 35
    spike = np.zeros(11)
    spike[5] = 35.0
    np.testing.assert_allclose(al.savgol(spike)[3:8], [-3, 12, 17, 12, -3], atol=1e-9)
    # a quadratic is reproduced exactly, edges included ('interp' mode)
    x = np.arange(9.0)
    np.testing.assert_allclose(al.savgol(0.5 * x**2 - 3 * x + 1), 0.5 * x**2 - 3 * x + 1, atol=1e-9)
    with pytest.raises(ValueError, match="window"):
        al.savgol(np.zeros(4))


def test_savgol_matches_scipy():
    signal = pytest.importorskip("scipy.signal")
    x = np.random.default_rng(2).normal(size=17)
    np.testing.assert_allclose(al.savgol(x), signal.savgol_filter(x, 5, 2), atol=1e-10)


# --------------------------------------------------------------------------- LayerIF


def test_layerif_paper_a_by_hand():
    # 4 blocks: fewer than the window of 5, so no smoothing.
    # attention |S| = [0, 1, 2, 4] -> S_norm [0, .25, .5, 1]; e1 .05, e2 .40:
    # p_hat = (1 - S_norm) * .35 + .05 = [.40, .3125, .225, .05]; equal params:
    # eta = .2 * 4 / .9875; p = eta * p_hat
    scores = np.array([[0.0, 5], [1, 5], [-2, 5], [4, 5]])  # |S| is used: -2 counts as 2
    params = np.array([[4.0, 3]] * 4)
    out = al.layerif_group_sparsity(scores, params, 0.2)
    p_hat = np.array([0.40, 0.3125, 0.225, 0.05])
    np.testing.assert_allclose(out[:, 0], 0.8 / 0.9875 * p_hat, atol=1e-12)
    np.testing.assert_allclose(out[:, 1], 0.2, atol=1e-12)  # constant scores: uniform
    assert al.weighted_mean(out, params) == pytest.approx(0.2)


def test_layerif_paper_a_smooths_and_keeps_weighted_mean():
    rng = np.random.default_rng(3)
    scores, params = rng.uniform(0, 5, (12, 2)), rng.integers(1, 5, (12, 2)).astype(float)
    out = al.layerif_group_sparsity(scores, params, 0.3)
    for g in range(2):
        assert al.weighted_mean(out[:, g], params[:, g]) == pytest.approx(0.3)
        norm = (scores[:, g] - scores[:, g].min()) / np.ptp(scores[:, g])
        p_hat = (1 - np.clip(al.savgol(norm), 0, 1)) * 0.35 + 0.05
        np.testing.assert_allclose(out[:, g], p_hat * 0.3 * params[:, g].sum() / (p_hat * params[:, g]).sum())
    # higher influence, lower sparsity: the raw extreme blocks end at the extremes after smoothing
    lo, hi = np.argmin(scores[:, 0]), np.argmax(scores[:, 0])
    assert out[hi, 0] < out[lo, 0]


def test_layerif_paper_a_clips_at_one():
    # s 0.9 with e1 .05, e2 .40 needs eta * .40 > 1 for the least influential block
    scores = np.array([[0.0, 0], [1, 1], [2, 2], [3, 3]])
    out = al.layerif_group_sparsity(scores, np.ones((4, 2)), 0.9)
    assert out.max() == 1.0
    assert al.weighted_mean(out, np.ones((4, 2))) < 0.9  # clipping lowers the mean


def test_layerif_original_direction():
    # all entries together: S [0, 1, 2, 3, 4, 5, 6, 8] (blocks x groups), eps .3:
    # ratio = S / 8 * .6 + .7; equal params; scaler = s / mean(ratio)
    scores = np.array([[0.0, 1], [2, 3], [4, 5], [6, 8]])
    out = al.layerif_group_sparsity(scores, np.ones((4, 2)), 0.5, direction="original", eps=0.3)
    ratio = scores / 8 * 0.6 + 0.7
    np.testing.assert_allclose(out, ratio * 0.5 / ratio.mean(), atol=1e-12)
    assert out[3, 1] > out[0, 0]  # higher influence, more pruning: opposite of paper A
    paper_a = al.layerif_group_sparsity(scores, np.ones((4, 2)), 0.5)
    assert paper_a[3, 1] < paper_a[0, 0]
    # clipped at 0.99
    high = al.layerif_group_sparsity(scores, np.ones((4, 2)), 0.9, direction="original", eps=0.5)
    assert high.max() == 0.99 and (high == 0.99).sum() >= 1
    with pytest.raises(ValueError, match="direction"):
        al.layerif_group_sparsity(scores, np.ones((4, 2)), 0.5, direction="reverse")


def test_layerif_rejects_bad_shapes():
    with pytest.raises(ValueError, match="shape"):
        al.layerif_group_sparsity(np.ones((4, 3)), np.ones((4, 3)), 0.5)


# --------------------------------------------------------------------------- score files


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_layerif_scores_round_trip(tmp_path, suffix):
    scores = np.random.default_rng(4).normal(size=(6, 2))
    path = al.write_layerif_scores(scores, tmp_path / f"scores{suffix}")
    np.testing.assert_array_equal(al.read_layerif_scores(path), scores)


def test_layerif_scores_accepts_any_row_order(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("score,group,block,note\n3,mlp,1,x\n1,attention,1,y\n2,MLP,0,z\n0, attention,0,w\n")
    np.testing.assert_array_equal(al.read_layerif_scores(path), [[0, 2], [1, 3]])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("block,group\n0,attention\n", "missing column"),
        ("block,group,score\n0,attention,1\n0,ffn,2\n", "unknown group"),
        ("block,group,score\n0,attention,1\n0,mlp,x\n", "finite"),
        ("block,group,score\n0,attention,1\n0,mlp,2\n0,mlp,3\n", "duplicate"),
        ("block,group,score\n0,attention,1\n0,mlp,2\n2,attention,1\n2,mlp,2\n", "missing"),
        ("block,group,score\n-1,attention,1\n", "non-negative integers"),
    ],
)
def test_layerif_scores_errors(tmp_path, text, message):
    path = tmp_path / "s.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        al.read_layerif_scores(path)


def test_layerif_scores_file_problems(tmp_path):
    with pytest.raises(FileNotFoundError):
        al.read_layerif_scores(tmp_path / "absent.csv")
    (tmp_path / "s.txt").write_text("x")
    with pytest.raises(ValueError, match="extension"):
        al.read_layerif_scores(tmp_path / "s.txt")
