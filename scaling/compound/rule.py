"""Compound scaling of any spec (Tan & Le 2019, "EfficientNet", section 3.3, eq. 3).

``d = alpha**phi``, ``w = beta**phi``, ``r = gamma**phi`` subject to ``alpha * beta**2 * gamma**2
~ 2`` and ``alpha, beta, gamma >= 1``, so MACs grow about ``(alpha * beta**2 * gamma**2)**phi``.
:func:`scale` applies any (d, w, r) to any :class:`~scaling.ir.spec.NetworkSpec`, reading only the
spec's fields (never a family name):

- stage ``out_channels`` and explicit ``mid_channels``: ``make_divisible(c * w, divisor)``;
  derived mid channels and SE squeezes follow from them (:mod:`scaling.ir.geometry`);
- the stem when ``StemSpec.scale``; the head per ``HeadSpec.scale`` ('none' | 'width' |
  'width_up' = ``max(1, w)``, MobileNetV2) or, with ``HeadSpec.channels_ratio`` k, ``k * last
  stage`` (torchvision's EfficientNet, k=4; for the official B0-B8 and L2 widths this equals
  ``make_divisible(1280 * w)``, for the pure rule's ``1.1**phi`` it does not: phi=3 gives 1696 vs
  1704);
- groups and splits stay valid (pycls's rule, :mod:`scaling.ir.rounding`): a grouped block's width,
  once rounded to the divisor, is rounded to the nearest multiple of its group quantum
  (:func:`~scaling.ir.rounding.group_quantum`: ResNeXt 32x4d 64, RegNet its group width,
  ShuffleNetV1 g3 12) so that groups / group widths keep dividing the derived mid channels;
  ShuffleNetV2 channels stay even; ShuffleNetV1 stage widths, and the stem or stage feeding a
  stride-2 ShuffleNetV1 stage, stay multiples of its groups (so the concatenated branch does
  too). A stage whose blocks need ``in == out`` (a stride-1 split block, an MBConv residual)
  keeps its input width tied to its output width (unscaled if the producer is a fixed stem);
- repeats ``ceil(n * d)`` (or round half up), resolution ``round(base * r)`` (or to a multiple
  of 8/32); dropout from the official table when scaling to one of its rows.

The released EfficientNet B1-B8/L2 coefficients are not powers of (1.2, 1.1, 1.15); they are
shipped as data in :data:`EFFICIENTNET`. Note that torchvision evaluates B2 at 288 while the paper
lists 260: ``scale(b0, official('b2'))`` follows the paper (260); pass ``image_size=288`` for
torchvision's.

The CLI ``python -m scaling.compound`` lives in :mod:`scaling.compound.cli`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scaling.ir import BLOCK_TYPES, HeadSpec, NetworkSpec
from scaling.ir.base import check_number, is_int
from scaling.ir.rounding import (
    group_quantum,
    round_filters,
    round_repeats,
    round_resolution,
    round_to_quantum,
)

ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15  # Tan & Le 2019, found by grid search at phi=1 on B0


@dataclass(frozen=True)
class Coefficients:
    """One row of the official EfficientNet table: width and depth multipliers, the absolute input
    resolution and the classifier dropout."""

    name: str
    width: float
    depth: float
    resolution: int
    dropout: float


#: The released EfficientNet coefficients (Tan & Le 2019; "l2" from Xie et al. 2020, Noisy Student).
EFFICIENTNET: dict[str, Coefficients] = {c.name: c for c in (
    Coefficients("b0", 1.0, 1.0, 224, 0.2),
    Coefficients("b1", 1.0, 1.1, 240, 0.2),
    Coefficients("b2", 1.1, 1.2, 260, 0.3),
    Coefficients("b3", 1.2, 1.4, 300, 0.3),
    Coefficients("b4", 1.4, 1.8, 380, 0.4),
    Coefficients("b5", 1.6, 2.2, 456, 0.4),
    Coefficients("b6", 1.8, 2.6, 528, 0.5),
    Coefficients("b7", 2.0, 3.1, 600, 0.5),
    Coefficients("b8", 2.2, 3.6, 672, 0.5),
    Coefficients("l2", 4.3, 5.3, 800, 0.5),
)}


def official(name: str) -> Coefficients:
    """The official row ``name``: 'b3', 'B3' or 'efficientnet_b3'."""
    key = str(name).lower().removeprefix("efficientnet_").removeprefix("efficientnet-")
    if key not in EFFICIENTNET:
        raise ValueError(f"EfficientNet row {name!r} is unknown; expected one of "
                         f"{sorted(EFFICIENTNET)}")
    return EFFICIENTNET[key]


def _check_factor(name: str, value: object, minimum: float = 0.0, strict: bool = True) -> float:
    check_number(name, value)
    bad = value <= minimum if strict else value < minimum
    if bad or not math.isfinite(value):
        op = ">" if strict else ">="
        raise ValueError(f"{name}={value!r} is not allowed; "
                         f"expected a finite number {op} {minimum}")
    return float(value)


def coefficients(phi: float, alpha: float = ALPHA, beta: float = BETA,
                 gamma: float = GAMMA) -> tuple[float, float, float]:
    """``(d, w, r) = (alpha**phi, beta**phi, gamma**phi)`` (eq. 3), with phi >= 0 and
    alpha, beta, gamma >= 1."""
    phi = _check_factor("phi", phi, 0.0, strict=False)
    for n, v in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
        _check_factor(n, v, 1.0, strict=False)
    try:
        return alpha ** phi, beta ** phi, gamma ** phi
    except OverflowError:
        raise ValueError(f"phi={phi!r} is too large: alpha**phi, beta**phi or gamma**phi "
                         "overflows a float") from None


# -- the channel plan ------------------------------------------------------------------------------
class _Nodes:
    """Union-find over channel "nodes": 0 is the stem output, i+1 the output of stage i.

    Each node carries a quantum (its width must stay a multiple of it) and may be fixed (an unscaled
    stem). Tied nodes (a block needing ``in == out``) share one value."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))
        self.quantum = [1] * n
        self.fixed = [False] * n

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def need(self, i: int, q: int) -> None:
        r = self.find(i)
        self.quantum[r] = math.lcm(self.quantum[r], q)

    def tie(self, i: int, j: int) -> None:
        a, b = self.find(i), self.find(j)
        if a != b:
            self.parent[b] = a
            self.quantum[a] = math.lcm(self.quantum[a], self.quantum[b])
            self.fixed[a] = self.fixed[a] or self.fixed[b]


