"""Block-string codec: strict decoding, canonical encoding, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaling.cost import complexity
from scaling.ir import SESpec, StageSpec
from scaling.ir.codec import decode_stage, decode_stages, encode_stage, encode_stages
from scaling.ir.codec_timm import decode_timm, decode_timm_stage, encode_timm
from scaling.zoo.models import get_spec


def test_timm_style_string():
    s = decode_stage("ir_r2_k3_s2_e6_c24_se0.25")
    assert s == StageSpec(block="mbconv", repeats=2, out_channels=24, kernel=3, stride=2,
                          expansion=6.0, se=SESpec(ratio=0.25))
    assert encode_stage(s) == "ir_r2_k3_s2_e6_c24_se0.25"


def test_all_fields_and_flags():
    text = "bt_r3_k3_s2_e0.5_c256_g32_d2_arelu6_avgd_caffe"
    s = decode_stage(text)
    assert (s.block, s.groups, s.dilation, s.activation) == ("bottleneck", 32, 2, "relu6")
    assert (s.shortcut, s.style, s.skip) == ("avgpool_conv", "caffe", True)
    assert encode_stage(s) == text
    s = decode_stage("ir_r1_k5_s1_e1_m120_md8_c40_se0.25_sebmid_sed8_serround_searelu_seghsigmoid"
                     "_noskip")
    assert s.mid_channels == 120 and s.mid_divisor == 8 and not s.skip
    assert s.se == SESpec(0.25, "mid", 8, "round", "relu", "hsigmoid")
    assert decode_stage(encode_stage(s)) == s


def test_key_order_is_free_but_encoding_canonical():
    s = decode_stage("ir_c24_e6_s2_k3_r2")
    assert encode_stage(s) == "ir_r2_k3_s2_e6_c24"


@pytest.mark.parametrize("text, match", [
    ("xx_r1_c8", "block code 'xx'"),
    ("ir_r1_c8_q3", "token 'q3'"),
    ("ir_r1_c8_r2", "key 'r' is given twice"),
    ("ir_k3_c8", r"missing required key\(s\) \['r'\]"),
    ("ir_r1_c8_sebmid", "need an 'se<ratio>' token"),
    ("ir_r1_c8_k4", "stage.kernel=4"),
    ("ir_r1_c8_arelu7", "stage.activation='relu7'"),
    ("ir_r01_c8", "token 'r01'"),
    ("ir_r1_c8_e-1", "token 'e-1'"),
])
def test_strict_errors(text, match):
    with pytest.raises(ValueError, match=match):
        decode_stage(text)


def test_types():
    with pytest.raises(TypeError):
        decode_stage(3)
    with pytest.raises(TypeError):
        encode_stage("ir_r1_c8")
    with pytest.raises(TypeError):
        decode_stages("ir_r1_c8")


_ACTS = st.sampled_from(["relu", "relu6", "hswish", "silu", "gelu"])
_SE = st.one_of(st.none(), st.builds(
    SESpec, ratio=st.sampled_from([0.25, 0.125, 1 / 24, 0.5]), base=st.sampled_from(["in", "mid"]),
    divisor=st.sampled_from([1, 8]), rounding=st.sampled_from(["floor", "round"]),
    activation=_ACTS, gate=st.sampled_from(["sigmoid", "hsigmoid"])))


@st.composite
def stages(draw):
    block = draw(st.sampled_from(["basic", "bottleneck", "ds", "mbconv", "fused_mbconv",
                                  "shuffle_v1", "shuffle_v2"]))
    kwargs = dict(
        block=block, repeats=draw(st.integers(1, 30)), out_channels=draw(st.integers(1, 64)) * 8,
        kernel=draw(st.sampled_from([1, 3, 5, 7])), stride=draw(st.sampled_from([1, 2])),
        expansion=draw(st.sampled_from([1.0, 0.25, 3.67, 4.5, 6.0, 1 / 3])),
        mid_channels=draw(st.one_of(st.none(), st.integers(1, 512))),
        mid_divisor=draw(st.sampled_from([1, 8])), activation=draw(_ACTS),
        dilation=draw(st.integers(1, 3)), skip=draw(st.booleans()))
    if block in ("mbconv", "fused_mbconv", "bottleneck"):
        kwargs["se"] = draw(_SE)
    if block == "bottleneck":
        kwargs.update(groups=draw(st.sampled_from([1, 2, 32])),
                      group_width=draw(st.one_of(st.none(), st.sampled_from([8, 16]))),
                      shortcut=draw(st.sampled_from(["conv", "avgpool_conv"])),
                      style=draw(st.sampled_from(["pytorch", "caffe"])))
    if block == "shuffle_v1":
        kwargs.update(groups=draw(st.sampled_from([1, 3, 8])),
                      first_groups=draw(st.one_of(st.none(), st.just(1))))
    return StageSpec(**kwargs)


@settings(max_examples=200, deadline=None)
@given(stages())
def test_round_trip(stage):
    text = encode_stage(stage)
    assert decode_stage(text) == stage
    assert encode_stage(decode_stage(text)) == text
    assert decode_stages(encode_stages([stage])) == (stage,)


def test_names_with_underscores_and_finite_numbers():
    s = decode_stage("ir_r1_c8_aleaky-relu_se0.25_sealeaky-relu")
    assert s.activation == s.se.activation == "leaky_relu"
    assert decode_stage(encode_stage(s)) == s and "aleaky-relu" in encode_stage(s)
    for text in ("ir_r1_c8_e1e400", "ir_r1_c8_se1e-400x", "ir_r1_c8_einf", "ir_r1_c8_enan"):
        with pytest.raises(ValueError, match="token"):
            decode_stage(text)


# -- timm's dialect: the architecture strings of timm's _gen_* functions -------------------------
# (timm/models/efficientnet.py and mobilenetv3.py; parameter counts are timm's model-card figures,
# equal to the torchvision-exact zoo models' counts, which the tests compare exactly)
B0 = [["ds_r1_k3_s1_e1_c16_se0.25"], ["ir_r2_k3_s2_e6_c24_se0.25"], ["ir_r2_k5_s2_e6_c40_se0.25"],
      ["ir_r3_k3_s2_e6_c80_se0.25"], ["ir_r3_k5_s1_e6_c112_se0.25"],
      ["ir_r4_k5_s2_e6_c192_se0.25"], ["ir_r1_k3_s1_e6_c320_se0.25"]]
V3_LARGE = [["ds_r1_k3_s1_e1_c16_nre"], ["ir_r1_k3_s2_e4_c24_nre", "ir_r1_k3_s1_e3_c24_nre"],
            ["ir_r3_k5_s2_e3_c40_se0.25_nre"],
            ["ir_r1_k3_s2_e6_c80", "ir_r1_k3_s1_e2.5_c80", "ir_r2_k3_s1_e2.3_c80"],
            ["ir_r2_k3_s1_e6_c112_se0.25"], ["ir_r3_k5_s2_e6_c160_se0.25"], ["cn_r1_k1_s1_c960"]]
V3_SMALL = [["ds_r1_k3_s2_e1_c16_se0.25_nre"],
            ["ir_r1_k3_s2_e4.5_c24_nre", "ir_r1_k3_s1_e3.67_c24_nre"],
            ["ir_r1_k5_s2_e4_c40_se0.25", "ir_r2_k5_s1_e6_c40_se0.25"],
            ["ir_r2_k5_s1_e3_c48_se0.25"], ["ir_r3_k5_s2_e6_c96_se0.25"], ["cn_r1_k1_s1_c576"]]
MNASNET = [["ds_r1_k3_s1_c16_noskip"], ["ir_r3_k3_s2_e3_c24"], ["ir_r3_k5_s2_e3_c40"],
           ["ir_r3_k5_s2_e6_c80"], ["ir_r2_k3_s1_e6_c96"], ["ir_r4_k5_s2_e6_c192"],
           ["ir_r1_k3_s1_e6_c320_noskip"]]
V2_S = [["cn_r2_k3_s1_e1_c24_skip"], ["er_r4_k3_s2_e4_c48"], ["er_r4_k3_s2_e4_c64"],
        ["ir_r6_k3_s2_e4_c128_se0.25"], ["ir_r9_k3_s1_e6_c160_se0.25"],
        ["ir_r15_k3_s2_e6_c256_se0.25"]]
#: timm's MobileNetV3 SE: squeeze from the mid channels, make_divisible 8, ReLU, hard sigmoid
V3_SE = SESpec(base="mid", divisor=8, activation="relu", gate="hsigmoid")
#: timm name, arch_def, zoo model, model activation, SE template, width, depth, timm's params (M)
TIMM_ARCHS = [
    ("efficientnet_b0", B0, "efficientnet_b0", "silu", None, 1.0, 1.0, 5.29),
    ("efficientnet_b1", B0, "efficientnet_b1", "silu", None, 1.0, 1.1, 7.79),
    ("efficientnet_b2", B0, "efficientnet_b2", "silu", None, 1.1, 1.2, 9.11),
    ("efficientnet_b3", B0, "efficientnet_b3", "silu", None, 1.2, 1.4, 12.23),
    ("tf_efficientnet_b0", B0, "tf_efficientnet_b0", "silu", None, 1.0, 1.0, 5.29),
    ("mobilenetv3_large_100", V3_LARGE, "mobilenetv3_large_100", "hswish", V3_SE, 1, 1, 5.48),
    ("mobilenetv3_small_100", V3_SMALL, "mobilenetv3_small_100", "hswish", V3_SE, 1, 1, 2.54),
    ("mnasnet_100", MNASNET, "mnasnet_100", "relu", None, 1.0, 1.0, 4.38),
    ("efficientnetv2_s", V2_S, "efficientnetv2_s", "silu", None, 1.0, 1.0, 21.46),
]


def _blocks(spec):
    return [(g.in_channels, g.mid_channels, g.out_channels, g.squeeze, g.kernel, g.stride,
             g.residual) for g in spec.blocks()]


def _timm_spec(zoo_name, stages):
    """The zoo spec with timm's stages; MobileNetV3's final 1x1 ``cn`` is the zoo's head conv."""
    spec = get_spec(zoo_name)
    last = stages[-1]
    if last.block == "fused_mbconv" and last.kernel == 1 and spec.head.hidden is not None:
        assert last.out_channels == spec.head.channels
        stages = stages[:-1]
    return spec.replace(stages=stages)


