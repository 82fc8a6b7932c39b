"""The statistics of a study: seed noise, differences, growth, rank agreement (issue 30).

Pure functions on numpy arrays and pandas tables; numbers in, numbers and one-line verdicts out.

- Seed variance is **pooled across the cells** of a table (a cell = one model, its seeds):
  ``s_p^2 = sum_i (n_i - 1) s_i^2 / sum_i (n_i - 1)`` with ``sum_i (n_i - 1)`` degrees of
  freedom, or a difference uses **Welch**'s SE with the Welch-Satterthwaite df.
- "A difference" is a two-sided t test at ``alpha`` (0.05): ``|d| / SE`` past
  ``t_{1 - alpha/2, df}``, not a fixed 2 SE.
- Growth is the OLS slope of accuracy on ``log2(MACs)`` (per doubling), tested one-sided
  (slope > 0); across families the p-values are Holm-corrected (Holm 1979).
- Rank agreement is Kendall's tau-b (Kendall 1945) with a percentile bootstrap CI over items.

The Student-t distribution is computed here (scipy is not a dependency): its CDF through the
regularized incomplete beta function, ``P(T <= t) = 1 - I_x(df/2, 1/2) / 2`` for t >= 0 with
``x = df / (df + t^2)`` (Abramowitz & Stegun 26.7.1), the latter by its continued fraction
(DLMF 8.17.22, evaluated by the modified Lentz method); the quantile by bisection on the CDF.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

ALPHA = 0.05


# -- the Student-t distribution ------------------------------------------------------------------
def _beta_fraction(x: float, a: float, b: float) -> float:
    """The continued fraction of I_x(a, b) (DLMF 8.17.22), for x < (a + 1) / (a + b + 2)."""
    tiny = 1e-300
    f, c, d = tiny, tiny, 0.0
    for j in range(1, 1000):
        if j == 1:
            num = 1.0
        else:
            m = (j - 1) // 2
            if (j - 1) % 2:  # d_{2m+1}
                num = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
            else:  # d_{2m}
                num = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        d = 1.0 + num * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + num / c
        c = c if abs(c) > tiny else tiny
        f *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return f


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), a, b > 0, 0 <= x <= 1."""
    if not (a > 0 and b > 0):
        raise ValueError(f"betainc: a and b must be > 0, got a={a!r}, b={b!r}")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"betainc: x must be in [0, 1], got {x!r}")
    if x in (0.0, 1.0):
        return x
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast on the other side
        return 1.0 - betainc(b, a, 1.0 - x)
    log_front = (a * math.log(x) + b * math.log1p(-x) + math.lgamma(a + b) - math.lgamma(a)
                 - math.lgamma(b))
    return math.exp(log_front) / a * _beta_fraction(x, a, b)


