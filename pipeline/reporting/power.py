"""What a paired comparison can detect: the minimum detectable difference and the seeds needed.

A comparison's unit is the problem (docs/STATISTICS.md): d_p = first's score on problem p minus
second's, each the mean of its m draws (seeds x samples). Its variance splits in two parts,

    Var(d_p) = between + within / m

`between`: how much the true difference varies from problem to problem (what more draws cannot
remove); `within`: the variance of one draw of each variant about its problem's accuracy, summed
over the two (Bernoulli draws: p (1 - p) each). Both are estimated from a run: `within` from each
problem's draws (unbiased, m / (m - 1) * p_hat (1 - p_hat)), `between` as what is left of the
observed Var(d_p) (at least 0). With n problems the difference's standard error is
sqrt(Var(d_p) / n), and the minimum detectable difference at two-sided level alpha and power
1 - beta is the paired t-test's (statsmodels TTestPower): the effect size it needs, times the
standard deviation of d_p.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from statsmodels.stats.power import TTestPower


@lru_cache(maxsize=4096)
def multiplier(n: int, alpha: float, power: float) -> float:
    """The detectable difference in units of the standard error, with n problems (df n - 1):
    about z(1 - alpha/2) + z(power) = 2.80 at 0.05 and 0.8 for large n, more for small n."""
    if n < 2:
        return np.nan
    effect = TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=power, alternative="two-sided")
    return float(np.squeeze(effect)) * np.sqrt(n)


def within_variance(scores: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Per problem, the unbiased variance of one draw of a variant whose problem score (mean of
    `draws` Bernoulli draws) is `scores`; 0 where a problem has a single draw."""
    scores, draws = np.asarray(scores, dtype=float), np.asarray(draws, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(draws > 1, scores * (1 - scores) * draws / (draws - 1), 0.0)


def variance_parts(differences: np.ndarray, within_first: np.ndarray, within_second: np.ndarray,
                   draws_first: np.ndarray, draws_second: np.ndarray) -> tuple[float, float]:
    """(between, within) of one comparison on one benchmark, from its per-problem differences
    and each side's per-problem within variance and draws."""
    differences = np.asarray(differences, dtype=float)
    if len(differences) < 2:
        return np.nan, np.nan
    noise = np.mean(within_first / draws_first + within_second / draws_second)
    between = max(float(np.var(differences, ddof=1)) - float(noise), 0.0)
    return between, float(np.mean(within_first + within_second))


def detectable(n: int, draws: float, between: float, within: float, alpha: float, power: float) -> float:
    """The minimum detectable difference with n problems of `draws` draws per variant each."""
    return multiplier(n, alpha, power) * np.sqrt((between + within / draws) / n)


def seeds_needed(difference: float, n: int, samples: int, between: float, within: float, alpha: float,
                 power: float, most: int = 10_000) -> int | None:
    """The fewest seeds (each of `samples` draws per problem) at which a difference of
    `difference` is detectable; None where no number of seeds reaches it (the problems differ
    too much among themselves: only more problems help)."""
    m = multiplier(n, alpha, power)
    if not np.isfinite(m) or (m ** 2) * between / n >= difference ** 2:
        return None
    # (m^2 / n) (between + within / (s k)) <= d^2  <=>  s >= within / (k (d^2 n / m^2 - between))
    seeds = int(np.ceil(within / (samples * (difference ** 2 * n / m ** 2 - between)) - 1e-12))
    seeds = max(seeds, 1)
    return seeds if seeds <= most else None