@pytest.mark.parametrize("row", TIMM_ARCHS, ids=[r[0] for r in TIMM_ARCHS])
def test_timm_arch_strings(row):
    name, arch, zoo_name, act, se, width, depth, millions = row
    spec = _timm_spec(zoo_name, decode_timm(arch, act, se, width, depth))
    zoo = get_spec(zoo_name)
    assert _blocks(spec) == _blocks(zoo)
    assert complexity(spec).params == complexity(zoo).params
    assert round(complexity(spec).params / 1e6, 2) == millions
    # our spec, written in timm's grammar, reads back to the same blocks
    back = decode_timm(encode_timm(zoo), act, se)
    assert _blocks(zoo.replace(stages=back)) == _blocks(zoo)


def test_timm_activation_inherited_and_block_mapping():
    s = decode_timm_stage("ir_r2_k3_s2_e6_c24_se0.25", activation="silu")
    assert s.activation == s.se.activation == "silu" and s.mid_divisor == 8
    assert decode_timm_stage("ir_r1_k3_s1_e6_c24_nre", activation="silu").activation == "relu"
    ds = decode_timm_stage("ds_r1_k3_s1_e1_c16_se0.25")
    assert (ds.block, ds.expansion, ds.skip) == ("mbconv", 1.0, True)
    assert decode_timm_stage("dsa_r1_k3_s1_c64").block == "ds"
    cn = decode_timm_stage("cn_r1_k1_s1_c960")
    assert (cn.block, cn.skip) == ("fused_mbconv", False)
    assert decode_timm_stage("er_r4_k3_s2_e4_c48_noskip").skip is False