def _check_df(df: float) -> None:
    if not (isinstance(df, (int, float, np.number)) and df > 0 and math.isfinite(df)):
        raise ValueError(f"degrees of freedom must be a finite number > 0, got {df!r}")


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` (> 0, not necessarily integer) degrees of freedom."""
    _check_df(df)
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_ppf(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (bisection on the CDF,
    to 1e-12), 0 < p < 1."""
    _check_df(df)
    if not 0.0 < p < 1.0:
        raise ValueError(f"t_ppf: p must be in (0, 1), got {p!r}")
    if p < 0.5:
        return -t_ppf(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, 2.0 * hi
    while hi - lo > 1e-12 * max(1.0, hi):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
    return 0.5 * (lo + hi)


# -- seed noise ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pooled:
    """A variance pooled across cells, ``sum (n_i - 1) s_i^2 / sum (n_i - 1)``, and its df."""

    var: float
    df: int
    cells: int

    @property
    def std(self) -> float:
        return math.sqrt(self.var)


def pooled_variance(values: Sequence[float] | np.ndarray | pd.Series,
                    cells: Sequence[object] | np.ndarray | pd.Series) -> Pooled:
    """The within-cell variance of ``values`` pooled across the cells named by ``cells``
    (one label per value); cells of one value add nothing. No cell of two values is a
    ValueError (no noise estimate)."""
    frame = pd.DataFrame({"v": np.asarray(values, dtype=float), "c": list(cells)})
    g = frame.groupby("c", sort=False)["v"].agg(["var", "count"])
    g = g[g["count"] > 1]
    df = int((g["count"] - 1).sum())
    if df == 0:
        raise ValueError("pooled_variance: no cell has two or more values, so there is no "
                         "estimate of the noise")
    return Pooled(float(((g["count"] - 1) * g["var"]).sum() / df), df, len(g))


def welch_df(var_a: float, n_a: int, var_b: float, n_b: int) -> float:
    """Welch-Satterthwaite df: ``(v_a/n_a + v_b/n_b)^2 / sum (v/n)^2 / (n - 1)``."""
    if n_a < 2 or n_b < 2:
        raise ValueError(f"Welch needs two or more values per side, got n_a={n_a}, n_b={n_b}")
    ua, ub = var_a / n_a, var_b / n_b
    den = ua * ua / (n_a - 1) + ub * ub / (n_b - 1)
    return (ua + ub) ** 2 / den if den > 0 else float(n_a + n_b - 2)


@dataclass(frozen=True)
class Difference:
    """``a - b`` with its SE, df, t = estimate / SE, the two-sided critical value at ``alpha``
    and the two-sided p-value; ``method`` is "pooled" or "Welch"."""

    estimate: float
    se: float
    df: float
    t: float
    critical: float
    p: float
    method: str
    alpha: float = ALPHA

    @property
    def significant(self) -> bool:
        return abs(self.t) > self.critical

    def verdict(self) -> str:
        """One line: |t| against the critical value, and whether that is a difference."""
        word = "a difference" if self.significant else "within seed noise"
        return f"{abs(self.t):.1f} SE (t crit {self.critical:.2f}, {self.df:.3g} df): {word}"


def difference_of_means(mean_a: float, var_a: float, n_a: int, mean_b: float, var_b: float,
                        n_b: int, pooled: Pooled | None = None, alpha: float = ALPHA
                        ) -> Difference:
    """``mean_a - mean_b`` tested two-sided: with ``pooled``, SE = ``s_p sqrt(1/n_a + 1/n_b)``
    on the pooled df (the cells' own variances are ignored); without, Welch's SE
    ``sqrt(v_a/n_a + v_b/n_b)`` on the Welch-Satterthwaite df."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if pooled is not None:
        se, df, method = pooled.std * math.sqrt(1 / n_a + 1 / n_b), float(pooled.df), "pooled"
    else:
        se, df, method = math.sqrt(var_a / n_a + var_b / n_b), welch_df(var_a, n_a, var_b,
                                                                          n_b), "Welch"
    est = mean_a - mean_b
    if se == 0:
        raise ValueError("difference: the standard error is 0 (no seed noise at all)")
    t = est / se
    return Difference(est, se, df, t, t_ppf(1 - alpha / 2, df), 2 * t_cdf(-abs(t), df),
                      method, alpha)


def difference(a: Sequence[float], b: Sequence[float], pooled: Pooled | None = None,
               alpha: float = ALPHA) -> Difference:
    """:func:`difference_of_means` of two samples (``ddof=1`` variances)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    va = float(a.var(ddof=1)) if len(a) > 1 else 0.0
    vb = float(b.var(ddof=1)) if len(b) > 1 else 0.0
    return difference_of_means(float(a.mean()), va, len(a), float(b.mean()), vb, len(b),
                               pooled, alpha)


# -- growth: the slope on log2(MACs) -------------------------------------------------------------
@dataclass(frozen=True)
class Slope:
    """OLS fit ``y = intercept + estimate * x``; SE, df and the two-sided ``1 - alpha`` CI
    ``[low, high]`` of the slope; ``p_greater``: one-sided p-value of slope > 0."""

    estimate: float
    intercept: float
    se: float
    df: float
    low: float
    high: float
    p_greater: float
    sigma2: float
    n: int
    x_mean: float
    sxx: float
    critical: float
    noise: str

    def band(self, x: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The fitted line at ``x`` and its pointwise ``1 - alpha`` confidence band of the mean:
        ``yhat -+ t sqrt(sigma^2 (1/n + (x - xbar)^2 / Sxx))``."""
        x = np.asarray(x, dtype=float)
        fit = self.intercept + self.estimate * x
        half = self.critical * np.sqrt(self.sigma2 * (1 / self.n + (x - self.x_mean) ** 2
                                                      / self.sxx))
        return fit, fit - half, fit + half


def slope(x: Sequence[float], y: Sequence[float], pooled: Pooled | None = None,
          alpha: float = ALPHA) -> Slope:
    """The OLS slope of ``y`` on ``x`` (x = log2 MACs: accuracy gained per doubling), every
    point and seed one observation. ``Var(b) = sigma^2 / Sxx``, ``Sxx = sum (x - xbar)^2``;
    ``sigma^2`` is the ``pooled`` seed variance with its df (pure seed noise: the question is
    whether the trend beats it) or, without ``pooled``, the fit's own residual variance
    ``RSS / (n - 2)`` on ``n - 2`` df (which also holds any curvature)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"slope: x and y must be 1-d of one length, got {x.shape}, {y.shape}")
    n = len(x)
    sxx = float(((x - x.mean()) ** 2).sum())
    if n < 2 or sxx == 0:
        raise ValueError(f"slope: needs two or more distinct x values, got {sorted(set(x))}")
    b = float(((x - x.mean()) * (y - y.mean())).sum() / sxx)
    a = float(y.mean() - b * x.mean())
    if pooled is not None:
        sigma2, df, noise = pooled.var, float(pooled.df), "pooled"
    else:
        if n < 3:
            raise ValueError("slope: its own residuals need three or more points")
        sigma2, df, noise = float(((y - a - b * x) ** 2).sum() / (n - 2)), float(n - 2), "resid"
    se = math.sqrt(sigma2 / sxx)
    crit = t_ppf(1 - alpha / 2, df)
    p = 1.0 - t_cdf(b / se, df) if se > 0 else float(b <= 0)
    return Slope(b, a, se, df, b - crit * se, b + crit * se, p, sigma2, n, float(x.mean()), sxx,
                 crit, noise)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm 1979), in the input's order: the i-th smallest
    of m becomes ``max_{j <= i} min(1, (m - j + 1) p_(j))``; reject where adjusted < alpha."""
    p = np.asarray(pvalues, dtype=float)
    if p.size and (np.isnan(p).any() or (p < 0).any() or (p > 1).any()):
        raise ValueError(f"holm: p-values must lie in [0, 1], got {list(pvalues)}")
    order = np.argsort(p, kind="stable")
    m = len(p)
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out.tolist()


# -- rank agreement ------------------------------------------------------------------------------
def _tau_b(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """tau-b over the last axis: ``sum sx sy / sqrt(sum sx^2 sum sy^2)`` over pairs i < j,
    ``sx = sign(x_i - x_j)`` (tied pairs count in neither the numerator nor their side)."""
    sx = np.sign(x[..., :, None] - x[..., None, :])
    sy = np.sign(y[..., :, None] - y[..., None, :])
    num = (sx * sy).sum(axis=(-2, -1))
    den = np.sqrt((sx * sx).sum(axis=(-2, -1)) * (sy * sy).sum(axis=(-2, -1)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


@dataclass(frozen=True)
class Tau:
    """Kendall's tau-b, its percentile bootstrap ``1 - alpha`` CI, the number of items."""

    tau: float
    low: float
    high: float
    n: int
    resamples: int


def kendall_tau_b(x: Sequence[float], y: Sequence[float], alpha: float = ALPHA,
                  resamples: int = 2000, seed: int = 0) -> Tau:
    """Kendall's tau-b between two rankings of the same items, with a percentile bootstrap CI:
    ``resamples`` draws of the items with replacement (numpy generator ``seed``: the CI is
    reproducible); a drawn item twice is a pair tied on both sides, which tau-b leaves out."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 3:
        raise ValueError(f"kendall_tau_b: needs two 1-d sequences of one length >= 3, got "
                         f"shapes {x.shape} and {y.shape}")
    tau = float(_tau_b(x, y))
    idx = np.random.default_rng(seed).integers(0, len(x), size=(resamples, len(x)))
    boot = _tau_b(x[idx], y[idx])
    low, high = np.nanquantile(boot, [alpha / 2, 1 - alpha / 2])
    return Tau(tau, float(low), float(high), len(x), resamples)
