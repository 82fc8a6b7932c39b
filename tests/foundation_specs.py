"""Specs shared by the IR, layer, block and builder tests (small, CPU-fast), and torchvision
architectures written out as specs with their published parameter and MAC counts."""

from __future__ import annotations

from scaling.ir import HeadSpec, NetworkSpec, NormSpec, SESpec, StageSpec, StemSpec

NORMS_2D = ("BN", "BN2d", "SyncBN", "GN", "LN", "IN", "IN2d")
ACTIVATIONS = ("relu", "relu6", "leaky_relu", "prelu", "hswish", "hsigmoid", "sigmoid", "silu",
               "swish", "gelu", "identity")
BLOCKS = ("basic", "bottleneck", "ds", "mbconv", "fused_mbconv", "shuffle_v1", "shuffle_v2")


def small(stages, norm: NormSpec | None = None, **kw) -> NetworkSpec:
    """A small network: 3x3/1 stem of 8 channels, no head conv, 10 classes, 32x32 input."""
    kw.setdefault("stem", StemSpec(channels=(8,), kernels=(3,), strides=(1,)))
    kw.setdefault("head", HeadSpec())
    kw.setdefault("resolution", 32)
    kw.setdefault("num_classes", 10)
    return NetworkSpec(stages=tuple(stages), norm=norm or NormSpec(), **kw)


SE = SESpec(ratio=0.25)
SE_MID = SESpec(ratio=0.25, base="mid", divisor=8, activation="relu", gate="hsigmoid")

# One spec per block type, with stride 1 and 2 and (where the block has it) SE on and off.
BLOCK_SPECS: dict[str, NetworkSpec] = {
    "basic": small([StageSpec("basic", 2, 8), StageSpec("basic", 2, 16, stride=2)]),
    "bottleneck": small([
        StageSpec("bottleneck", 2, 16, expansion=0.25),
        StageSpec("bottleneck", 2, 32, stride=2, expansion=0.5, groups=2, se=SE),
        StageSpec("bottleneck", 1, 32, stride=2, expansion=0.5, style="caffe",
                  shortcut="avgpool_conv", group_width=4)]),
    "ds": small([StageSpec("ds", 1, 16), StageSpec("ds", 2, 24, stride=2, expansion=2)]),
    "mbconv": small([
        StageSpec("mbconv", 1, 8, expansion=1, activation="relu6"),
        StageSpec("mbconv", 2, 16, stride=2, expansion=4, kernel=5, se=SE_MID, mid_divisor=8,
                  activation="hswish"),
        StageSpec("mbconv", 2, 16, expansion=3, se=SESpec(activation="silu"),
                  activation="silu")], drop_path_rate=0.2),
    "fused_mbconv": small([
        StageSpec("fused_mbconv", 2, 8, expansion=1),
        StageSpec("fused_mbconv", 2, 16, stride=2, expansion=4, activation="silu"),
        StageSpec("fused_mbconv", 1, 24, stride=2, expansion=2, se=SE)]),
    "shuffle_v1": small([
        StageSpec("shuffle_v1", 2, 24, stride=2, expansion=0.25, groups=2, first_groups=1),
        StageSpec("shuffle_v1", 2, 48, stride=2, expansion=0.25, groups=2)]),
    "shuffle_v2": small([StageSpec("shuffle_v2", 2, 16, stride=2),
                         StageSpec("shuffle_v2", 2, 32, stride=2, kernel=5)]),
}

MIXED = small([
    StageSpec("basic", 1, 8),
    StageSpec("bottleneck", 1, 16, stride=2, expansion=0.25, se=SE),
    StageSpec("ds", 1, 16),
    StageSpec("mbconv", 2, 24, stride=2, expansion=2, se=SE_MID),
    StageSpec("fused_mbconv", 1, 24, expansion=2),
    StageSpec("shuffle_v1", 1, 48, stride=2, expansion=0.25, groups=2),
    StageSpec("shuffle_v2", 2, 48)],
    stem=StemSpec(channels=(8, 8), kernels=(3, 3), strides=(1, 1), pool="max"),
    head=HeadSpec(channels=32, hidden=24, dropout=0.1), resolution=40, drop_path_rate=0.1)

SAME_PADDING = MIXED.replace(padding="same", resolution=33, name="mixed-same")


def _tv_stem(c: int, k: int = 3, act: str = "relu", pool: str | None = None) -> StemSpec:
    return StemSpec(channels=(c,), kernels=(k,), strides=(2,), pool=pool, activation=act)


def _resnet(block: str, depths, expansion: float = 1.0, groups: int = 1) -> NetworkSpec:
    widths = (64, 128, 256, 512) if block == "basic" else (256, 512, 1024, 2048)
    return NetworkSpec(
        stages=tuple(StageSpec(block, n, c, stride=1 if i == 0 else 2, expansion=expansion,
                               groups=groups) for i, (n, c) in enumerate(zip(depths, widths))),
        stem=_tv_stem(64, 7, pool="max"), family="resnet")