@pytest.mark.parametrize("text, match", [
    ("uir_r1_k3_s1_e4_c8", "timm block code 'uir'"),
    ("ir_r1_k3_s1_e4_c8_nmi", "activation token 'nmi'"),
    ("ir_r1_k3.5_s1_e4_c8", "token 'k3.5'"),
    ("ir_r1_k3_s1_e4_c8_a3", "a3"),
    ("ir_r1_k3_s1_c8", r"missing required key\(s\) \['e'\]"),
    ("ir_r1_k3_s1_e1e400_c8", "token 'e1e400'"),
    ("ir_r1_k3_s1_e4_c8_gs8", "token 'gs8'"),
    ("cn_r1_k3_s1_c8_se0.25", "takes no SE"),
    ("dsa_r1_k3_s1_c8_se0.25", "stage.se is not allowed for block 'ds'"),
])
def test_timm_strict_errors(text, match):
    with pytest.raises(ValueError, match=match):
        decode_timm_stage(text)


def test_encode_timm_refuses_what_timm_cannot_say():
    with pytest.raises(ValueError, match="block 'bottleneck' has no timm block string"):
        encode_timm(get_spec("resnet50"))
    assert encode_timm(get_spec("mobilenet_v1"))[0] == "dsa_r1_k3_s1_c64"


