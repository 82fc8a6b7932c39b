"""scaling.study.stats: t distribution against table values (and scipy where importable),
pooled / Welch differences, the growth slope, Holm, Kendall tau-b."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scaling.study import stats


@pytest.mark.parametrize("p, df, table", [(0.975, 2, 4.303), (0.975, 4, 2.776),
                                          (0.95, 10, 1.812), (0.975, 64, 1.998),
                                          (0.995, 1, 63.657), (0.9, 30, 1.310)])
def test_t_quantile_matches_tables(p, df, table):
    assert stats.t_ppf(p, df) == pytest.approx(table, abs=5e-4)
    assert stats.t_cdf(stats.t_ppf(p, df), df) == pytest.approx(p, abs=1e-10)
    assert stats.t_ppf(1 - p, df) == pytest.approx(-stats.t_ppf(p, df))


def test_t_cdf_closed_forms():
    # df = 1 is Cauchy, df = 2 has F(t) = 1/2 + t / (2 sqrt(t^2 + 2))
    for t in (-7.0, -1.0, 0.0, 0.3, 2.5, 40.0):
        assert stats.t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)
        assert stats.t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(t * t + 2)),
                                                  abs=1e-12)


def test_t_against_scipy():
    sp = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3.7, 9, 62, 250):
        for p in (0.6, 0.9, 0.95, 0.975, 0.999):
            assert stats.t_ppf(p, df) == pytest.approx(sp.t.ppf(p, df), rel=1e-9)
        for t in (-3.0, 0.5, 1.96, 8.0):
            assert stats.t_cdf(t, df) == pytest.approx(sp.t.cdf(t, df), abs=1e-12)


@pytest.mark.parametrize("call, match", [
    (lambda: stats.t_ppf(1.0, 3), "p must be in"),
    (lambda: stats.t_cdf(1.0, 0), "degrees of freedom"),
    (lambda: stats.pooled_variance([1.0, 2.0], ["a", "b"]), "no cell has two"),
    (lambda: stats.holm([0.2, 1.5]), r"\[0, 1\]"),
    (lambda: stats.slope([1, 1, 1], [0, 1, 2]), "distinct x"),
    (lambda: stats.kendall_tau_b([1, 2], [1, 2]), "length >= 3"),
])
def test_bad_input_is_one_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_pooled_variance_by_hand():
    # cells {1, 2, 3} (var 1, df 2) and {10, 14} (var 8, df 1); a single value adds nothing
    pooled = stats.pooled_variance([1, 2, 3, 10, 14, 99], ["a", "a", "a", "b", "b", "c"])
    assert (pooled.var, pooled.df, pooled.cells) == (pytest.approx((2 * 1 + 1 * 8) / 3), 3, 2)


def test_difference_pooled_and_welch():
    a, b = [0.86, 0.87, 0.88], [0.85, 0.85, 0.86]
    welch = stats.difference(a, b)
    va, vb = np.var(a, ddof=1), np.var(b, ddof=1)
    assert welch.se == pytest.approx(math.sqrt(va / 3 + vb / 3))
    assert welch.df == pytest.approx((va / 3 + vb / 3) ** 2 / ((va / 3) ** 2 / 2
                                                                + (vb / 3) ** 2 / 2))
    pooled = stats.Pooled(var=0.004 ** 2, df=64, cells=32)
    d = stats.difference(a, b, pooled=pooled)
    assert d.se == pytest.approx(0.004 * math.sqrt(2 / 3)) and d.df == 64
    assert d.critical == pytest.approx(1.998, abs=5e-4)
    assert d.significant == (abs(d.t) > d.critical)
    assert d.method == "pooled" and welch.method == "Welch"
    assert d.verdict() == f"{abs(d.t):.1f} SE (t crit 2.00, 64 df): a difference"
    # 2 SE passes the old rule but not t_{0.975, 2} = 4.303
    small = stats.difference_of_means(0.02, 1e-4, 2, 0.0, 1e-4, 2)
    assert small.t == pytest.approx(2.0) and not small.significant
    assert small.verdict().endswith("within seed noise")


def test_slope_known_line_and_band():
    x = np.repeat(np.arange(4.0), 3)
    noise = np.tile([-0.01, 0.0, 0.01], 4)
    y = 0.85 + 0.005 * x + noise
    fit = stats.slope(x, y)
    assert fit.estimate == pytest.approx(0.005) and fit.intercept == pytest.approx(0.85)
    sigma2 = (noise ** 2).sum() / (len(x) - 2)
    assert fit.se == pytest.approx(math.sqrt(sigma2 / 15.0)) and fit.df == 10
    assert fit.low < 0.005 < fit.high and fit.p_greater < 0.05
    pooled = stats.Pooled(var=1e-4, df=64, cells=32)
    fp = stats.slope(x, y, pooled=pooled)
    assert fp.se == pytest.approx(math.sqrt(1e-4 / 15.0)) and fp.df == 64
    line, lo, hi = fp.band([0.0, 1.5, 3.0])
    assert line == pytest.approx([0.85, 0.8575, 0.865])
    width = hi - lo
    assert width[1] < width[0] and width[0] == pytest.approx(width[2])  # narrowest at x mean
    flat = stats.slope(x, 0.85 - 0.001 * x + noise, pooled=pooled)
    assert flat.p_greater > 0.5


def test_holm_by_hand():
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert stats.holm([]) == []


def test_kendall_tau_b():
    t = stats.kendall_tau_b([1, 2, 3, 4, 5], [1, 2, 3, 5, 4])
    assert t.tau == pytest.approx(0.8)  # 9 concordant, 1 discordant pair of 10
    assert t.low <= t.tau <= t.high <= 1.0
    assert stats.kendall_tau_b([1, 2, 3, 4], [4, 3, 2, 1]).tau == pytest.approx(-1.0)
    # ties: x = 1, 1, 2, 3 and y = 1, 2, 2, 3: 4 concordant, 0 discordant, 5 and 5 untied pairs
    assert stats.kendall_tau_b([1, 1, 2, 3], [1, 2, 2, 3]).tau == pytest.approx(4 / 5)
    a = stats.kendall_tau_b(np.arange(12), np.arange(12) % 5, seed=3)
    assert a == stats.kendall_tau_b(np.arange(12), np.arange(12) % 5, seed=3)
    sp = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 6, 30), rng.integers(0, 6, 30)
    assert stats.kendall_tau_b(x, y).tau == pytest.approx(sp.kendalltau(x, y).statistic)
