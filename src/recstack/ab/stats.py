"""The statistics of an A/B test: sample size, fixed-horizon tests, intervals, SRM, mSPRT.

All functions take per-variant summaries (counts, or arrays of per-user outcomes) and return
plain numbers, so that the report, the simulation and the tests share one implementation.

- `sample_size`: users per variant for the two-sided two-proportion z-test (pooled variance
  under H0, unpooled under H1; Fleiss, Levin & Paik 2003, eq. 4.14 without continuity correction).
- `two_proportion_ztest`: pooled z-test of p_B = p_A; CI of the difference (Wald, unpooled).
- `welch_ttest`: Welch's t-test for means (unequal variances), for ratings and other means.
- `relative_lift_ci`: lift = p_B / p_A − 1 with a delta-method CI on log(p_B / p_A).
- `bootstrap_lift_ci`: percentile bootstrap CI of the relative lift, seeded.
- `srm_check`: chi-square goodness of fit of the observed users per variant against the
  planned shares (sample-ratio mismatch; flagged below p = 0.001, as is common practice).
- `msprt_pvalues`: always-valid p-values of the mixture SPRT (Johari, Pekelis & Walsh 2017)
  with a normal mixing distribution, for continuous peeking.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from recstack.errors import ConfigError

SRM_ALPHA = 0.001


def _z(q: float) -> float:
    return float(stats.norm.ppf(q))


def sample_size(base_rate: float, lift: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Users per variant for a two-sided two-proportion z-test to detect a relative `lift`
    (0.05 = +5%) over `base_rate` with the given `alpha` and `power`. Rounded up."""
    if not 0 < base_rate < 1:
        raise ConfigError(f"base rate {base_rate!r}: must be in (0, 1)")
    p2 = base_rate * (1 + lift)
    if lift == 0 or not 0 < p2 < 1:
        raise ConfigError(f"lift {lift!r}: must be non-zero with base rate × (1 + lift) in (0, 1)")
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ConfigError(f"alpha {alpha!r} and power {power!r} must be in (0, 1)")
    p1 = base_rate
    pbar = (p1 + p2) / 2
    num = _z(1 - alpha / 2) * math.sqrt(2 * pbar * (1 - pbar)) + _z(power) * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    return int(math.ceil(num * num / (p2 - p1) ** 2))


@dataclass(frozen=True)
class TestResult:
    """One comparison of variant B against A: effect, interval, statistic, p-value."""

    difference: float
    ci_low: float
    ci_high: float
    statistic: float
    p_value: float
    test: str

    def to_dict(self) -> dict[str, float | str]:
        return {"difference": self.difference, "ci": [self.ci_low, self.ci_high],
                "statistic": self.statistic, "p_value": self.p_value, "test": self.test}


def two_proportion_ztest(x_a: int, n_a: int, x_b: int, n_b: int, alpha: float = 0.05) -> TestResult:
    """Pooled two-sided z-test of p_B − p_A = 0, with a Wald CI of the difference."""
    if n_a <= 0 or n_b <= 0:
        return TestResult(math.nan, math.nan, math.nan, math.nan, math.nan, "two-proportion z")
    pa, pb = x_a / n_a, x_b / n_b
    pooled = (x_a + x_b) / (n_a + n_b)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    z = (pb - pa) / se0 if se0 > 0 else 0.0
    p = float(2 * stats.norm.sf(abs(z)))
    se = math.sqrt(pa * (1 - pa) / n_a + pb * (1 - pb) / n_b)
    half = _z(1 - alpha / 2) * se
    return TestResult(pb - pa, pb - pa - half, pb - pa + half, z, p, "two-proportion z")


def two_proportion_ztest_many(x_a: np.ndarray, n_a: np.ndarray, x_b: np.ndarray, n_b: np.ndarray) -> np.ndarray:
    """Vectorised p-values of `two_proportion_ztest` over arrays of runs (for simulations)."""
    x_a, n_a, x_b, n_b = (np.asarray(v, np.float64) for v in (x_a, n_a, x_b, n_b))
    pooled = (x_a + x_b) / np.maximum(n_a + n_b, 1)
    se0 = np.sqrt(pooled * (1 - pooled) * (1 / np.maximum(n_a, 1) + 1 / np.maximum(n_b, 1)))
    diff = x_b / np.maximum(n_b, 1) - x_a / np.maximum(n_a, 1)
    z = np.divide(diff, se0, out=np.zeros_like(diff), where=se0 > 0)
    return 2 * stats.norm.sf(np.abs(z))