@pytest.mark.parametrize("row", TIMM_ARCHS, ids=[r[0] for r in TIMM_ARCHS])
def test_timm_arch_strings_load_timm_weights_with_equal_logits(row):
    """Where timm is installed: the model built from timm's own string loads the state dict of
    timm's model of that name and computes the same logits."""
    timm = pytest.importorskip("timm")
    import torch

    from scaling.nn import build_model
    from scaling.zoo.weights import load_timm

    name, arch, zoo_name, act, se, width, depth, _ = row
    spec = _timm_spec(zoo_name, decode_timm(arch, act, se, width, depth))
    torch.manual_seed(0)
    ref = timm.create_model(name, pretrained=False).eval()
    with torch.no_grad():  # non-trivial BN statistics, so that a wrong eps or order shows
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    eps = next(m.eps for m in ref.modules() if isinstance(m, torch.nn.BatchNorm2d))  # TF: 1e-3
    ours = load_timm(build_model(spec), ref.state_dict(), eps=eps).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = ref(x), ours(x)
    assert (a - b).abs().max().item() <= 1e-5 * max(1.0, a.abs().max().item())


def test_timm_ir_e1_keeps_its_expansion_conv():
    """timm's ir / er build the 1x1 (kxk) expansion conv also at e1 (fbnetc_100 lost 1,536
    params without it); ds does not. The pw conv at in = mid = 16: 16*16 weights + 2*16 BN."""
    ir = decode_timm_stage("ir_r1_k3_s1_e1_c16")
    assert ir.expand and not decode_timm_stage("ir_r1_k3_s1_e6_c16").expand
    assert not decode_timm_stage("ds_r1_k3_s1_e1_c16").expand
    assert decode_timm_stage("er_r1_k3_s1_e1_c16").expand
    base = get_spec("mnasnet1_0")
    spec = base.replace(stages=(ir,))
    plain = base.replace(stages=(ir.replace(expand=False),))
    assert base.stem.channels[-1] == 32 and complexity(spec).params - complexity(plain).params \
        == 32 * 32 + 2 * 32
    assert encode_timm(spec)[0].startswith("ir_r1_k3_s1_e1_c16")
    assert decode_stage(encode_stage(ir)) == ir and "expand" in encode_stage(ir)
    with pytest.raises(ValueError, match="stage.expand=True is not allowed for block 'basic'"):
        StageSpec("basic", 1, 8, expand=True)


