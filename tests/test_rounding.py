"""Rounding rules: published EfficientNet/MobileNet cases and group-compatibility properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from scaling.ir.rounding import (
    compatible_widths,
    group_quantum,
    make_divisible,
    round_filters,
    round_repeats,
    round_resolution,
    round_to_quantum,
)

# Tan & Le 2019 / torchvision EfficientNet: (width, depth) per model, and the published
# stem widths, head widths and total block counts of B0..B7.
OFFICIAL_WD = [(1.0, 1.0), (1.0, 1.1), (1.1, 1.2), (1.2, 1.4), (1.4, 1.8), (1.6, 2.2),
               (1.8, 2.6), (2.0, 3.1)]
STEMS = [32, 32, 32, 40, 48, 48, 56, 64]
HEADS = [1280, 1280, 1408, 1536, 1792, 2048, 2304, 2560]
DEPTH_SUMS = [16, 23, 23, 26, 32, 39, 45, 55]
B0_REPEATS = [1, 2, 2, 3, 3, 4, 1]


def test_published_make_divisible_cases():
    assert make_divisible(16 * 1.2) == 24          # 16 < 0.9 * 19.2, so one step up
    assert round_filters(16, 1.2) == 24
    assert round_filters(32, 0.35) == 16           # MobileNetV2 x0.35 stem
    assert make_divisible(32 * 0.35) == 16
    assert make_divisible(19.2, round_limit=0.0) == 16   # EfficientNetV2's round_limit=0


@pytest.mark.parametrize("i", range(8))
def test_efficientnet_stems_heads_depths(i):
    w, d = OFFICIAL_WD[i]
    assert round_filters(32, w) == STEMS[i]
    assert round_filters(1280, w) == HEADS[i]
    assert 4 * round_filters(320, w) == HEADS[i]   # torchvision: head = 4 * last stage
    assert sum(round_repeats(n, d) for n in B0_REPEATS) == DEPTH_SUMS[i]


def test_round_filters_identity_at_width_one():
    for c in (116, 232, 3, 24, 1280):
        assert round_filters(c, 1.0) == c
    assert round_filters(116, 1.0000001) == 120


def test_round_repeats_modes():
    assert round_repeats(3, 1.1) == 4              # ceil(3.3)
    assert round_repeats(3, 1.1, "round") == 3     # 3.3 -> 3
    assert round_repeats(2, 1.25, "round") == 3    # 2.5 rounds half up
    assert round_repeats(1, 0.1, "round") == 1     # at least one block
    # the references' float product: 25 * 2.2 = 55.00000000000001, so ceil gives 56 there too
    assert round_repeats(25, 2.2) == 56
    with pytest.raises(ValueError, match="depth_rounding"):
        round_repeats(3, 1.1, "floor")
    with pytest.raises(ValueError, match="depth"):
        round_repeats(3, 0.0)


def test_round_resolution():
    raw = 224 * 1.15 ** 3                          # 340.676
    assert round_resolution(raw) == 341
    assert round_resolution(raw, 8) == 344
    assert round_resolution(raw, 32) == 352
    assert round_resolution(258.5) == 259          # half up, not to even
    assert round_resolution(3.0, 32) == 32
    with pytest.raises(ValueError, match="resolution multiple"):
        round_resolution(224.0, 0)


def test_group_quantum_known_blocks():
    assert group_quantum(0.5, 32) == 64            # ResNeXt-50 32x4d: mid = out/2, 32 groups
    assert group_quantum(1.0, 16) == 16            # RegNet, group width 16
    assert group_quantum(0.25, 3) == 12            # ShuffleNetV1 g3: mid = out/4
    assert group_quantum(0.25, 1) == 1             # ResNet: nothing to keep
    assert group_quantum(4.0, 8) == 2              # inverted: mid = 4 * out
    with pytest.raises(ValueError, match="groups"):
        group_quantum(0.5, 0)


@settings(max_examples=200, deadline=None)
@given(p=st.integers(1, 12), q=st.integers(1, 12), g=st.integers(2, 64))
def test_group_quantum_is_the_smallest_valid_step(p, q, g):
    e = p / q
    s = group_quantum(e, g)
    for k in (1, 2, 3, 7):                          # every multiple works exactly
        mid = k * s * p / q
        assert abs(mid - round(mid)) < 1e-9 and round(mid) % g == 0
    for c in range(1, s):                           # and no smaller positive count does
        mid = c * p / q
        assert not (abs(mid - round(mid)) < 1e-9 and round(mid) % g == 0)


@settings(max_examples=200, deadline=None)
@given(c=st.integers(1, 2048), w=st.floats(0.1, 4.0), q=st.integers(1, 64),
       d=st.sampled_from([1, 2, 4, 8, 16]))
def test_round_to_quantum_keeps_the_quantum(c, w, q, d):
    assume(w != 1.0)                                # width 1 keeps a count that fits the quantum
    n = round_to_quantum(c, w, d, q)
    first = round_filters(c, w, d)                  # the divisor's rounding, then the quantum's
    assert n % q == 0 and n >= q
    assert n == first if first % q == 0 else abs(n - first) <= q / 2 or n == q


def test_round_to_quantum_cases():
    assert round_to_quantum(256, 1.21, 8, 64) == 320   # ResNeXt: 312 -> mid 156 -> 160 (pycls)
    assert round_to_quantum(24, 1.21, 8, 3) == 33      # a g3 ShuffleNetV1 stem: 32 -> 33
    assert round_to_quantum(240, 1.21, 8, 24) == 288   # already a multiple
    assert round_to_quantum(116, 1.0, 8, 2) == 116     # identity at width 1


def test_compatible_widths_pycls_rule():
    # ResNeXt-like stage: width 312, bottleneck 0.5 -> mid 156, rounded to 160 (5 groups of 32)
    assert compatible_widths([312], [0.5], [32]) == ([320], [32])
    # RegNetX-400MF widths are already compatible with group width 16
    assert compatible_widths([32, 64, 160, 400], [1.0] * 4, [16] * 4) == (
        [32, 64, 160, 400], [16] * 4)
    # a group width wider than the mid width is clipped to it
    assert compatible_widths([24], [1.0], [48]) == ([24], [24])
    # integer bottleneck b > 1: mid a multiple of lcm(g, b)
    ws, gs = compatible_widths([10], [4.0], [6])
    assert (ws[0] * 4) % math.lcm(6, 4) == 0
    with pytest.raises(ValueError, match="equal lengths"):
        compatible_widths([1, 2], [1.0], [1])


@settings(max_examples=200, deadline=None)
@given(w=st.integers(1, 4096), b=st.sampled_from([0.25, 0.5, 1.0, 2.0, 4.0]),
       g=st.integers(1, 256))
def test_compatible_widths_property(w, b, g):
    (w2,), (g2,) = compatible_widths([w], [b], [g])
    assert g2 <= g and w2 >= 1
    assert int(w2 * b) % g2 == 0


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf"), float("nan")])
def test_bad_width(bad):
    with pytest.raises(ValueError, match="width"):
        round_filters(32, bad)


def test_bad_types():
    with pytest.raises(TypeError, match="width"):
        round_filters(32, "1.1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="divisor"):
        round_filters(32, 1.1, divisor=0)
