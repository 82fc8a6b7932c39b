"""MobileNetV1 (Howard et al. 2017), MobileNetV2 (Sandler et al. 2018) and MobileNetV3-Large/-Small
(Howard et al. 2019) as tables, with torchvision's width-multiplier rounding.

Width ``w``: every channel count c becomes ``make_divisible(c * w, 8)``. MobileNetV2's head is only
scaled up (``make_divisible(1280 * max(1, w), 8)``, ``HeadSpec.scale='width_up'``) and its hidden
width is ``int(round(in * t))``. MobileNetV3's irregular per-block table is one stage per block with
absolute expanded channels; its SE squeezes ``make_divisible(mid // 4, 8)`` channels with a ReLU
and a hard-sigmoid gate; BN eps 1e-3, momentum 0.01.
"""

from __future__ import annotations

from scaling.ir import HeadSpec, NetworkSpec, NormSpec, SESpec, StageSpec, StemSpec, make_divisible
from scaling.ir.codec import decode_stage

#: MobileNetV1 depthwise-separable stages: (out channels, repeats, stride of the first)
V1_TABLE = ((64, 1, 1), (128, 2, 2), (256, 2, 2), (512, 6, 2), (1024, 2, 2))

#: MobileNetV2 inverted residual stages: (expansion t, out channels c, repeats n, stride s)
V2_TABLE = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)

#: MobileNetV3 blocks as block strings (:mod:`scaling.ir.codec`), one stage each, with absolute
#: expanded channels ``m``; :func:`_v3_stage` scales them and sets the SE layout (V3_SE).
V3_LARGE = (
    "ir_r1_k3_s1_m16_c16",
    "ir_r1_k3_s2_m64_c24",
    "ir_r1_k3_s1_m72_c24",
    "ir_r1_k5_s2_m72_c40_se0.25",
    "ir_r1_k5_s1_m120_c40_se0.25",
    "ir_r1_k5_s1_m120_c40_se0.25",
    "ir_r1_k3_s2_m240_c80_ahswish",
    "ir_r1_k3_s1_m200_c80_ahswish",
    "ir_r1_k3_s1_m184_c80_ahswish",
    "ir_r1_k3_s1_m184_c80_ahswish",
    "ir_r1_k3_s1_m480_c112_se0.25_ahswish",
    "ir_r1_k3_s1_m672_c112_se0.25_ahswish",
    "ir_r1_k5_s2_m672_c160_se0.25_ahswish",
    "ir_r1_k5_s1_m960_c160_se0.25_ahswish",
    "ir_r1_k5_s1_m960_c160_se0.25_ahswish",
)
V3_SMALL = (
    "ir_r1_k3_s2_m16_c16_se0.25",
    "ir_r1_k3_s2_m72_c24",
    "ir_r1_k3_s1_m88_c24",
    "ir_r1_k5_s2_m96_c40_se0.25_ahswish",
    "ir_r1_k5_s1_m240_c40_se0.25_ahswish",
    "ir_r1_k5_s1_m240_c40_se0.25_ahswish",
    "ir_r1_k5_s1_m120_c48_se0.25_ahswish",
    "ir_r1_k5_s1_m144_c48_se0.25_ahswish",
    "ir_r1_k5_s2_m288_c96_se0.25_ahswish",
    "ir_r1_k5_s1_m576_c96_se0.25_ahswish",
    "ir_r1_k5_s1_m576_c96_se0.25_ahswish",
)
#: MobileNetV3: (stem channels, hidden linear width) per size; head conv = 6 * last stage.
V3_SIZES = {"large": (V3_LARGE, 16, 1280), "small": (V3_SMALL, 16, 1024)}
V3_SE = SESpec(ratio=0.25, base="mid", divisor=8, rounding="floor", activation="relu",
               gate="hsigmoid")
V3_NORM = NormSpec(eps=1e-3, momentum=0.01)


def _width(c: int, w: float) -> int:
    return make_divisible(c * w, 8)


def _v3_stage(text: str, width: float) -> StageSpec:
    stage = decode_stage(text)
    return stage.replace(out_channels=_width(stage.out_channels, width),
                         mid_channels=_width(stage.mid_channels, width),
                         se=V3_SE if stage.se is not None else None)


def mobilenet_v1(width: float = 1.0) -> NetworkSpec:
    """MobileNetV1: a 3x3/2 stem of 32 channels and 13 depthwise-separable blocks."""
    stages = tuple(StageSpec(block="ds", repeats=n, out_channels=_width(c, width), kernel=3,
                             stride=s) for c, n, s in V1_TABLE)
    return NetworkSpec(stages=stages, stem=StemSpec(channels=(_width(32, width),)),
                       head=HeadSpec(channels=None, scale="none"), family="mobilenet_v1")


def mobilenet_v2(width: float = 1.0) -> NetworkSpec:
    """MobileNetV2 (torchvision): ReLU6 throughout, head 1x1 conv to 1280, dropout 0.2."""
    stages = tuple(StageSpec(block="mbconv", repeats=n, out_channels=_width(c, width), kernel=3,
                             stride=s, expansion=float(t), activation="relu6")
                   for t, c, n, s in V2_TABLE)
    head = HeadSpec(channels=_width(1280 * max(1.0, width), 1.0), activation="relu6",
                    dropout=0.2, scale="width_up")
    return NetworkSpec(stages=stages, head=head, family="mobilenet_v2",
                       stem=StemSpec(channels=(_width(32, width),), activation="relu6"))


def mobilenet_v3(size: str = "large", width: float = 1.0) -> NetworkSpec:
    """MobileNetV3-Large or -Small (torchvision tables), one stage per block."""
    if size not in V3_SIZES:
        raise ValueError(f"size={size!r} is not allowed; expected one of {sorted(V3_SIZES)}")
    table, stem, hidden = V3_SIZES[size]
    stages = tuple(_v3_stage(text, width) for text in table)
    head = HeadSpec(channels=6 * stages[-1].out_channels, channels_ratio=6, activation="hswish",
                    hidden=_width(hidden, width), hidden_activation="hswish", dropout=0.2)
    return NetworkSpec(stages=stages, head=head, norm=V3_NORM, family="mobilenet_v3",
                       stem=StemSpec(channels=(_width(stem, width),), activation="hswish"))


MODELS = {
    "mobilenet_v1": (mobilenet_v1, {}),
    "mobilenet_v1_x0_5": (mobilenet_v1, {"width": 0.5}),
    "mobilenet_v2": (mobilenet_v2, {}),
    "mobilenet_v2_x0_5": (mobilenet_v2, {"width": 0.5}),
    "mobilenet_v3_large": (mobilenet_v3, {"size": "large"}),
    "mobilenet_v3_small": (mobilenet_v3, {"size": "small"}),
}