TIMM_DEPTH = [["ds_r1_k3_s1_e1_c16"], ["ir_r2_k3_s2_e6_c24"],
              ["ir_r3_k3_s2_e6_c40", "ir_r1_k3_s1_e6_c48"]]


@pytest.mark.parametrize("kwargs, repeats", [
    ({"depth": 1.2}, [2, 3, 4, 1]),  # ceil(1.2)=2, ceil(2.4)=3, ceil(4.8)=5 -> 1 last, 4
    ({"depth": 1.2, "depth_trunc": "round"}, [1, 2, 4, 1]),  # round: 1, 2, 5 -> 4 + 1
    ({"depth": 1.2, "fix_first_last": True}, [1, 3, 3, 1]),  # first and last stay
    ({"depth": (1.0, 2.0, 0.5)}, [1, 4, 1, 1]),  # per stage: ceil(4 * 0.5) = 2 -> 1 + 1
])
def test_timm_depth_options(kwargs, repeats):
    assert [s.repeats for s in decode_timm(TIMM_DEPTH, **kwargs)] == repeats


@pytest.mark.parametrize("kwargs, match", [
    ({"depth_trunc": "floor"}, "depth_trunc='floor' is not allowed"),
    ({"fix_first_last": 1}, "fix_first_last=1 is not allowed"),
    ({"depth": (1.0, 2.0)}, r"depth=\(1.0, 2.0\) is not allowed; .* one per stage \(3\)"),
    ({"depth": -1}, "depth=-1 is not allowed"),
])
def test_timm_depth_options_refused(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        decode_timm(TIMM_DEPTH, **kwargs)


@pytest.mark.parametrize("name", ["fbnetc_100", "tinynet_a", "tf_efficientnetv2_b3",
                                  "efficientnetv2_rw_m", "mixnet_s"])
def test_timm_builder_arch_defs_param_counts(name, monkeypatch):
    """Compare extra: timm's own arch_def and decoder options, read from its builder, give the
    parameter count of timm's blocks, or a one-line refusal (mixnet's mixed kernels)."""
    timm = pytest.importorskip("timm")
    import functools

    import torch
    from timm.models import efficientnet as ef

    from scaling.nn import build_model

    seen = {}
    decode, create = ef.decode_arch_def, ef._create_effnet

    def spy_decode(arch_def, depth_multiplier=1.0, depth_trunc="ceil", *args, **kwargs):
        seen.update(arch=arch_def, depth=depth_multiplier, depth_trunc=depth_trunc,
                    fix_first_last=kwargs.get("fix_first_last", False))
        return decode(arch_def, depth_multiplier, depth_trunc, *args, **kwargs)

    def spy_create(variant, pretrained=False, **kwargs):
        fn = kwargs.get("round_chs_fn")
        keywords = fn.keywords if isinstance(fn, functools.partial) else {}
        seen.update(width=keywords.get("multiplier", 1.0),
                    round_limit=keywords.get("round_limit", 0.9))
        return create(variant, pretrained, **kwargs)

    monkeypatch.setattr(ef, "decode_arch_def", spy_decode)
    monkeypatch.setattr(ef, "_create_effnet", spy_create)
    with torch.device("meta"):
        ref = timm.create_model(name)
    options = {k: seen[k] for k in ("width", "depth", "depth_trunc", "fix_first_last",
                                    "round_limit")}
    if name == "mixnet_s":
        with pytest.raises(ValueError, match="^timm block string .*: token 'a1.1' has no"):
            decode_timm(seen["arch"], **options)
        return
    stages = decode_timm(seen["arch"], **options)
    spec = get_spec("mnasnet1_0").replace(stages=stages)
    spec = spec.replace(stem=spec.stem.replace(channels=(ref.conv_stem.out_channels,)))
    with torch.device("meta"):
        ours = build_model(spec)
    assert sum(p.numel() for p in ours.stages.parameters()) == sum(
        p.numel() for p in ref.blocks.parameters())
