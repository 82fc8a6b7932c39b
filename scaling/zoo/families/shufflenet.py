"""ShuffleNetV2 (Ma et al. 2018, torchvision) and ShuffleNetV1 (Zhang et al. 2018, mmpretrain).

Both: a 3x3/2 conv of 24 channels and a 3x3/2 max pool, then three stages of [4, 8, 4] blocks
whose first block downsamples. V2 ends with a 1x1 conv to the last number of its channel list; V1
has no head conv. V1's mid channels are ``out / 4`` computed from the stage's full output (before
a downsampling block subtracts the concatenated input), and the first 1x1 conv of the network's
first block is dense (``first_groups=1``) since 24 stem channels are too few to group.
"""

from __future__ import annotations

from scaling.ir import HeadSpec, NetworkSpec, StageSpec, StemSpec

REPEATS = (4, 8, 4)
STEM = StemSpec(channels=(24,), kernels=(3,), strides=(2,), pool="max")

#: size -> (stage channels ..., head conv channels), torchvision's stages_out_channels[1:]
V2_CHANNELS: dict[str, tuple[int, int, int, int]] = {
    "0.5": (48, 96, 192, 1024),
    "1.0": (116, 232, 464, 1024),
    "1.5": (176, 352, 704, 1024),
    "2.0": (244, 488, 976, 2048),
}
#: groups -> stage output channels (paper Table 1, complexity 1x)
V1_CHANNELS: dict[int, tuple[int, int, int]] = {
    1: (144, 288, 576),
    2: (200, 400, 800),
    3: (240, 480, 960),
    4: (272, 544, 1088),
    8: (384, 768, 1536),
}


def shufflenet_v2(size: str = "1.0") -> NetworkSpec:
    """ShuffleNetV2 at one of the published sizes ('0.5', '1.0', '1.5', '2.0')."""
    if size not in V2_CHANNELS:
        raise ValueError(f"size={size!r} is not allowed; expected one of {sorted(V2_CHANNELS)}")
    *stage_channels, head = V2_CHANNELS[size]
    stages = tuple(StageSpec(block="shuffle_v2", repeats=n, out_channels=c, kernel=3, stride=2)
                   for n, c in zip(REPEATS, stage_channels))
    return NetworkSpec(stages=stages, stem=STEM, family="shufflenet_v2",
                       head=HeadSpec(channels=head, activation="relu", scale="none"))


def shufflenet_v1(groups: int = 3, width: float = 1.0) -> NetworkSpec:
    """ShuffleNetV1 with ``groups`` groups; channels ``int(c * width)`` (mmpretrain's widen)."""
    if groups not in V1_CHANNELS:
        raise ValueError(f"groups={groups!r} is not allowed; expected one of {sorted(V1_CHANNELS)}")
    stages = tuple(
        StageSpec(block="shuffle_v1", repeats=n, out_channels=int(c * width), kernel=3,
                  stride=2, expansion=0.25, groups=groups, first_groups=1 if i == 0 else None)
        for i, (n, c) in enumerate(zip(REPEATS, V1_CHANNELS[groups])))
    return NetworkSpec(stages=stages, stem=STEM, family="shufflenet_v1",
                       head=HeadSpec(channels=None, scale="none"))


MODELS = {
    **{f"shufflenet_v2_x{w.replace('.', '_')}": (shufflenet_v2, {"size": w})
       for w in V2_CHANNELS},
    **{f"shufflenet_v1_g{g}": (shufflenet_v1, {"groups": g}) for g in V1_CHANNELS},
}
