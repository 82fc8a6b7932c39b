"""Analytic params, MACs and activations of a :class:`~scaling.ir.spec.NetworkSpec`, without torch.

Conventions: MACs are the multiply-adds of convolutions and linear layers,
``k*k*(Cin/groups)*Cout*Hout*Wout`` and ``in*out``, biases excluded, as counted by
``torch.utils.flop_counter.FlopCounterMode`` (total / 2) and torchvision's ``_ops`` metadata;
norms, activations, pools, the SE product and residual adds count zero. Activations are the
elements output by conv and linear layers at batch 1 (fvcore ``ActivationCountAnalysis``). Params
are every weight and bias, norm affine pairs included (IN is not affine), running statistics not.

The layer structure of each block is its record's (:mod:`scaling.ir.blocks`): the record's cost
function describes the layers to :class:`_Acc`, the module class the record names builds them;
channels, groups, sizes and shortcuts come from :meth:`scaling.ir.blocks.BlockType.geometry`. A
stage's repeated blocks are identical, so a stage costs at most two block evaluations, and stage
results are cached on (stage, input channels, input size, norm affinity): a warm call is a few
microseconds per stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple

from scaling.ir import BLOCK_TYPES, NetworkSpec
from scaling.ir.blocks import block_geometry
from scaling.ir.geometry import BlockGeometry, downsample

if TYPE_CHECKING:
    import pandas as pd

    from scaling.ir import StageSpec

UNIT = "MACs"


class Row(NamedTuple):
    """One row of the breakdown: the stem, a stage, or the head, with its output (C, H, W)."""

    name: str
    shape: tuple[int, int, int]
    params: int
    macs: int
    activations: int


@dataclass(frozen=True)
class Complexity:
    """Totals and per-part rows (stem, stage0..stageN-1, head) at ``resolution``, batch 1."""

    params: int
    macs: int
    activations: int
    resolution: int
    rows: tuple[Row, ...]

    unit = UNIT

    def to_dict(self) -> dict[str, Any]:
        return {
            "resolution": self.resolution, "params": self.params, "macs": self.macs,
            "activations": self.activations, "unit": UNIT,
            "rows": [{"name": r.name, "shape": list(r.shape), "params": r.params,
                      "macs": r.macs, "activations": r.activations} for r in self.rows],
        }

    def table(self) -> pd.DataFrame:
        """The rows as a pandas DataFrame (pandas imported on demand)."""
        import pandas as pd

        return pd.DataFrame(
            [{"part": r.name, "C": r.shape[0], "H": r.shape[1], "W": r.shape[2],
              "params": r.params, "macs": r.macs, "activations": r.activations}
             for r in self.rows])


class _Acc:
    """Running (params, MACs, activations) of a sequence of layers."""

    __slots__ = ("affine", "params", "macs", "acts")

    def __init__(self, affine: bool) -> None:
        self.affine = affine
        self.params = self.macs = self.acts = 0

    def conv(self, cin: int, cout: int, k: int, size: int, groups: int = 1,
             norm: bool = True, bias: bool = False) -> None:
        """A kxk conv to ``cout`` channels of ``size`` x ``size``, [+ bias], [+ norm]."""
        weights = k * k * (cin // groups) * cout
        hw = size * size
        self.params += weights + (cout if bias else 0) + (2 * cout if norm and self.affine else 0)
        self.macs += weights * hw
        self.acts += cout * hw

    def linear(self, fin: int, fout: int) -> None:
        self.params += fin * fout + fout
        self.macs += fin * fout
        self.acts += fout

    def act(self, name: str, count: int = 1) -> None:
        """``count`` activation modules; only PReLU (one shared slope) has a parameter."""
        if name == "prelu":
            self.params += count

    def se(self, channels: int, squeeze: int, stage: StageSpec) -> None:
        """Squeeze-excitation: pool, 1x1 conv + bias, act, 1x1 conv + bias, gate (Hu et al.)."""
        se = stage.se
        if se is None:  # pragma: no cover - geometry gives squeeze 0 without SE
            return
        self.conv(channels, squeeze, 1, 1, norm=False, bias=True)
        self.conv(squeeze, channels, 1, 1, norm=False, bias=True)
        self.act(se.activation)
        self.act(se.gate)


def _block(acc: _Acc, g: BlockGeometry, stage: StageSpec) -> None:
    """Add the layers of block ``g``: its record's cost (scaling.ir.blocks), then its shortcut."""
    BLOCK_TYPES[g.block].cost(acc, g, stage)
    if g.projection:
        acc.conv(g.in_channels, g.out_channels, 1, g.out_size)


