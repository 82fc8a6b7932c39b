"""``create_model(name, pretrained=path)`` (issue 28): the file's format read from its keys, timm's
model of a name for a timm file, the first conv adapted to ``in_chans`` as timm adapts it; and,
where timm is installed (the ``compare`` extra), every zoo name that timm also has, loaded from a
file of timm's model by that name, with timm's logits, also at ``in_chans=1``."""

from __future__ import annotations

import pytest
import torch
from timm_reference import shared_names, timm_file

from scaling.zoo import create_model
from scaling.zoo.aliases import SAME_NAME, TIMM_NORM, timm_replacements
from scaling.zoo.pretrained import adapt_input_conv, detect_layout
from scaling.zoo.weights import export_timm, export_torchvision, save_file


def _logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


@pytest.fixture(scope="module")
def b0_files(tmp_path_factory):
    """One efficientnet_b0 saved in its own, torchvision's and timm's layouts."""
    torch.manual_seed(0)
    src = create_model("efficientnet_b0", num_classes=10).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # random norms and classifier, so that a mis-mapped tensor shows
        for m in src.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
        src.head.fc.weight.normal_(0, 1, generator=g)
    folder = tmp_path_factory.mktemp("b0")
    for layout, state in (("own", src.state_dict()), ("tv", export_torchvision(src)),
                          ("timm", export_timm(src))):
        save_file(state, folder / f"{layout}.pth")
    return src, folder


def test_format_is_read_from_the_keys(b0_files):
    """The name efficientnet_b0 is torchvision's B0 and timm's: each file loads by its keys."""
    src, folder = b0_files
    x = torch.randn(2, 3, 32, 32)
    for layout in ("own", "tv", "timm"):
        model = create_model("efficientnet_b0", pretrained=folder / f"{layout}.pth",
                             num_classes=10)
        assert torch.equal(_logits(model, x), _logits(src, x)), layout
    probe = create_model("efficientnet_b0", num_classes=10)
    states = {layout: torch.load(folder / f"{layout}.pth", weights_only=True)
              for layout in ("own", "tv", "timm")}
    assert [detect_layout(probe, states[k]) for k in ("own", "tv", "timm")] == \
        ["own", "efficientnet", "timm_efficientnet"]


def test_a_file_of_no_layout_is_one_line(b0_files, tmp_path):
    _, folder = b0_files
    state = torch.load(folder / "timm.pth", weights_only=True)
    del state["conv_head.weight"]
    state["extra.weight"] = torch.zeros(1)
    save_file(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError) as err:
        create_model("efficientnet_b0", pretrained=tmp_path / "bad.pth")
    msg = str(err.value)
    assert "\n" not in msg and "fits no layout of efficientnet_b0" in msg
    assert "'timm_efficientnet', lacks ['conv_head.weight'] and does not know ['extra.weight']" \
        in msg


def test_in_chans_one_sums_the_rgb_filters(b0_files):
    """A gray image through the adapted model is the RGB model on the image repeated 3 times."""
    src, folder = b0_files
    gray = torch.randn(2, 1, 32, 32)
    model = create_model("efficientnet_b0", pretrained=folder / "timm.pth", in_chans=1,
                         num_classes=10)
    assert model.spec.in_channels == 1
    torch.testing.assert_close(_logits(model, gray), _logits(src, gray.expand(-1, 3, -1, -1)))


@pytest.mark.parametrize("in_chans", [2, 6])
def test_other_in_chans_repeat_and_rescale(b0_files, in_chans):
    src, folder = b0_files
    model = create_model("efficientnet_b0", pretrained=folder / "own.pth", in_chans=in_chans)
    w = src.state_dict()["stem.0.0.weight"]
    channels = [w[:, c % 3] for c in range(in_chans)]
    expected = torch.stack(channels, dim=1) * 3 / in_chans
    torch.testing.assert_close(model.state_dict()["stem.0.0.weight"], expected)
    # a constant image keeps its response: the filters' sum over input channels is unchanged
    if in_chans % 3 == 0:
        torch.testing.assert_close(expected.sum(1), w.sum(1))


def test_adapt_input_conv_refusals():
    w = torch.randn(8, 3, 3, 3)
    assert adapt_input_conv(w, 3) is w
    assert adapt_input_conv(w.half(), 1).dtype == torch.float16
    with pytest.raises(ValueError, match="has 1 input channels; adapting it to in_chans=3 is "
                                         r"defined from 3 \(RGB\) channels only"):
        adapt_input_conv(torch.randn(8, 1, 3, 3), 3)
    with pytest.raises(ValueError, match="in_chans=0 is not allowed"):
        adapt_input_conv(w, 0)