CHANNEL_ROUNDINGS = ("each", "diffuse")


def _plan(spec: NetworkSpec, width: float, divisor: int, round_limit: float,
          diffuse: bool = False) -> tuple[list[int], list[int | None]]:
    """Scaled widths of the channel nodes, and the scaled explicit mid channels of each stage.

    ``diffuse``: each node is rounded to its quantum (times ``divisor``) with the rounding error
    carried to the next node (error diffusion), so the channel total follows ``width`` smoothly
    where per-layer rounding moves every equal layer at once (a net of 8-channel layers: 8 -> 9
    everywhere, +27% MACs)."""
    stages = spec.stages
    base = [spec.stem.out_channels] + [s.out_channels for s in stages]
    nodes = _Nodes(len(base))
    nodes.fixed[0] = not spec.stem.scale
    norm_groups = spec.norm.num_groups if spec.norm.type == "GN" else None
    mid_q: list[int] = []
    for i, s in enumerate(stages):
        cin, cout = i, i + 1
        block = BLOCK_TYPES[s.block]
        mq = math.lcm(block.mid_groups(s), norm_groups or 1)
        if s.mid_channels is None and mq > 1 and block.mid_from == "out":
            gq = math.lcm(mq, s.mid_divisor) if s.mid_divisor > 1 else mq
            nodes.need(cout, group_quantum(s.expansion, gq))
        q_in, q_out = block.width_quanta(s)
        nodes.need(cin, q_in)
        nodes.need(cout, q_out)
        if block.ties_width(s) and base[cin] == base[cout]:
            nodes.tie(cin, cout)
        if norm_groups:
            nodes.need(cout, norm_groups)
        mid_q.append(mq)
    widths: list[int] = []
    carry, done = 0.0, {}
    for i, c in enumerate(base):
        r = nodes.find(i)
        q = nodes.quantum[r]
        if nodes.fixed[r]:
            widths.append(c)
        elif not diffuse:
            widths.append(round_to_quantum(c, width, divisor, q, round_limit))
        elif r in done:  # tied to a node already rounded
            widths.append(done[r])
        else:
            step = math.lcm(q, divisor)
            raw = c * width + carry
            n = max(step, int(math.floor(raw / step + 0.5)) * step)
            carry = raw - n
            done[r] = n
            widths.append(n)
    mids = [None if s.mid_channels is None else
            round_to_quantum(s.mid_channels, width, divisor, q, round_limit)
            for s, q in zip(stages, mid_q)]
    return widths, mids


def _head(head: HeadSpec, width: float, last: int, divisor: int, round_limit: float) -> HeadSpec:
    if head.scale == "none":
        w = 1.0
    else:
        w = max(1.0, width) if head.scale == "width_up" else width

    def rf(c: int | None) -> int | None:
        return None if c is None else round_filters(c, w, divisor, round_limit=round_limit)

    channels = rf(head.channels)
    if head.channels_ratio is not None:
        channels = int(round(head.channels_ratio * last))
    return head.replace(channels=channels, hidden=rf(head.hidden))


