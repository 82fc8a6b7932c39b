"""Specs from plain data: a family written as a dict (JSON/YAML-able) with block strings.

``from_table(table, width, depth)`` decodes the stage strings (:mod:`scaling.ir.codec`), builds
the :class:`~scaling.ir.spec.NetworkSpec` with :meth:`NetworkSpec.from_dict` and, for
multipliers other than 1, scales it with :func:`scaling.compound.rule.scale` (make_divisible(c *
w, 8) channels, ceil(n * d) repeats, stem and head per their ``scale`` fields). So a
MobileNet/EfficientNet-kin model is a table only: see :mod:`scaling.zoo.families.mnasnet`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scaling.ir import NetworkSpec, decode_stages


def from_table(table: Mapping[str, Any], width: float = 1.0, depth: float = 1.0) -> NetworkSpec:
    """The spec of ``table`` (NetworkSpec.from_dict keys, ``stages`` as block strings)."""
    if not isinstance(table, Mapping) or "stages" not in table:
        raise TypeError("table must be a mapping with a 'stages' list of block strings")
    data = dict(table)
    data["stages"] = [s.to_dict() for s in decode_stages(table["stages"])]
    spec = NetworkSpec.from_dict(data)
    if width != 1 or depth != 1:
        from scaling.compound import scale

        spec = scale(spec, depth=depth, width=width, name=spec.name)
    return spec
