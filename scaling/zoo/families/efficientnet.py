"""EfficientNet-B0..B7, B8, L2 (Tan & Le 2019; Xie et al. 2020) and EfficientNetV2-S/M/L (Tan & Le
2021) as tables, with torchvision's rounding.

The B-series is the B0 table scaled by the official (width, depth) coefficients through
:func:`efficientnet` (:data:`scaling.compound.rule.EFFICIENTNET`): channels
``round_filters(c, w)`` = ``make_divisible(c * w, 8)`` (stem included), repeats ``ceil(n * d)``,
head conv ``4 *`` the last stage's channels (``HeadSpec.channels_ratio=4``), expanded channels
``make_divisible(in * e, 8)`` (``mid_divisor=8``), SE squeeze ``max(1, in // 4)`` with SiLU inside
and a sigmoid gate, SiLU everywhere, drop path 0.2 (``p * i / N``). B5 and up use BN eps 1e-3,
momentum 0.01 (torchvision's B5-B7; TF uses them for every model).

Resolutions: the zoo's default is torchvision's evaluation crop (``EVAL_RESOLUTION``, which is what
``reference.csv`` lists: B2 288, B4 380), not the paper's (``EFFICIENTNET``: B2 260).
"""

from __future__ import annotations

from scaling.compound import EFFICIENTNET
from scaling.ir import (
    HeadSpec,
    NetworkSpec,
    NormSpec,
    SESpec,
    StageSpec,
    StemSpec,
    round_filters,
    round_repeats,
)
from scaling.ir.codec import decode_stage

#: B0 stages: (block, expansion, kernel, stride, out channels, repeats); stem 32 channels
B0_TABLE = (
    ("mbconv", 1, 3, 1, 16, 1),
    ("mbconv", 6, 3, 2, 24, 2),
    ("mbconv", 6, 5, 2, 40, 2),
    ("mbconv", 6, 3, 2, 80, 3),
    ("mbconv", 6, 5, 1, 112, 3),
    ("mbconv", 6, 5, 2, 192, 4),
    ("mbconv", 6, 3, 1, 320, 1),
)
B0_STEM = 32
HEAD_RATIO = 4

#: The released coefficients (width, depth, paper resolution, dropout) live in
#: :data:`scaling.compound.rule.EFFICIENTNET`; the names of its rows:
VARIANTS = tuple(EFFICIENTNET)
#: torchvision's evaluation crop (reference.csv); B8/L2 are not in torchvision: paper values.
EVAL_RESOLUTION = {"b0": 224, "b1": 240, "b2": 288, "b3": 300, "b4": 380, "b5": 456,
                   "b6": 528, "b7": 600, "b8": 672, "l2": 800}
#: Models that use TF's BN settings in torchvision (and, by extension, B8 and L2).
TF_NORM_MODELS = ("b5", "b6", "b7", "b8", "l2")
TF_NORM = NormSpec(eps=1e-3, momentum=0.01)
SE = SESpec(ratio=0.25, base="in", rounding="floor", activation="silu", gate="sigmoid")
#: block -> its SE: EfficientNetV2's fused stages have none
SE_OF: dict[str, SESpec | None] = {"mbconv": SE, "fused_mbconv": None}
DROP_PATH = 0.2

