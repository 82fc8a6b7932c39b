"""Channel, depth and resolution rounding rules (Tan & Le 2019; torchvision; pycls).

Width scaling rounds channels with :func:`make_divisible` (:func:`round_filters`); depth scaling
rounds repeats up (:func:`round_repeats`); resolution scaling rounds to the nearest pixel or to a
multiple of 8/32 (:func:`round_resolution`). Grouped and split blocks add constraints on top of the
divisor: :func:`group_quantum` gives the smallest channel step that keeps ``groups`` dividing a
block's derived mid channels, and :func:`compatible_widths` is the pycls rule (Radosavovic et al.
2020, "Designing Network Design Spaces", AnyNet/RegNet) in which the mid width is rounded to a
multiple of ``lcm(group, bottleneck)`` and the output width follows from it.
"""

from __future__ import annotations

import math
from fractions import Fraction

from scaling.ir.base import check_number, is_int

DEPTH_ROUNDINGS = ("ceil", "round")


def _check_positive(name: str, value: float) -> None:
    check_number(name, value)
    if not value > 0 or math.isinf(value):
        raise ValueError(f"{name}={value!r} is not allowed; expected a finite number > 0")


def _check_divisor(name: str, value: int) -> None:
    if not is_int(value) or value < 1:
        raise ValueError(f"{name}={value!r} is not allowed; expected an int >= 1")


def _product(name: str, factor: float, count: int, what: str) -> float:
    """``count * factor``, or a ValueError naming ``name`` when the product overflows a float."""
    out = count * factor
    if not math.isfinite(out):
        raise ValueError(f"{name}={factor!r} is not allowed: {count} {what} x {name} overflows a "
                         "float; expected a smaller factor")
    return out


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None,
                   round_limit: float = 0.9) -> int:
    """Round ``v`` to the nearest multiple of ``divisor``, never going below ``round_limit * v``.

    ``n = max(min_value or divisor, int(v + divisor / 2) // divisor * divisor)``; if
    ``n < round_limit * v`` then ``n += divisor``. E.g. 16 * 1.2 = 19.2 -> 24. EfficientNetV2 uses
    ``round_limit=0``.
    """
    check_number("make_divisible value", v)
    min_value = divisor if min_value is None else min_value
    n = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if n < round_limit * v:
        n += divisor
    return n


def round_filters(channels: int, width: float, divisor: int = 8, min_value: int | None = None,
                  round_limit: float = 0.9) -> int:
    """Channels after width scaling: ``make_divisible(channels * width, divisor)``.

    EfficientNet's ``round_filters`` (Tan & Le 2019) and torchvision's ``adjust_channels``.
    ``width == 1`` returns ``channels`` unchanged, so that scaling by 1 is the identity even for
    channel counts that are not multiples of ``divisor`` (ShuffleNetV2's 116, say). E.g.
    ``round_filters(32, 0.35) == 16`` (MobileNet x0.35) and ``round_filters(16, 1.2) == 24``.
    """
    _check_positive("width", width)
    _check_divisor("divisor", divisor)
    if width == 1:
        return channels
    return make_divisible(_product("width", width, channels, "channels"), divisor, min_value,
                          round_limit)


def round_repeats(repeats: int, depth: float, mode: str = "ceil") -> int:
    """Blocks in a stage after depth scaling.

    ``mode='ceil'``: ``ceil(repeats * depth)`` as EfficientNet and torchvision (with the same float
    product, so 10 * 1.1 gives 12 there and here); ``'round'``: round half up, at least 1.
    """
    _check_positive("depth", depth)
    blocks = _product("depth", depth, repeats, "blocks")
    if mode == "ceil":
        return int(math.ceil(blocks))
    if mode == "round":
        return max(1, int(math.floor(blocks + 0.5)))
    raise ValueError(f"depth_rounding={mode!r} is not allowed; expected one of {DEPTH_ROUNDINGS}")


