"""Block-string codec: strict decoding, canonical encoding, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaling.ir import SESpec, StageSpec
from scaling.ir.codec import decode_stage, decode_stages, encode_stage, encode_stages


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