#: EfficientNetV2 stages as block strings (:mod:`scaling.ir.codec`), each completed by
#: :func:`_v2_stage` (SiLU, expanded channels make_divisible(in * e, 8), SE on the MBConv
#: stages); (stem channels, stages, dropout) per size.
V2_TABLES: dict[str, tuple[int, tuple[str, ...], float]] = {
    "s": (24, (
        "er_r2_k3_s1_e1_c24",
        "er_r4_k3_s2_e4_c48",
        "er_r4_k3_s2_e4_c64",
        "ir_r6_k3_s2_e4_c128",
        "ir_r9_k3_s1_e6_c160",
        "ir_r15_k3_s2_e6_c256",
    ), 0.2),
    "m": (24, (
        "er_r3_k3_s1_e1_c24",
        "er_r5_k3_s2_e4_c48",
        "er_r5_k3_s2_e4_c80",
        "ir_r7_k3_s2_e4_c160",
        "ir_r14_k3_s1_e6_c176",
        "ir_r18_k3_s2_e6_c304",
        "ir_r5_k3_s1_e6_c512",
    ), 0.3),
    "l": (32, (
        "er_r4_k3_s1_e1_c32",
        "er_r7_k3_s2_e4_c64",
        "er_r7_k3_s2_e4_c96",
        "ir_r10_k3_s2_e4_c192",
        "ir_r19_k3_s1_e6_c224",
        "ir_r25_k3_s2_e6_c384",
        "ir_r7_k3_s1_e6_c640",
    ), 0.4),
}
V2_RESOLUTION = {"s": 384, "m": 480, "l": 480}
V2_HEAD = 1280
V2_NORM = NormSpec(eps=1e-3)


def _stage(row: tuple[str, int, int, int, int, int], out: int, repeats: int) -> StageSpec:
    block, e, k, s, _, _ = row
    return StageSpec(block=block, repeats=repeats, out_channels=out, kernel=k, stride=s,
                     expansion=float(e), mid_divisor=8, activation="silu", se=SE_OF[block])


def _v2_stage(text: str) -> StageSpec:
    stage = decode_stage(text)
    return stage.replace(mid_divisor=8, activation="silu", se=SE_OF[stage.block])


def efficientnet(width: float = 1.0, depth: float = 1.0, resolution: int = 224,
                 dropout: float = 0.2, norm: NormSpec | None = None) -> NetworkSpec:
    """The B0 table scaled by ``width`` and ``depth`` (torchvision's rounding, see module doc)."""
    stages = tuple(_stage(row, round_filters(row[4], width), round_repeats(row[5], depth))
                   for row in B0_TABLE)
    return NetworkSpec(
        stages=stages, resolution=resolution, drop_path_rate=DROP_PATH,
        stem=StemSpec(channels=(round_filters(B0_STEM, width),), activation="silu"),
        head=HeadSpec(channels=HEAD_RATIO * stages[-1].out_channels, activation="silu",
                      dropout=dropout, scale="width", channels_ratio=HEAD_RATIO),
        norm=norm or NormSpec(), family="efficientnet")


def official_kwargs(variant: str) -> dict:
    """The :func:`efficientnet` arguments of EfficientNet-``variant`` (official coefficients)."""
    if variant not in EFFICIENTNET:
        raise ValueError(f"variant={variant!r} is not allowed; expected one of {VARIANTS}")
    row = EFFICIENTNET[variant]
    return {"width": row.width, "depth": row.depth, "resolution": EVAL_RESOLUTION[variant],
            "dropout": row.dropout, "norm": TF_NORM if variant in TF_NORM_MODELS else None}


def efficientnet_official(variant: str = "b0") -> NetworkSpec:
    """EfficientNet-``variant`` (official coefficients), at its torchvision eval resolution."""
    return efficientnet(**official_kwargs(variant))


def efficientnet_v2(size: str = "s") -> NetworkSpec:
    """EfficientNetV2-S/M/L (torchvision): Fused-MBConv early stages, head conv 1280."""
    if size not in V2_TABLES:
        raise ValueError(f"size={size!r} is not allowed; expected one of {sorted(V2_TABLES)}")
    stem, table, dropout = V2_TABLES[size]
    return NetworkSpec(
        stages=tuple(_v2_stage(text) for text in table),
        stem=StemSpec(channels=(stem,), activation="silu"), resolution=V2_RESOLUTION[size],
        head=HeadSpec(channels=V2_HEAD, activation="silu", dropout=dropout, scale="none"),
        norm=V2_NORM, drop_path_rate=DROP_PATH, family="efficientnet_v2")


MODELS = {
    **{f"efficientnet_{v}": (efficientnet, official_kwargs(v)) for v in VARIANTS},
    **{f"efficientnet_v2_{s}": (efficientnet_v2, {"size": s}) for s in V2_TABLES},
}