def scale(spec: NetworkSpec, depth: float = 1.0, width: float = 1.0, resolution: float = 1.0, *,
          row: Coefficients | str | None = None, image_size: int | None = None,
          dropout: float | None = None, divisor: int = 8, round_limit: float = 0.9,
          depth_rounding: str = "ceil", resolution_multiple: int = 1,
          channel_rounding: str = "each", name: str | None = None) -> NetworkSpec:
    """``spec`` scaled by depth ``d``, width ``w`` and resolution ``r`` multipliers.

    ``row`` (an official EfficientNet row or its name) takes d, w, the absolute resolution and the
    dropout from the table instead (pass either ``row`` or d/w/r). ``image_size`` sets the
    absolute resolution (else ``round(spec.resolution * r)`` to ``resolution_multiple``);
    ``dropout`` the head's dropout. Channel rounding: ``make_divisible(c * w, divisor,
    round_limit=round_limit)``, the divisor raised where groups require; depth: ``ceil(n * d)``
    or (``depth_rounding='round'``) round half up. ``channel_rounding='diffuse'`` rounds the
    stage widths with error diffusion instead of each on its own (:func:`_plan`; used to match
    MACs at narrow widths, not by any published family). Raises ValueError if no valid spec
    results.
    """
    if not isinstance(spec, NetworkSpec):
        raise TypeError(f"spec must be a NetworkSpec, got {type(spec).__name__}")
    if row is not None:
        if (depth, width, resolution) != (1.0, 1.0, 1.0):
            raise ValueError("give either row or depth/width/resolution multipliers, not both")
        row = official(row) if isinstance(row, str) else row
        if not isinstance(row, Coefficients):
            raise TypeError(f"row must be a Coefficients or a row name, got {type(row).__name__}")
        depth, width = row.depth, row.width
        image_size = row.resolution if image_size is None else image_size
        dropout = row.dropout if dropout is None else dropout
    depth = _check_factor("depth", depth)
    width = _check_factor("width", width)
    resolution = _check_factor("resolution", resolution)
    round_limit = _check_factor("round_limit", round_limit, 0.0, strict=False)
    if not is_int(divisor) or divisor < 1:
        raise ValueError(f"divisor={divisor!r} is not allowed; expected an int >= 1")
    if image_size is None:
        image_size = round_resolution(spec.resolution * resolution, resolution_multiple)
    elif not is_int(image_size) or image_size < 1:
        raise ValueError(f"image_size={image_size!r} is not allowed; expected an int >= 1")

    if channel_rounding not in CHANNEL_ROUNDINGS:
        raise ValueError(f"channel_rounding={channel_rounding!r} is not allowed; expected one of "
                         f"{CHANNEL_ROUNDINGS}")
    widths, mids = _plan(spec, width, divisor, round_limit, channel_rounding == "diffuse")
    stem_ch = tuple(c if not spec.stem.scale else
                    round_filters(c, width, divisor, round_limit=round_limit)
                    for c in spec.stem.channels[:-1]) + (widths[0],)
    stages = []
    for s, out, mid in zip(spec.stages, widths[1:], mids):
        repeats = round_repeats(s.repeats, depth, depth_rounding)
        stages.append(s.replace(out_channels=out, mid_channels=mid, repeats=repeats))
    label = name
    if label is None:
        tag = row.name if isinstance(row, Coefficients) else \
            f"d{depth:.4g}-w{width:.4g}-r{image_size}"
        label = f"{spec.name or spec.family or 'spec'}@{tag}"
    try:
        head = _head(spec.head, width, widths[-1], divisor, round_limit)
        if dropout is not None:
            head = head.replace(dropout=dropout)
        return spec.replace(stem=spec.stem.replace(channels=stem_ch), stages=tuple(stages),
                            head=head, resolution=image_size, name=label)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"the scaled spec (d={depth:.4g}, w={width:.4g}, "
                         f"resolution={image_size}) cannot be made valid: {exc}") from None


def compound(spec: NetworkSpec, phi: float, alpha: float = ALPHA, beta: float = BETA,
             gamma: float = GAMMA, **kwargs: object) -> NetworkSpec:
    """Compound scaling (eq. 3): :func:`scale` by ``(alpha**phi, beta**phi, gamma**phi)``."""
    d, w, r = coefficients(phi, alpha, beta, gamma)
    return scale(spec, depth=d, width=w, resolution=r, **kwargs)  # type: ignore[arg-type]


def ideal_ratio(phi: float, alpha: float = ALPHA, beta: float = BETA, gamma: float = GAMMA
                ) -> float:
    """The MAC growth compound scaling aims at: ``(alpha * beta**2 * gamma**2)**phi``."""
    return (alpha * beta ** 2 * gamma ** 2) ** phi