def round_resolution(size: float, multiple: int = 1) -> int:
    """An input resolution ``size`` (e.g. ``224 * gamma**phi``) rounded half up to a ``multiple``.

    ``multiple=1`` is the nearest pixel (224 * 1.15**3 = 340.68 -> 341); 8 or 32 keep every
    stride-2 step exact (-> 344 or 352). Never below ``multiple``.
    """
    _check_positive("resolution", size)
    _check_divisor("resolution multiple", multiple)
    return max(multiple, int(math.floor(size / multiple + 0.5)) * multiple)


def group_quantum(expansion: float, groups: int) -> int:
    """The smallest channel step ``s`` such that, for every multiple ``c`` of ``s``,
    ``c * expansion`` is an exact integer multiple of ``groups``.

    A block whose mid channels derive from its output channels (bottleneck, shuffle_v1) keeps its
    grouped conv valid under width scaling when the output channels are multiples of ``s``:
    ResNeXt (e=0.5, 32 groups) -> 64; RegNet (e=1, group width 16) -> 16; ShuffleNetV1 (e=0.25,
    3 groups) -> 12. ``groups == 1`` gives 1 (nothing to keep).
    """
    _check_positive("expansion", expansion)
    _check_divisor("groups", groups)
    if groups == 1:
        return 1
    e = Fraction(expansion).limit_denominator(1 << 16)
    if abs(float(e) - expansion) > 1e-9:
        raise ValueError(f"expansion={expansion!r} is not allowed with groups={groups}: "
                         "expected a simple ratio (p/q with q <= 65536)")
    # c*p/q in groups*Z  <=>  c*p in groups*q*Z  <=>  c in (groups*q / gcd(p, groups*q))*Z
    return groups * e.denominator // math.gcd(e.numerator, groups * e.denominator)


def round_to_quantum(channels: int, width: float, divisor: int = 8, quantum: int = 1,
                     round_limit: float = 0.9) -> int:
    """:func:`round_filters`, then, if the result is not a multiple of ``quantum``, the nearest
    multiple of it (half up, at least ``quantum``).

    ``quantum`` carries a hard constraint of grouped or split blocks (:func:`group_quantum`; 2 for
    a channel split); the divisor is a preference. This is pycls's order: widths are quantized
    first, then the mid width is rounded to its group multiple (:func:`compatible_widths`), e.g.
    ResNeXt 256 * 1.21 -> 312 -> 320 (quantum 64). With ``width == 1`` a count that already fits
    the quantum is unchanged.
    """
    _check_divisor("quantum", quantum)
    n = round_filters(channels, width, divisor, round_limit=round_limit)
    if n % quantum:
        n = max(quantum, int(math.floor(n / quantum + 0.5)) * quantum)
    return n


def compatible_widths(widths: list[int], bottlenecks: list[float],
                      group_widths: list[int]) -> tuple[list[int], list[int]]:
    """Make stage widths compatible with their group widths (pycls's rule, RegNet/AnyNet).

    For stage i, the mid width ``v = w * b`` is rounded to the nearest multiple of
    ``m = lcm(g, b)`` if the bottleneck ratio b > 1 is an integer, else of ``m = g`` (at least
    ``m``), the group width g being first clipped to ``v``; the stage width becomes ``v / b``.
    Returns ``(widths, group_widths)``; every ``width * b`` is then divisible by its group width.
    """
    if not len(widths) == len(bottlenecks) == len(group_widths):
        raise ValueError(f"widths, bottlenecks and group_widths must have equal lengths, got "
                         f"{len(widths)}/{len(bottlenecks)}/{len(group_widths)}")
    out_w: list[int] = []
    out_g: list[int] = []
    for w, b, g in zip(widths, bottlenecks, group_widths):
        _check_positive("width", w)
        _check_positive("bottleneck", b)
        _check_divisor("group width", g)
        v = max(1, int(w * b))
        g = min(g, v)
        m = math.lcm(g, int(b)) if b > 1 and float(b).is_integer() else g
        v = max(m, int(round(v / m)) * m)
        out_w.append(int(v / b))
        out_g.append(g)
    return out_w, out_g
