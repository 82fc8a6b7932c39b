"""MNASNet-B1 (Tan et al. 2019), torchvision's ``mnasnet0_5`` .. ``mnasnet1_3``, defined entirely
as data: one table of block strings (:mod:`scaling.ir.codec`) read by
:func:`scaling.zoo.families.table.from_table`; the width multiplier goes through
:func:`scaling.compound.rule.scale` (torchvision's ``_round_to_multiple_of(c * alpha, 8)`` is
``make_divisible``). The stem's depthwise-separable conv (3x3 dw, 1x1 to 16 without activation)
is an MBConv of expansion 1; the head conv stays 1280 at every width; BN momentum 1 - 0.9997.
"""

from __future__ import annotations

from scaling.zoo.families.table import from_table

TABLE = {
    "family": "mnasnet",
    "stem": {"channels": [32], "kernels": [3], "strides": [2], "activation": "relu"},
    "stages": [
        "ir_r1_k3_s1_e1_c16",
        "ir_r3_k3_s2_e3_c24",
        "ir_r3_k5_s2_e3_c40",
        "ir_r3_k5_s2_e6_c80",
        "ir_r2_k3_s1_e6_c96",
        "ir_r4_k5_s2_e6_c192",
        "ir_r1_k3_s1_e6_c320",
    ],
    "head": {"channels": 1280, "activation": "relu", "dropout": 0.2, "scale": "none"},
    "norm": {"type": "BN", "eps": 1e-5, "momentum": 1 - 0.9997},
}

MODELS = {
    "mnasnet0_5": (from_table, {"table": TABLE, "width": 0.5}),
    "mnasnet0_75": (from_table, {"table": TABLE, "width": 0.75}),
    "mnasnet1_0": (from_table, {"table": TABLE}),
    "mnasnet1_3": (from_table, {"table": TABLE, "width": 1.3}),
}
