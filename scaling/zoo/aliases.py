"""timm's names for the zoo's models (torch-free): ``alias -> (zoo name, spec replacements)``.

Where timm's model differs from the zoo's (torchvision's) only in BatchNorm eps/momentum or in
TF 'same' padding, the replacement carries it, so timm's weights load with timm's function
(:func:`scaling.zoo.weights.load_timm` refuses a model whose BN eps differs from the weights').
A pretrained tag is stripped: ``resnet50.a1_in1k`` is ``resnet50``. Names equal in both libraries
are :data:`SAME_NAME`; where timm's model of that name differs from torchvision's (EfficientNet
B5 and up: timm keeps torch's BatchNorm, torchvision uses TF's eps 1e-3), the replacement applies
when a timm checkpoint is loaded by that name (:func:`timm_replacements`).
"""

from __future__ import annotations

from typing import Any

from scaling.ir import NormSpec

#: timm's BatchNorm (torch's defaults) and the TF ports' (``tf_*``: eps 1e-3, momentum 0.01)
TIMM_NORM = NormSpec(eps=1e-5, momentum=0.1)
TF_NORM = NormSpec(eps=1e-3, momentum=0.01)
_TF = {"norm": TF_NORM, "padding": "same"}

ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    "mobilenetv2_100": ("mobilenet_v2", {}),
    "mobilenetv2_050": ("mobilenet_v2_x0_5", {}),
    "mobilenetv3_large_100": ("mobilenet_v3_large", {"norm": TIMM_NORM}),
    "mobilenetv3_small_100": ("mobilenet_v3_small", {"norm": TIMM_NORM}),
    "mnasnet_100": ("mnasnet1_0", {"norm": TIMM_NORM}),
    "mnasnet_050": ("mnasnet0_5", {"norm": TIMM_NORM}),
    "efficientnetv2_s": ("efficientnet_v2_s", {"norm": TIMM_NORM}),
    "efficientnetv2_m": ("efficientnet_v2_m", {"norm": TIMM_NORM}),
    "efficientnetv2_l": ("efficientnet_v2_l", {"norm": TIMM_NORM}),
    "tf_efficientnetv2_s": ("efficientnet_v2_s", _TF),
    "tf_efficientnetv2_m": ("efficientnet_v2_m", _TF),
    "tf_efficientnetv2_l": ("efficientnet_v2_l", _TF),
    **{f"tf_efficientnet_b{i}": (f"efficientnet_b{i}", _TF) for i in range(8)},
}


_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
#: zoo names that timm uses for the same architecture -> replacements that give timm's model
SAME_NAME: dict[str, dict[str, Any]] = {
    **{n: {} for n in _RESNETS}, **{f"{n}d": {} for n in _RESNETS},
    **{n: {} for n in ("resnext50_32x4d", "resnext101_32x8d", "wide_resnet50_2",
                       "wide_resnet101_2")},
    **{f"efficientnet_b{i}": {} for i in range(5)},
    **{n: {"norm": TIMM_NORM} for n in ("efficientnet_b5", "efficientnet_b6", "efficientnet_b7",
                                        "efficientnet_b8", "efficientnet_l2")},
}


def timm_replacements(name: str) -> dict[str, Any] | None:
    """The spec replacements that make ``name`` timm's model of that name (None: timm has no
    model of that name)."""
    base = name.split(".", 1)[0]
    if base in ALIASES:
        return ALIASES[base][1]
    return SAME_NAME.get(base)


def resolve(name: str) -> tuple[str, dict[str, Any]]:
    """(zoo name, spec replacements) of a zoo name or timm alias, pretrained tag stripped."""
    base = name.split(".", 1)[0]
    if base in ALIASES:
        return ALIASES[base]
    return base, {}
