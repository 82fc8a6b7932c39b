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
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
INCEPTION = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))

#: timm's preprocessing of each alias (its default pretrained tag, timm 1.0.31): input size,
#: crop_pct, interpolation, (mean, std); what the alias's ``pretrained_cfg`` reports
PREPROCESS: dict[str, tuple[int, float, str, tuple[tuple[float, ...], tuple[float, ...]]]] = {
    **{n: (224, 0.875, "bicubic", IMAGENET) for n in (
        "mobilenetv2_100", "mobilenetv2_050", "mobilenetv3_large_100", "mobilenetv3_small_100",
        "mnasnet_100", "mnasnet_050")},
    "efficientnetv2_s": (288, 1.0, "bicubic", IMAGENET),
    "efficientnetv2_m": (320, 1.0, "bicubic", IMAGENET),
    "efficientnetv2_l": (384, 1.0, "bicubic", IMAGENET),
    "tf_efficientnetv2_s": (300, 1.0, "bicubic", INCEPTION),
    "tf_efficientnetv2_m": (384, 1.0, "bicubic", INCEPTION),
    "tf_efficientnetv2_l": (384, 1.0, "bicubic", INCEPTION),
    **{f"tf_efficientnet_b{i}": (r, crop, "bicubic", IMAGENET) for i, (r, crop) in enumerate(
        ((224, 0.875), (240, 0.882), (260, 0.89), (300, 0.904), (380, 0.922), (456, 0.934),
         (528, 0.942), (600, 0.949)))},
    "tf_efficientnet_b8": (672, 0.954, "bicubic", INCEPTION),
    "tf_efficientnet_l2": (475, 0.936, "bicubic", IMAGENET),
    "tf_mobilenetv3_large_100": (224, 0.875, "bilinear", INCEPTION),
    "tf_mobilenetv3_small_100": (224, 0.875, "bilinear", INCEPTION),
    "mobilenetv1_100": (224, 0.875, "bicubic", INCEPTION),
    "regnety_004": (224, 0.965, "bicubic", IMAGENET),
}

#: alias -> (zoo name, replacements): NetworkSpec fields, and ``activation`` (a generic override
#: of :func:`scaling.zoo.models.get_spec`); the resolution is timm's input size (PREPROCESS)
ALIASES: dict[str, tuple[str, dict[str, Any]]] = {name: (zoo, {**rep, "resolution": PREPROCESS[
    name][0]}) for name, (zoo, rep) in {
        "mobilenetv2_100": ("mobilenet_v2", {}),
        "mobilenetv2_050": ("mobilenet_v2_x0_5", {}),
        "mobilenetv3_large_100": ("mobilenet_v3_large", {"norm": TIMM_NORM}),
        "mobilenetv3_small_100": ("mobilenet_v3_small", {"norm": TIMM_NORM}),
        "tf_mobilenetv3_large_100": ("mobilenet_v3_large", _TF),
        "tf_mobilenetv3_small_100": ("mobilenet_v3_small", _TF),
        "mobilenetv1_100": ("mobilenet_v1", {"norm": TIMM_NORM, "activation": "relu6"}),
        "regnety_004": ("regnet_y_400mf", {}),
        "mnasnet_100": ("mnasnet1_0", {"norm": TIMM_NORM}),
        "mnasnet_050": ("mnasnet0_5", {"norm": TIMM_NORM}),
        "efficientnetv2_s": ("efficientnet_v2_s", {"norm": TIMM_NORM}),
        "efficientnetv2_m": ("efficientnet_v2_m", {"norm": TIMM_NORM}),
        "efficientnetv2_l": ("efficientnet_v2_l", {"norm": TIMM_NORM}),
        "tf_efficientnetv2_s": ("efficientnet_v2_s", _TF),
        "tf_efficientnetv2_m": ("efficientnet_v2_m", _TF),
        "tf_efficientnetv2_l": ("efficientnet_v2_l", _TF),
        **{f"tf_efficientnet_{v}": (f"efficientnet_{v}", _TF)
           for v in (*(f"b{i}" for i in range(9)), "l2")},
    }.items()}
#: replacements that are overrides of get_spec, not NetworkSpec fields
OVERRIDES = ("activation",)


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
    """The NetworkSpec replacements that make ``name`` timm's model of that name (None: timm
    has no model of that name)."""
    base = name.split(".", 1)[0]
    if base in ALIASES:
        return {k: v for k, v in ALIASES[base][1].items() if k not in OVERRIDES}
    return SAME_NAME.get(base)


def resolve(name: str) -> tuple[str, dict[str, Any]]:
    """(zoo name, spec replacements) of a zoo name or timm alias, pretrained tag stripped."""
    base = name.split(".", 1)[0]
    if base in ALIASES:
        return ALIASES[base]
    return base, {}


def preprocessing(name: str) -> dict[str, Any]:
    """timm's ``pretrained_cfg`` entries (mean, std, crop_pct, interpolation) of an alias; empty
    for other names (the model's own, torchvision's). A tagged name reports its architecture's
    default tag."""
    base = name.split(".", 1)[0]
    if base not in PREPROCESS:
        return {}
    _, crop, interpolation, (mean, std) = PREPROCESS[base]
    return {"mean": mean, "std": std, "crop_pct": crop, "interpolation": interpolation}