class _StrideError(Exception):
    """A stride-2 step meets a map smaller than 2x2 (the spec's own check gives the message)."""


@lru_cache(maxsize=8192)
def _stage_cost(stage: StageSpec, cin: int, size: int, affine: bool) -> tuple[int, ...]:
    """(params, MACs, activations, out size) of a whole stage; blocks 1.. are costed once."""
    if stage.stride == 2 and size < 2:
        raise _StrideError
    acc = _Acc(affine)
    first = block_geometry(stage, 0, 0, cin, size)
    _block(acc, first, stage)
    if stage.repeats > 1:
        rest = _Acc(affine)
        _block(rest, block_geometry(stage, 0, 1, first.out_channels, first.out_size), stage)
        n = stage.repeats - 1
        acc.params += n * rest.params
        acc.macs += n * rest.macs
        acc.acts += n * rest.acts
    return acc.params, acc.macs, acc.acts, first.out_size


def _coerce(spec: Any) -> NetworkSpec:
    if isinstance(spec, NetworkSpec):
        return spec
    if isinstance(spec, dict):
        return NetworkSpec.from_dict(spec)
    raise TypeError(f"spec must be a NetworkSpec or a dict, got {type(spec).__name__}")


def complexity(spec: NetworkSpec | dict[str, Any], resolution: int | None = None) -> Complexity:
    """Params, MACs and activations of ``spec`` at ``resolution`` (default: the spec's).

    An invalid ``resolution`` (or dict spec) raises the ValueError that constructing the spec
    with it raises.
    """
    spec = _coerce(spec)
    if resolution is None or (type(resolution) is int and resolution == spec.resolution):
        res = spec.resolution
    elif type(resolution) is int and resolution >= 1:
        res = resolution
    else:  # not an int >= 1: validated as a spec field, which raises the constructor's error
        res = spec.replace(resolution=resolution).resolution
    try:
        return _count(spec, res)
    except _StrideError:
        spec.replace(resolution=res)  # raises the constructor's error
        raise AssertionError(f"resolution={res} failed the stride rule but validated") from None


def _count(spec: NetworkSpec, res: int) -> Complexity:
    affine = spec.norm.has_params
    rows = []
    # stem: conv-norm-act chain, then an optional 3x3/2 max pool
    stem = spec.stem
    acc = _Acc(affine)
    cin, size = spec.in_channels, res
    for c, k, s in zip(stem.channels, stem.kernels, stem.strides):
        if s == 2 and size < 2:
            raise _StrideError
        size = downsample(size, s)
        acc.conv(cin, c, k, size)
        cin = c
    acc.act(stem.activation, len(stem.channels))
    if stem.pool == "max":
        if size < 2:
            raise _StrideError
        size = downsample(size, 2)
    rows.append(Row("stem", (cin, size, size), acc.params, acc.macs, acc.acts))
    params, macs, acts = acc.params, acc.macs, acc.acts
    # stages
    for i, stage in enumerate(spec.stages):
        p, m, a, size = _stage_cost(stage, cin, size, affine)
        cin = stage.out_channels
        rows.append(Row(f"stage{i}", (cin, size, size), p, m, a))
        params += p
        macs += m
        acts += a
    # head: [1x1 conv N A] -> global pool -> [linear A] -> dropout -> [classifier]
    head = spec.head
    acc = _Acc(affine)
    if head.channels is not None:
        acc.conv(cin, head.channels, 1, size)
        acc.act(head.activation)
        cin = head.channels
    if head.hidden is not None:
        acc.linear(cin, head.hidden)
        acc.act(head.hidden_activation)
        cin = head.hidden
    if spec.num_classes:
        acc.linear(cin, spec.num_classes)
        cin = spec.num_classes
    rows.append(Row("head", (cin, 1, 1), acc.params, acc.macs, acc.acts))
    return Complexity(params + acc.params, macs + acc.macs, acts + acc.acts, res, tuple(rows))


def clear_cache() -> None:
    """Drop the cached stage costs (benchmarks use it to time cold calls)."""
    _stage_cost.cache_clear()