def test_timm_file_builds_timms_model_of_the_name(tmp_path):
    """efficientnet_b5 is torchvision's (BN eps 1e-3) by name, timm's (eps 1e-5) for a timm file;
    a zoo name timm lacks (mobilenet_v3_large) is refused with a pointer to timm's name."""
    assert timm_replacements("efficientnet_b5") == {"norm": TIMM_NORM}
    assert timm_replacements("efficientnet_b0.ra_in1k") == {}
    assert timm_replacements("mobilenet_v3_large") is None
    v3 = create_model("mobilenetv3_small_100", num_classes=10)
    save_file(export_timm(v3), tmp_path / "v3.pth")
    with pytest.raises(ValueError, match=r"eps \[0.001\] differs from timm's eps=1e-05"):
        create_model("mobilenet_v3_small", pretrained=tmp_path / "v3.pth")
    small = {"width": 0.25, "depth": 0.25, "num_classes": 10}  # B5's name, a fast net
    b5 = create_model("efficientnet_b5", norm=TIMM_NORM, **small)
    save_file(export_timm(b5), tmp_path / "b5.pth")
    model = create_model("efficientnet_b5", pretrained=tmp_path / "b5.pth", **small)
    assert model.spec.norm == TIMM_NORM and model.spec.name == "efficientnet_b5"
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(_logits(model, x), _logits(b5, x))


# -- against timm (the ``compare`` extra) ---------------------------------------------------------
#: too big to build twice in a test (480M parameters, ~2 GB per copy); same family as b0..b8
TOO_BIG = {"efficientnet_l2", "tf_efficientnet_l2"}


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    # timm's hard_sigmoid is relu6(x + 3) / 6, torch's Hardsigmoid one kernel: last-bit noise
    return (a - b).abs().max().item() <= 1e-5 * max(1.0, a.abs().max().item())


@pytest.mark.parametrize("name", shared_names())
def test_timm_checkpoint_by_name(name, tmp_path):
    """timm's model -> file -> ours by the same name: timm's logits; at ``in_chans=1``, those of
    timm's own loading of the file at ``in_chans=1`` (a random deep net's logits reach 1e7, so
    this compares with timm's arithmetic, not with the RGB model on a repeated gray image)."""
    timm = pytest.importorskip("timm")
    if name in TOO_BIG:
        pytest.skip(f"{name}: too big to build twice in a test (480M parameters)")
    ref = timm_file(timm, name, tmp_path / "timm.pth")
    x = torch.randn(2, 3, 64, 64)
    assert _close(_logits(ref, x), _logits(create_model(name, pretrained=tmp_path / "timm.pth"),
                                           x))
    del ref
    ref = timm.create_model(name, pretrained=True, in_chans=1,
                            pretrained_cfg_overlay={"file": str(tmp_path / "timm.pth")})
    ours = create_model(name, pretrained=tmp_path / "timm.pth", in_chans=1)
    assert _close(_logits(ref, x[:, :1]), _logits(ours, x[:, :1]))


@pytest.mark.parametrize("name", ["resnet50d", "mobilenetv3_small_100", "efficientnet_b0"])
@pytest.mark.parametrize("in_chans", [2, 5])
def test_in_chans_as_timm_loads_it(name, in_chans, tmp_path):
    """timm's own loader adapting the same file to ``in_chans``: equal logits."""
    timm = pytest.importorskip("timm")
    timm_file(timm, name, tmp_path / "timm.pth")
    ref = timm.create_model(name, pretrained=True, in_chans=in_chans,
                            pretrained_cfg_overlay={"file": str(tmp_path / "timm.pth")})
    ours = create_model(name, pretrained=tmp_path / "timm.pth", in_chans=in_chans)
    x = torch.randn(2, in_chans, 64, 64)
    assert _close(_logits(ref, x), _logits(ours, x))


def test_same_name_table_is_timms():
    """Every zoo name that timm also has is an alias or in SAME_NAME (which timm_replacements
    reads), and every SAME_NAME entry is a timm model."""
    timm = pytest.importorskip("timm")
    assert [n for n in shared_names() if timm_replacements(n) is None] == []
    assert set(SAME_NAME) <= set(timm.list_models())
