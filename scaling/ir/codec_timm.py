"""timm's block strings (the grammar of ``_decode_block_str`` in timm's ``_efficientnet_builder``),
read and written by :func:`decode_timm` / :func:`decode_timm_stage` / :func:`encode_timm`: there
the activation and the SE layout come from the model (``n<act>`` overrides the activation),
``ir``/``er`` round mid channels with make_divisible(in * e, 8) and always keep their expansion
conv (``expand=True`` where mid can equal in), and ``ds``/``cn`` are our mbconv/fused_mbconv at
e=1.
Where our grammar extends or differs from timm's (the one table of our extensions):

===============  ==========================================  ================================
token            ours (:func:`decode_stage`)                 timm's
===============  ==========================================  ================================
``bs bt sv1      basic, bottleneck, shuffle_v1, shuffle_v2   (none)
sv2``
``ds``           MobileNetV1 dw N A, pw N A, no skip, no SE  dw N A, [SE], pw N, skip: our
                                                             ``ir`` at e=1 (timm's ``dsa`` is
                                                             our ``ds``)
``cn``           (none)                                      conv N A: our ``er`` at e=1
``a<name>``      the stage's activation (default relu)       ``a<n>``: expansion conv kernel
                                                             (only 1); ``n<act>`` activation,
                                                             default the model's
``m md``         fixed mid channels; mid divisor (1)         (none; mid divisor always 8)
``g gw fg d``    groups, group width, 1st groups, dilation   (``d``: space-to-depth, refused)
``seb sed ser    SE base, divisor, rounding, activation,     (the model's SE layer)
sea seg``        gate
``avgd caffe``   avg-pool shortcut, caffe-style stride       (none)
``skip``         (default on; ``noskip`` turns it off)       ``cn`` only: add a skip
===============  ==========================================  ================================
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from scaling.ir.codec import _fmt_float, _parse_float, _parse_int, encode_stage
from scaling.ir.rounding import make_divisible
from scaling.ir.spec import NetworkSpec, SESpec, StageSpec

#: timm's activation tokens (``n`` + code) <-> activation names
TIMM_ACTIVATIONS = {"re": "relu", "r6": "relu6", "hs": "hswish", "sw": "silu"}
_TIMM_CODES = {"silu": "sw", "swish": "sw", "relu": "re", "relu6": "r6", "hswish": "hs"}
#: timm block code -> (our block, expansion fixed to 1, skip flag meaning)
_TIMM_BLOCKS = {"ir": ("mbconv", False), "ds": ("mbconv", True), "dsa": ("ds", True),
                "er": ("fused_mbconv", False), "cn": ("fused_mbconv", True)}
#: our block -> timm's code (mid == in, mid != in); the reverse of _TIMM_BLOCKS
_TIMM_WRITE = {"mbconv": ("ds", "ir"), "fused_mbconv": ("cn", "er"), "ds": ("dsa", None)}
_TIMM_KEYS = {"r": _parse_int, "k": _parse_int, "s": _parse_int, "e": _parse_float,
              "c": _parse_int, "se": _parse_float, "a": _parse_int, "p": _parse_int}


def _timm_tokens(text: str, where: str) -> tuple[str, dict[str, Any], set[str]]:
    code, *tokens = text.strip().split("_")
    if code not in _TIMM_BLOCKS:
        raise ValueError(f"{where}: timm block code {code!r} is not supported; expected one of "
                         f"{sorted(_TIMM_BLOCKS)}")
    values: dict[str, Any] = {}
    flags: set[str] = set()
    for token in tokens:
        if token in ("skip", "noskip"):
            flags.add(token)
            continue
        key = token[:len(token) - len(token.lstrip("abcdefghijklmnopqrstuvwxyz"))]
        if token.startswith("n"):
            if token[1:] not in TIMM_ACTIVATIONS:
                raise ValueError(f"{where}: activation token {token!r} is not supported; "
                                 f"expected n + one of {sorted(TIMM_ACTIVATIONS)}")
            key, value = "n", TIMM_ACTIVATIONS[token[1:]]
        elif key not in _TIMM_KEYS:
            raise ValueError(f"{where}: timm token {token!r} is not supported; expected a key "
                             f"{sorted(_TIMM_KEYS)} with its value, n<act>, skip or noskip")
        else:
            try:
                value = _TIMM_KEYS[key](token[len(key):])
            except ValueError:
                raise ValueError(f"{where}: token {token!r} has no valid value") from None
        if key in values:
            raise ValueError(f"{where}: key {key!r} is given twice")
        values[key] = value
    return code, values, flags


def decode_timm_stage(text: str, activation: str = "relu", se: SESpec | None = None,
                      width: float = 1.0, round_limit: float = 0.9) -> StageSpec:
    """The :class:`StageSpec` of one of timm's block strings (``_decode_block_str`` grammar).

    ``activation`` is the model's (timm's ``act_layer``), used unless the string has ``n<act>``;
    ``se`` the model's SE template (its ratio is replaced by the string's; default: base in,
    the block's activation, sigmoid gate, as timm's EfficientNet); ``width`` timm's channel
    multiplier (``round_channels``: make_divisible(c * width, 8, round_limit=round_limit); timm's
    EfficientNetV2 uses round_limit 0). timm's blocks map to ours:
    ``ir`` mbconv (mid = make_divisible(in * e, 8)), ``ds`` mbconv at e=1 (dw, [SE], pw without
    activation, skip at stride 1 and in == out), ``dsa`` our ds (MobileNetV1), ``er``
    fused_mbconv, ``cn`` fused_mbconv at e=1 (one conv N A, skip only with ``skip``).
    """
    if not isinstance(text, str):
        raise TypeError(f"block string must be a str, got {type(text).__name__} {text!r}")
    where = f"timm block string {text!r}"
    code, v, flags = _timm_tokens(text, where)
    block, single = _TIMM_BLOCKS[code]
    missing = [k for k in ("r", "k", "s", "c") + (() if single else ("e",)) if k not in v]
    if missing:
        raise ValueError(f"{where}: missing required key(s) {missing}")
    for key in ("a", "p"):
        if v.get(key, 1) != 1:
            raise ValueError(f"{where}: {key}{v[key]} (a {v[key]}x{v[key]} expansion/projection "
                             "conv) is not supported; expected 1")
    if single and v.get("e", 1) != 1:
        raise ValueError(f"{where}: e{v['e']} is not allowed for timm's {code!r}; expected e1")
    if code == "cn" and "se" in v:
        raise ValueError(f"{where}: timm's 'cn' (ConvBnAct) takes no SE; expected no se token")
    act = v.get("n", activation)
    fields: dict[str, Any] = {
        "block": block, "repeats": v["r"], "kernel": v["k"], "stride": v["s"], "activation": act,
        "out_channels": (make_divisible(v["c"] * width, 8, round_limit=round_limit)
                         if width != 1 else v["c"]),
        "skip": "skip" in flags if code == "cn" else "noskip" not in flags}
    if not single:
        # timm's ir / er always build their expansion conv; ours only where mid != in, and
        # make_divisible(in * e, 8) == in needs |e - 1| < 4 / in, so e in (0.5, 1.5)
        fields.update(expansion=v["e"], mid_divisor=8, expand=0.5 < v["e"] < 1.5)
    if "se" in v:
        template = se if se is not None else SESpec(activation=act)
        fields["se"] = template.replace(ratio=v["se"])
    try:
        return StageSpec(**fields)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from None


#: timm's depth truncation modes (``decode_arch_def(depth_trunc=)``)
DEPTH_TRUNC = ("ceil", "round")


def _scale_depth(repeats: list[int], depth: float, trunc: str = "ceil") -> list[int]:
    """timm's per-stage depth rule: the stage's total ``n`` becomes ``ceil(n * depth)`` (or
    ``max(1, round(n * depth))``, ``trunc='round'``), spread over its strings in proportion, the
    last string first."""
    left = sum(repeats)
    total = math.ceil(left * depth) if trunc == "ceil" else max(1, round(left * depth))
    out: list[int] = []
    for r in reversed(repeats):
        n = max(1, round(r / left * total))
        out.append(n)
        left, total = left - r, total - n
    return out[::-1]


def decode_timm(arch_def: Iterable[str | Iterable[str]], activation: str = "relu",
                se: SESpec | None = None, width: float = 1.0,
                depth: float | tuple[float, ...] = 1.0, depth_trunc: str = "ceil",
                fix_first_last: bool = False, round_limit: float = 0.9,
                ) -> tuple[StageSpec, ...]:
    """The stages of timm's ``arch_def`` (a list of stages, each a string or a list of strings),
    with timm's width and depth multipliers (``depth``: one, or a tuple of one per stage; see
    :func:`_scale_depth`, with ``depth_trunc`` 'ceil' or 'round'); ``fix_first_last`` keeps the
    first and last stage's depth; as timm's ``decode_arch_def`` (TinyNet uses 'round', MixNet-M
    fix_first_last); ``round_limit`` as timm's ``round_channels`` (EfficientNetV2: 0)."""
    if isinstance(arch_def, str):
        raise TypeError("decode_timm takes timm's arch_def, a list of (lists of) block strings")
    if depth_trunc not in DEPTH_TRUNC:
        raise ValueError(f"depth_trunc={depth_trunc!r} is not allowed; expected one of "
                         f"{list(DEPTH_TRUNC)}")
    if not isinstance(fix_first_last, bool):
        raise TypeError(f"fix_first_last={fix_first_last!r} is not allowed; expected a bool")
    entries = list(arch_def)
    depths = depth if isinstance(depth, tuple) else (depth,) * len(entries)
    if len(depths) != len(entries) or not all(
            isinstance(d, (int, float)) and not isinstance(d, bool) and 0 < d < 1e6
            for d in depths):
        raise ValueError(f"depth={depth!r} is not allowed; expected a number > 0 or a tuple of "
                         f"one per stage ({len(entries)})")
    stages: list[StageSpec] = []
    for i, entry in enumerate(entries):
        group = [decode_timm_stage(t, activation, se, width, round_limit)
                 for t in ([entry] if isinstance(entry, str) else entry)]
        fixed = fix_first_last and i in (0, len(entries) - 1)
        multiplier = 1.0 if fixed else depths[i]
        reps = (_scale_depth([s.repeats for s in group], multiplier, depth_trunc)
                if multiplier != 1 else None)
        stages += [s.replace(repeats=r) for s, r in zip(group, reps)] if reps else group
    return tuple(stages)


