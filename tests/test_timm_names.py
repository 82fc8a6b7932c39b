"""timm's names for a checkpoint (issue 32): tagged, ``tf_*``, ``*d`` and the aliases added for
timm (``mobilenetv1_100``, ``regnety_004``, ``tf_mobilenetv3_*``, ``tf_efficientnet_b8/l2``),
loaded both ways timm loads a file (``pretrained=True`` with
``pretrained_cfg_overlay=dict(file=...)``, and ``checkpoint_path=``); each alias's
``pretrained_cfg`` reports timm's preprocessing. The comparisons with timm run where the
``compare`` extra is installed."""

from __future__ import annotations

import pytest
import torch
from timm_reference import timm_file

from scaling.zoo import create_model, get_spec
from scaling.zoo.aliases import ALIASES, PREPROCESS, TF_NORM
from scaling.zoo.weights import export_timm, save_file

#: one name of each kind timm accepts for a checkpoint: tagged (routed by the architecture, not
#: the tag), TF ports (BN eps 1e-3, 'same' padding), deep-stem ResNets, plain and new aliases
KINDS = ["resnet50.a1_in1k", "efficientnet_b0.ra_in1k", "tf_efficientnet_b0",
         "tf_mobilenetv3_large_100", "resnet18d", "resnet50d", "mobilenetv1_100",
         "mobilenetv3_large_100", "regnety_004"]
CFG_FIELDS = ("mean", "std", "crop_pct", "interpolation")


def _logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


def _within(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-4) -> bool:
    return (a - b).abs().max().item() <= tol * max(1.0, a.abs().max().item())


def test_alias_reports_timms_preprocessing():
    """The values are the table's (mean/std 0.5 at 300 for tf_efficientnetv2_s, bicubic for
    mobilenetv3_large_100), the spec's resolution is timm's input size; other names keep theirs."""
    with torch.device("meta"):
        v2 = create_model("tf_efficientnetv2_s")
        v3 = create_model("mobilenetv3_large_100.ra_in1k")
        tv = create_model("mobilenet_v3_large")
    assert v2.pretrained_cfg["mean"] == v2.pretrained_cfg["std"] == (0.5, 0.5, 0.5)
    assert v2.pretrained_cfg["input_size"] == (3, 300, 300) and v2.spec.resolution == 300
    assert v3.pretrained_cfg["interpolation"] == "bicubic"
    assert tv.pretrained_cfg["interpolation"] == "bilinear"


def test_new_aliases_are_the_zoo_models_timm_builds():
    v1 = get_spec("mobilenetv1_100")
    assert {s.activation for s in v1.stages} == {"relu6"} and v1.stem.activation == "relu6"
    for name in ("tf_efficientnet_b8", "tf_efficientnet_l2", "tf_mobilenetv3_small_100"):
        spec = get_spec(name)
        assert spec.norm == TF_NORM and spec.padding == "same", name
    assert get_spec("mobilenetv1_100", activation="relu").stem.activation == "relu"
    assert get_spec("regnety_004.pycls_in1k").stages == get_spec("regnet_y_400mf").stages


def test_pretrained_true_reads_the_overlay_file(tmp_path):
    torch.manual_seed(0)
    src = create_model("mobilenetv1_100", num_classes=7, resolution=32)
    save_file(export_timm(src), tmp_path / "v1.pth")
    x = torch.randn(1, 3, 32, 32)
    for model in (create_model("mobilenetv1_100", num_classes=7, pretrained=True,
                               pretrained_cfg_overlay={"file": str(tmp_path / "v1.pth"),
                                                       "crop_pct": 1.0}),
                  create_model("mobilenetv1_100", num_classes=7,
                               checkpoint_path=tmp_path / "v1.pth")):
        assert torch.equal(_logits(model, x), _logits(src, x))
    assert model.pretrained_cfg["mean"] == (0.5, 0.5, 0.5)
    with pytest.raises(ValueError, match="pretrained_cfg_overlay=dict.file=PATH."):
        create_model("mobilenetv1_100", pretrained=True)
    with pytest.raises(TypeError, match="pretrained_cfg_overlay must be a dict, got str"):
        create_model("mobilenetv1_100", pretrained_cfg_overlay="x.pth")


# -- against timm (the ``compare`` extra) ---------------------------------------------------------
@pytest.mark.parametrize("name", KINDS)
def test_timm_file_by_timms_name(name, tmp_path):
    """timm's model -> file -> ours by the same name, both of timm's ways: timm's logits at the
    model's default input size (timm's pretrained_cfg), eval mode."""
    timm = pytest.importorskip("timm")
    path = tmp_path / "timm.pth"
    ref = timm_file(timm, name, path)
    x = torch.randn(1, *ref.pretrained_cfg["input_size"])
    expected = _logits(ref, x)
    del ref
    by_overlay = create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(path)})
    assert _within(expected, _logits(by_overlay, x))
    del by_overlay
    assert _within(expected, _logits(create_model(name, checkpoint_path=path), x))


def test_biggest_tf_names_have_timms_parameters():
    """tf_efficientnet_b8 and _l2 (too big to run here): timm's parameter count, on meta."""
    timm = pytest.importorskip("timm")
    for name in ("tf_efficientnet_b8", "tf_efficientnet_l2"):
        with torch.device("meta"):
            theirs = sum(p.numel() for p in timm.create_model(name).parameters())
            ours = sum(p.numel() for p in create_model(name).parameters())
        assert ours == theirs, name


@pytest.mark.parametrize("name", sorted(ALIASES))
def test_alias_cfg_is_timms(name):
    """Every alias: timm's mean, std, crop_pct, interpolation and input size for that name."""
    timm = pytest.importorskip("timm")
    theirs = timm.models.get_pretrained_cfg(name).to_dict()
    with torch.device("meta"):
        ours = create_model(name).pretrained_cfg
    assert {k: tuple(ours[k]) if k in ("mean", "std") else ours[k] for k in CFG_FIELDS} == \
        {k: tuple(theirs[k]) if k in ("mean", "std") else theirs[k] for k in CFG_FIELDS}
    assert ours["input_size"] == tuple(theirs["input_size"]) and name in PREPROCESS