def _mnv3_small() -> NetworkSpec:
    se = SESpec(ratio=0.25, base="mid", divisor=8, activation="relu", gate="hsigmoid")
    rows = [  # kernel, mid, out, se, act, stride (torchvision's bneck table)
        (3, 16, 16, True, "relu", 2), (3, 72, 24, False, "relu", 2),
        (3, 88, 24, False, "relu", 1), (5, 96, 40, True, "hswish", 2),
        (5, 240, 40, True, "hswish", 1), (5, 240, 40, True, "hswish", 1),
        (5, 120, 48, True, "hswish", 1), (5, 144, 48, True, "hswish", 1),
        (5, 288, 96, True, "hswish", 2), (5, 576, 96, True, "hswish", 1),
        (5, 576, 96, True, "hswish", 1)]
    return NetworkSpec(
        stages=tuple(StageSpec("mbconv", 1, c, kernel=k, stride=s, mid_channels=m,
                               se=se if use_se else None, activation=a)
                     for k, m, c, use_se, a, s in rows),
        stem=_tv_stem(16, act="hswish"), norm=NormSpec(eps=1e-3, momentum=0.01),
        head=HeadSpec(channels=576, activation="hswish", hidden=1024,
                      hidden_activation="hswish", dropout=0.2))


def _efficientnet_b0() -> NetworkSpec:
    se = SESpec(ratio=0.25, activation="silu")
    rows = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
            (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]  # e, k, s, out, n
    return NetworkSpec(
        stages=tuple(StageSpec("mbconv", n, c, kernel=k, stride=s, expansion=e, mid_divisor=8,
                               se=se, activation="silu") for e, k, s, c, n in rows),
        stem=_tv_stem(32, act="silu"), head=HeadSpec(channels=1280, activation="silu",
                                                       dropout=0.2), drop_path_rate=0.2)


def _efficientnet_v2_s() -> NetworkSpec:
    se = SESpec(ratio=0.25, activation="silu")
    fused = [(1, 2, 1, 24), (4, 4, 2, 48), (4, 4, 2, 64)]  # e, n, s, out
    mb = [(4, 6, 2, 128), (6, 9, 1, 160), (6, 15, 2, 256)]
    stages = [StageSpec("fused_mbconv", n, c, stride=s, expansion=e, mid_divisor=8,
                        activation="silu") for e, n, s, c in fused]
    stages += [StageSpec("mbconv", n, c, stride=s, expansion=e, mid_divisor=8, se=se,
                         activation="silu") for e, n, s, c in mb]
    return NetworkSpec(stages=tuple(stages), stem=_tv_stem(24, act="silu"),
                       norm=NormSpec(eps=1e-3), resolution=384,
                       head=HeadSpec(channels=1280, activation="silu", dropout=0.2))


def _regnet_y_400mf() -> NetworkSpec:
    se = SESpec(ratio=0.25, rounding="round")
    return NetworkSpec(
        stages=tuple(StageSpec("bottleneck", n, w, stride=2, group_width=8, se=se)
                     for n, w in zip((1, 3, 6, 6), (48, 104, 208, 440))),
        stem=_tv_stem(32))


# torchvision model -> (spec, params, conv+linear MACs at the spec's resolution); figures from
# torchvision 0.29.1 (DESIGN.md's reference.csv), not from this package.
TORCHVISION: dict[str, tuple[NetworkSpec, int, int]] = {
    "resnet18": (_resnet("basic", (2, 2, 2, 2)), 11689512, 1814073344),
    "resnet50": (_resnet("bottleneck", (3, 4, 6, 3), 0.25), 25557032, 4089184256),
    "resnext50_32x4d": (_resnet("bottleneck", (3, 4, 6, 3), 0.5, 32), 25028904, 4230479872),
    "wide_resnet50_2": (_resnet("bottleneck", (3, 4, 6, 3), 0.5), 68883240, 11398021120),
    "shufflenet_v2_x1_0": (NetworkSpec(
        stages=tuple(StageSpec("shuffle_v2", n, c, stride=2)
                     for n, c in ((4, 116), (8, 232), (4, 464))),
        stem=_tv_stem(24, pool="max"), head=HeadSpec(channels=1024)), 2278604, 144907992),
    "mobilenet_v2": (NetworkSpec(
        stages=tuple(StageSpec("mbconv", n, c, stride=s, expansion=t, activation="relu6")
                     for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2),
                                        (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                                        (6, 320, 1, 1))),
        stem=_tv_stem(32, act="relu6"),
        head=HeadSpec(channels=1280, activation="relu6", dropout=0.2)), 3504872, 300774272),
    "mobilenet_v3_small": (_mnv3_small(), 2542856, 56510400),
    "efficientnet_b0": (_efficientnet_b0(), 5288548, 385814752),
    "efficientnet_v2_s": (_efficientnet_v2_s(), 21458488, 8365617152),
    "regnet_y_400mf": (_regnet_y_400mf(), 4344144, 401842848),
}

ALL_SPECS: list[NetworkSpec] = [*BLOCK_SPECS.values(), MIXED, SAME_PADDING,
                                *(t[0] for t in TORCHVISION.values())]