def _timm_expansion(stage: StageSpec, mids: list[tuple[int, int]], where: str) -> str:
    """The shortest ``e`` for which timm's mid = make_divisible(in * e, 8) gives every block's."""
    candidates = [stage.expansion] if stage.mid_channels is None else []
    cin, mid = mids[0]
    candidates += [round(mid / cin, d) for d in range(5)] + [mid / cin]
    for e in candidates:
        if e > 0 and all(make_divisible(i * e, 8) == m for i, m in mids):
            return _fmt_float(e)
    raise ValueError(f"{where}: timm's mid channels make_divisible(in * e, 8) cannot give "
                     f"{[m for _, m in mids]} from inputs {[i for i, _ in mids]}")


def encode_timm(spec: NetworkSpec, activation: str | None = None) -> list[str]:
    """timm block strings (one per stage) of ``spec``, read back by timm's ``decode_arch_def``
    (and :func:`decode_timm`) to the same blocks. ``activation``: the model's (default the stem's);
    a stage with another gets ``n<act>``. Blocks timm's grammar has no word for are a ValueError."""
    if not isinstance(spec, NetworkSpec):
        raise TypeError(f"spec must be a NetworkSpec, got {type(spec).__name__}")
    activation = spec.stem.activation if activation is None else activation
    geoms: dict[int, list[tuple[int, int]]] = {}
    for g in spec.blocks():
        geoms.setdefault(g.stage, []).append((g.in_channels, g.mid_channels))
    out = []
    for i, stage in enumerate(spec.stages):
        where = f"stage {i} ({encode_stage(stage)})"
        if stage.dilation != 1 or stage.groups != 1:
            raise ValueError(f"{where}: timm's block strings have no dilation or groups")
        mids = geoms[i]
        single = all(m == c for c, m in mids) and not stage.expand
        codes = _TIMM_WRITE.get(stage.block, (None, None))
        code = codes[0] if single else codes[1]
        if code is None or (code in ("dsa", "cn") and stage.se is not None):
            raise ValueError(f"{where}: block {stage.block!r} has no timm block string")
        parts = [code, f"r{stage.repeats}", f"k{stage.kernel}", f"s{stage.stride}"]
        if code in ("ir", "er"):
            parts.append("e" + _timm_expansion(stage, mids, where))
        elif code == "ds":
            parts.append("e1")
        parts.append(f"c{stage.out_channels}")
        if stage.se is not None:
            parts.append("se" + _fmt_float(stage.se.ratio))
        if stage.activation != activation:
            if stage.activation not in _TIMM_CODES:
                raise ValueError(f"{where}: activation {stage.activation!r} has no timm token; "
                                 f"expected one of {sorted(_TIMM_CODES)}")
            parts.append("n" + _TIMM_CODES[stage.activation])
        if code == "cn" and stage.skip:
            parts.append("skip")
        elif code in ("ir", "ds", "er") and not stage.skip:
            parts.append("noskip")
        out.append("_".join(parts))
    return out
