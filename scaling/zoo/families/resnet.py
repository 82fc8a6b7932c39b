"""ResNet (He et al. 2016), ResNeXt (Xie et al. 2017), Wide ResNet (Zagoruyko & Komodakis 2016)
and ResNet-D (He et al. 2019, "Bag of Tricks") as stage tables.

torchvision semantics ("v1.5"): the stride sits on the 3x3 conv of a bottleneck (``style
'pytorch'``); the first block of every stage projects its shortcut (1x1/s conv + norm). Bottleneck
mid channels derive from the output: ``mid = out * expansion`` with ``expansion = groups *
width_per_group / 64 / 4`` (0.25 for ResNet, 0.5 for ResNeXt-50 32x4d and Wide ResNet-50-2).
ResNet-D: deep stem (3x3 convs 32, 32, 64; stride on the first) and an average-pool shortcut.
"""

from __future__ import annotations

from scaling.ir import HeadSpec, NetworkSpec, StageSpec, StemSpec

#: layers -> (block, repeats per stage)
DEPTHS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
#: stage planes; a stage outputs ``per_plane *`` these channels
PLANES = (64, 128, 256, 512)
#: block -> (output channels per plane, whether groups / width_per_group apply)
FORMS: dict[str, tuple[int, bool]] = {"basic": (1, False), "bottleneck": (4, True)}
STRIDES = (1, 2, 2, 2)
STEM = StemSpec(channels=(64,), kernels=(7,), strides=(2,), pool="max")
DEEP_STEM = StemSpec(channels=(32, 32, 64), kernels=(3, 3, 3), strides=(2, 1, 1), pool="max")


def resnet(layers: int = 50, groups: int = 1, width_per_group: int = 64,
           deep_stem: bool = False, avg_down: bool = False) -> NetworkSpec:
    """A ResNet with ``layers`` weighted layers; ``groups``/``width_per_group`` as torchvision's
    ResNeXt; ``deep_stem``/``avg_down``: ResNet-D."""
    if layers not in DEPTHS:
        raise ValueError(f"layers={layers!r} is not allowed; expected one of {sorted(DEPTHS)}")
    block, repeats = DEPTHS[layers]
    per_plane, grouped = FORMS[block]
    if not grouped and (groups != 1 or width_per_group != 64):
        raise ValueError("groups/width_per_group are only allowed with bottleneck depths "
                         f"(50, 101, 152), got layers={layers}")
    expansion = groups * width_per_group / 64 / 4 if grouped else 1.0
    stages = tuple(
        StageSpec(block=block, repeats=n, out_channels=per_plane * c, kernel=3, stride=s,
                  expansion=expansion, groups=groups,
                  shortcut="avgpool_conv" if avg_down else "conv")
        for n, c, s in zip(repeats, PLANES, STRIDES))
    return NetworkSpec(stages=stages, stem=DEEP_STEM if deep_stem else STEM,
                       head=HeadSpec(channels=None, scale="none"), family="resnet")


MODELS = {
    "resnet18": (resnet, {"layers": 18}),
    "resnet34": (resnet, {"layers": 34}),
    "resnet50": (resnet, {"layers": 50}),
    "resnet101": (resnet, {"layers": 101}),
    "resnet152": (resnet, {"layers": 152}),
    "resnext50_32x4d": (resnet, {"layers": 50, "groups": 32, "width_per_group": 4}),
    "resnext101_32x8d": (resnet, {"layers": 101, "groups": 32, "width_per_group": 8}),
    "wide_resnet50_2": (resnet, {"layers": 50, "width_per_group": 128}),
    "wide_resnet101_2": (resnet, {"layers": 101, "width_per_group": 128}),
    **{f"resnet{d}d": (resnet, {"layers": d, "deep_stem": True, "avg_down": True})
       for d in (18, 34, 50, 101, 152)},
}
