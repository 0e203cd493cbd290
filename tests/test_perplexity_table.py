"""Perplexity against sparsity (pipeline.reporting.perplexity): the table's shares and ratios,
and the figure on a log axis."""

from __future__ import annotations

import pandas as pd

from pipeline.reporting import perplexity


def _main_table() -> pd.DataFrame:
    variants = [  # variant, method, sparsity, nm, allocation, layers, perplexity
        ("dense", "dense", None, None, None, None, 10.0),
        ("wanda-50", "wanda", 0.5, None, "uniform", None, 20.0),
        ("wanda-70", "wanda", 0.7, None, "uniform", None, 200.0),
        ("wanda-70-owl", "wanda", 0.7, None, "owl", None, 100.0),
        ("wanda-2of4", "wanda", None, "2:4", "uniform", None, 40.0),
        ("shortgpt-3", "shortgpt", None, None, None, 3, 30.0),
    ]
    rows = []
    for variant, method, sparsity, nm, allocation, layers, ppl in variants:
        for budget in (8, 32):  # main.csv repeats a variant's perplexity on each of its cells
            rows.append({"model": "m", "variant": variant, "benchmark": "b", "budget": budget, "method": method,
                         "sparsity": sparsity, "nm": nm, "allocation": allocation, "layers": layers,
                         "perplexity": ppl})
    return pd.DataFrame(rows)


def _spec() -> dict:
    table = _main_table().drop_duplicates("variant")
    variants = {row.variant: {"method": row.method} for row in table.itertuples()}
    return {"models": ["m"], "variants": variants, "depths": {"m": 30}}


def test_table_gives_each_variant_its_share_and_ratio(tmp_path):
    rows = perplexity.variant_table(_main_table(), "m", _spec()).set_index("variant")
    assert list(rows.index)[0] == "dense" and len(rows) == 6
    assert rows.loc["wanda-2of4", "sparsity"] == 0.5 and rows.loc["wanda-2of4", "pattern"] == "2:4"
    assert rows.loc["shortgpt-3", "sparsity"] == 0.1 and rows.loc["shortgpt-3", "allocation"] == ""
    assert rows.loc["wanda-70-owl", "vs_dense"] == 10.0 and rows.loc["dense", "vs_dense"] == 1.0
    written = perplexity.write_tables(_main_table(), _spec(), tmp_path)
    assert [p.name for p in written] == ["perplexity-m.csv", "perplexity-m.md"]
    assert "| wanda 70% (owl) | 70.0% | 100.00 | 10.00 |" in written[1].read_text()
    # without a known depth removed blocks have no share: the row stays, its sparsity is empty
    no_depth = perplexity.variant_table(_main_table(), "m", {**_spec(), "depths": {}}).set_index("variant")
    assert pd.isna(no_depth.loc["shortgpt-3", "sparsity"])


def test_figure_is_drawn_on_a_log_axis(tmp_path):
    perplexity.figure(_main_table(), "m", _spec(), tmp_path)
    svg = (tmp_path / "perplexity_vs_sparsity-m.svg").read_text()
    assert (tmp_path / "perplexity_vs_sparsity-m.png").stat().st_size > 10_000
    for label in ("wanda (uniform)", "wanda (owl)", "shortgpt", "wanda 2:4", "dense", "log scale"):
        assert label in svg, label


def test_a_family_measured_once_is_a_point_not_a_line_from_dense():
    rows = perplexity.variant_table(_main_table(), "m", _spec())
    families = {name: (points, joined) for name, points, joined in perplexity.series(rows)}
    assert set(families) == {"wanda (uniform)", "wanda (owl)", "shortgpt"}
    uniform, joined = families["wanda (uniform)"]
    assert joined and list(uniform["sparsity"]) == [0.0, 0.5, 0.7]  # from dense, in order
    owl, joined = families["wanda (owl)"]
    assert not joined and list(owl["sparsity"]) == [0.7] and list(owl["perplexity"]) == [100.0]
    assert not families["shortgpt"][1]  # one removal measured: no curve drawn through 0..0.1