def welch_ttest(a: np.ndarray, b: np.ndarray, alpha: float = 0.05) -> TestResult:
    """Welch's two-sided t-test of mean(B) − mean(A) = 0, with its CI (Welch–Satterthwaite df)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or len(b) < 2:
        return TestResult(math.nan, math.nan, math.nan, math.nan, math.nan, "Welch t")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    diff = float(b.mean() - a.mean())
    se = math.sqrt(va + vb)
    if se == 0:
        return TestResult(diff, diff, diff, 0.0, 1.0 if diff == 0 else 0.0, "Welch t")
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    t = diff / se
    p = float(2 * stats.t.sf(abs(t), df))
    half = float(stats.t.ppf(1 - alpha / 2, df)) * se
    return TestResult(diff, diff - half, diff + half, t, p, "Welch t")


def relative_lift_ci(mean_a: float, var_a: float, n_a: int, mean_b: float, var_b: float, n_b: int,
                     alpha: float = 0.05) -> tuple[float, float, float]:
    """(lift, low, high) of mean_B / mean_A − 1; delta-method CI on the log ratio.

    var_*: per-user outcome variances (p(1−p) for proportions)."""
    if mean_a <= 0 or mean_b <= 0 or n_a <= 0 or n_b <= 0:
        return (mean_b / mean_a - 1 if mean_a > 0 else math.nan), math.nan, math.nan
    lift = mean_b / mean_a - 1
    se = math.sqrt(var_a / (n_a * mean_a**2) + var_b / (n_b * mean_b**2))
    half = _z(1 - alpha / 2) * se
    ratio = mean_b / mean_a
    return lift, ratio * math.exp(-half) - 1, ratio * math.exp(half) - 1


def bootstrap_lift_ci(a: np.ndarray, b: np.ndarray, resamples: int = 2000, alpha: float = 0.05,
                      seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of mean(B) / mean(A) − 1 from per-user outcomes (seeded)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) == 0 or len(b) == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    if np.isin(a, (0.0, 1.0)).all() and np.isin(b, (0.0, 1.0)).all():
        # a resample of 0/1 outcomes is a binomial draw: no need to materialise the resamples
        ma = rng.binomial(len(a), a.mean(), resamples) / len(a)
        mb = rng.binomial(len(b), b.mean(), resamples) / len(b)
    else:
        ma = np.array([a[rng.integers(0, len(a), len(a))].mean() for _ in range(resamples)])
        mb = np.array([b[rng.integers(0, len(b), len(b))].mean() for _ in range(resamples)])
    ok = ma > 0
    if not ok.any():
        return math.nan, math.nan
    lifts = mb[ok] / ma[ok] - 1
    return float(np.quantile(lifts, alpha / 2)), float(np.quantile(lifts, 1 - alpha / 2))


def srm_check(observed: Sequence[int], shares: Sequence[float]) -> dict[str, float | bool]:
    """Sample-ratio mismatch: chi-square test of users per variant against the planned shares."""
    obs = np.asarray(observed, np.float64)
    sh = np.asarray(shares, np.float64)
    if len(obs) != len(sh) or len(obs) < 2 or obs.sum() == 0:
        return {"chi2": math.nan, "p_value": math.nan, "mismatch": False}
    expected = obs.sum() * sh / sh.sum()
    chi2 = float(((obs - expected) ** 2 / expected).sum())
    p = float(stats.chi2.sf(chi2, len(obs) - 1))
    return {"chi2": chi2, "p_value": p, "mismatch": p < SRM_ALPHA}


def msprt_pvalues(diffs: np.ndarray, variance: float, tau2: float) -> np.ndarray:
    """Always-valid p-values after each pair of users (Johari et al. 2017, normal mixture).

    diffs: (n,) per-pair differences y_B − y_A in arrival order; variance: the variance σ² of one
    difference (for proportions p_A(1−p_A) + p_B(1−p_B), estimated); tau2: the mixing variance.
    p_n = min(p_{n−1}, 1 / Λ_n) with Λ_n = sqrt(σ²/(σ²+nτ²)) · exp(n²τ² d̄² / (2σ²(σ²+nτ²))).
    """
    d = np.asarray(diffs, np.float64)
    n = np.arange(1, len(d) + 1, dtype=np.float64)
    mean = np.cumsum(d) / n
    v = max(float(variance), 1e-12)
    log_lr = 0.5 * np.log(v / (v + n * tau2)) + (n * n * tau2 * mean * mean) / (2 * v * (v + n * tau2))
    p = np.minimum(1.0, np.exp(-log_lr))
    return np.minimum.accumulate(p)
