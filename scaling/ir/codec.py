"""Compact block strings for stages, in the style of the EfficientNet/timm "block args" strings.

A stage is ``{block}_{token}_{token}...``, e.g. ``ir_r2_k3_s2_e6_c24_se0.25_seasilu``. Block codes
come from the block records (:attr:`scaling.ir.blocks.BlockType.code`): ``bs`` basic, ``bt``
bottleneck, ``ds`` ds, ``ir`` mbconv, ``er`` fused_mbconv, ``sv1`` shuffle_v1, ``sv2``
shuffle_v2. Tokens (key + value; fields left out take the
:class:`~scaling.ir.spec.StageSpec` defaults):

==========  ==============  ===========  ==============  ==========  =================
``r`` n      repeats         ``m`` n      mid_channels    ``a`` name  activation
``k`` n      kernel          ``md`` n     mid_divisor     ``d`` n     dilation
``s`` n      stride          ``g`` n      groups          ``se`` x    se.ratio (SE on)
``e`` x      expansion       ``gw`` n     group_width     ``seb`` / ``sed`` / ``ser`` /
``c`` n      out_channels    ``fg`` n     first_groups    ``sea`` / ``seg``: se base, divisor,
                                                          rounding, activation, gate
==========  ==============  ===========  ==============  ==========  =================

Flags: ``noskip`` (skip=False), ``avgd`` (shortcut='avgpool_conv'), ``caffe`` (style='caffe'),
``expand`` (expand=True: the expansion conv also at mid == in).
Names are written with ``-`` for ``_`` (``aleaky-relu``); numbers must be finite (``e1e400`` is
refused). Decoding is strict: an unknown block code or token, a repeated key, SE options without
``se``, or a missing ``r``/``c`` is a ValueError naming it. :func:`encode_stage` writes the
canonical form, so ``decode_stage(encode_stage(s)) == s`` for every stage and
``encode(decode(t)) == t`` for every canonical string ``t``.

timm's grammar is read and written by :mod:`scaling.ir.codec_timm`, whose docstring tables
every way ours extends or differs from it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from scaling.ir.registry import BLOCK_TYPES
from scaling.ir.spec import NetworkSpec, SESpec, StageSpec


def block_codes() -> dict[str, str]:
    """Block-string code -> block type name, from the registered records."""
    return {r.code: r.name for r in BLOCK_TYPES}


def _fmt_float(x: float) -> str:
    text = repr(float(x))
    return text[:-2] if text.endswith(".0") else text


def _parse_int(text: str) -> int:
    if not text.isdigit() or (len(text) > 1 and text[0] == "0"):
        raise ValueError(text)
    return int(text)


def _parse_float(text: str) -> float:
    if not text or not (text[0].isdigit() or text[0] == "."):
        raise ValueError(text)
    value = float(text)
    if not math.isfinite(value):  # '1e400' parses to inf
        raise ValueError(text)
    return value


def _parse_name(text: str) -> str:
    if not text or not text[0].isalpha():
        raise ValueError(text)
    return text.replace("-", "_")


def _fmt_name(name: str) -> str:
    """Names are written with '-' for '_' (``aleaky-relu``), as '_' separates tokens."""
    return str(name).replace("_", "-")


_F = Callable[[Any], str]
_INT: tuple[Callable[[str], Any], _F] = (_parse_int, str)
_FLOAT: tuple[Callable[[str], Any], _F] = (_parse_float, _fmt_float)
_NAME: tuple[Callable[[str], Any], _F] = (_parse_name, _fmt_name)

#: key -> (StageSpec field, (parse, format)), in canonical order
STAGE_KEYS: dict[str, tuple[str, tuple[Callable[[str], Any], _F]]] = {
    "r": ("repeats", _INT), "k": ("kernel", _INT), "s": ("stride", _INT),
    "e": ("expansion", _FLOAT), "m": ("mid_channels", _INT), "md": ("mid_divisor", _INT),
    "c": ("out_channels", _INT), "g": ("groups", _INT), "gw": ("group_width", _INT),
    "fg": ("first_groups", _INT), "d": ("dilation", _INT), "a": ("activation", _NAME),
}
#: keys always written, even at their default
ALWAYS = ("r", "k", "s", "e", "c")
#: key -> (SESpec field, (parse, format))
SE_KEYS: dict[str, tuple[str, tuple[Callable[[str], Any], _F]]] = {
    "se": ("ratio", _FLOAT), "seb": ("base", _NAME), "sed": ("divisor", _INT),
    "ser": ("rounding", _NAME), "sea": ("activation", _NAME), "seg": ("gate", _NAME),
}
#: flag token -> (StageSpec field, value when present)
FLAGS = {"noskip": ("skip", False), "avgd": ("shortcut", "avgpool_conv"),
         "caffe": ("style", "caffe"), "expand": ("expand", True)}
_KEYS = {**STAGE_KEYS, **SE_KEYS}


def _default(cls: type, name: str) -> Any:
    return cls.__dataclass_fields__[name].default


def encode_stage(stage: StageSpec) -> str:
    """The canonical block string of ``stage``."""
    if not isinstance(stage, StageSpec):
        raise TypeError(f"stage must be a StageSpec, got {type(stage).__name__}")
    parts = [BLOCK_TYPES[stage.block].code]
    for key, (name, (_, fmt)) in STAGE_KEYS.items():
        value = getattr(stage, name)
        if key in ALWAYS or value != _default(StageSpec, name):
            if value is not None:
                parts.append(key + fmt(value))
    if stage.se is not None:
        for key, (name, (_, fmt)) in SE_KEYS.items():
            value = getattr(stage.se, name)
            if key == "se" or value != _default(SESpec, name):
                parts.append(key + fmt(value))
    for flag, (name, value) in FLAGS.items():
        if getattr(stage, name) == value:
            parts.append(flag)
    return "_".join(parts)


def _split_token(token: str, where: str) -> tuple[str, Any]:
    """(key, parsed value) of ``token``: the longest key whose remainder parses."""
    for key in sorted((k for k in _KEYS if token.startswith(k)), key=len, reverse=True):
        parse = _KEYS[key][1][0]
        try:
            return key, parse(token[len(key):])
        except ValueError:
            continue
    raise ValueError(f"{where}: token {token!r} is not allowed; expected a key "
                     f"{sorted(_KEYS)} followed by its value, or a flag {sorted(FLAGS)}")


def decode_stage(text: str) -> StageSpec:
    """The :class:`StageSpec` of a block string (strict, see the module docstring)."""
    if not isinstance(text, str):
        raise TypeError(f"block string must be a str, got {type(text).__name__} {text!r}")
    where = f"block string {text!r}"
    code, *tokens = text.strip().split("_")
    codes = block_codes()
    if code not in codes:
        raise ValueError(f"{where}: block code {code!r} is not allowed; expected one of "
                         f"{sorted(codes)}")
    stage: dict[str, Any] = {"block": codes[code]}
    se: dict[str, Any] = {}
    seen: set[str] = set()
    for token in tokens:
        if token in FLAGS:
            key, (name, value) = token, FLAGS[token]
            target = stage
        else:
            key, value = _split_token(token, where)
            name = _KEYS[key][0]
            target = se if key in SE_KEYS else stage
        if key in seen:
            raise ValueError(f"{where}: key {key!r} is given twice")
        seen.add(key)
        target[name] = value
    missing = [k for k in ("r", "c") if k not in seen]
    if missing:
        raise ValueError(f"{where}: missing required key(s) {missing} (repeats, out_channels)")
    if se and "se" not in seen:
        raise ValueError(f"{where}: SE options {sorted(k for k in seen if k in SE_KEYS)} need "
                         "an 'se<ratio>' token")
    try:
        if se:
            stage["se"] = SESpec(**se)
        return StageSpec(**stage)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from None


def encode_stages(spec: NetworkSpec | Iterable[StageSpec]) -> list[str]:
    """The block strings of a network's (or a sequence of) stages."""
    stages = spec.stages if isinstance(spec, NetworkSpec) else tuple(spec)
    return [encode_stage(s) for s in stages]


def decode_stages(texts: Iterable[str]) -> tuple[StageSpec, ...]:
    """The stages of a list of block strings."""
    if isinstance(texts, str):
        raise TypeError("decode_stages takes a list of block strings; use decode_stage for one")
    return tuple(decode_stage(t) for t in texts)
