"""Zero-cost proxies on tiny nets: determinism, a known ordering, the analytic params proxy."""

import copy
import math

import pytest
import torch

from scaling.cost import complexity
from scaling.ir import NetworkSpec, SESpec, StageSpec, StemSpec
from scaling.nn.build import build_model
from scaling.search.proxies import PROXIES, compute_proxies, param_count, synflow


def _tiny(width: int = 8, se: bool = True, act: str = "relu") -> NetworkSpec:
    return NetworkSpec(
        stages=(StageSpec("ds", 1, width, activation=act),
                StageSpec("mbconv", 2, 2 * width, stride=2, expansion=3.0, activation=act,
                          se=SESpec(0.25) if se else None),
                StageSpec("fused_mbconv", 1, 2 * width, stride=2, expansion=2.0,
                          activation=act)),
        stem=StemSpec(channels=(width,), strides=(1,), activation=act),
        in_channels=1, resolution=16, num_classes=10)


def _batch(seed: int = 0, n: int = 16):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 16, 16, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_proxies_are_deterministic_for_a_seed():
    spec, batch = _tiny(), _batch()
    a = compute_proxies(spec, batch, seed=3)
    b = compute_proxies(spec, batch, seed=3)
    assert a == b
    assert set(a) == set(PROXIES)
    assert all(v is not None and math.isfinite(v) for v in a.values())
    c = compute_proxies(spec, batch, seed=4)  # another initialisation
    assert c["grad_norm"] != a["grad_norm"] and c["synflow"] != a["synflow"]
    assert c["params"] == a["params"]


@pytest.mark.parametrize("act", ["relu", "hswish", "silu"])
def test_wider_net_scores_higher_on_synflow(act):
    narrow, wide = _tiny(8, act=act), _tiny(16, act=act)
    s_narrow = compute_proxies(narrow, names=("synflow",), seed=0)["synflow"]
    s_wide = compute_proxies(wide, names=("synflow",), seed=0)["synflow"]
    assert s_wide > s_narrow + math.log(2)  # wider nets carry more synaptic flow


def test_synflow_leaves_the_model_untouched():
    torch.manual_seed(0)
    model = build_model(_tiny())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    synflow(model, (1, 16, 16))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_naswot_separates_distinct_inputs():
    """Identical images give identical codes: K becomes singular (no score); distinct ones
    give a finite log-determinant."""
    spec = _tiny(se=False)
    x, y = _batch()
    ok = compute_proxies(spec, (x, y), names=("naswot",))["naswot"]
    assert ok is not None and math.isfinite(ok)
    same = x[:1].expand(16, -1, -1, -1).clone()
    assert compute_proxies(spec, (same, y), names=("naswot",))["naswot"] is None


def test_params_proxy_is_analytic_and_matches_the_model():
    spec = _tiny()
    analytic = compute_proxies(spec, names=("params",))["params"]
    assert analytic == complexity(spec).params == param_count(build_model(spec))


def test_bad_proxy_names_and_missing_batch():
    with pytest.raises(ValueError, match="proxy='zen'"):
        compute_proxies(_tiny(), names=("zen",))
    with pytest.raises(ValueError, match="minibatch"):
        compute_proxies(_tiny(), None, names=("grad_norm",))


def _naswot_reference(model: torch.nn.Module, x: torch.Tensor) -> float:
    """Mellor et al.'s kernel written out: K = C C^T + (1-C)(1-C)^T in float64, per layer."""
    from scaling.search.proxies import _ACTS, _GATES

    model = copy.deepcopy(model).train()
    n = x.shape[0]
    kernel = torch.zeros(n, n, dtype=torch.float64)

    def hook(module, inputs, output):
        c = (output.detach().reshape(n, -1) > 0).double()
        kernel.add_(c @ c.T + (1 - c) @ (1 - c).T)

    for name, m in model.named_modules():
        if (isinstance(m, _ACTS) and not isinstance(m, _GATES)
                and not name.endswith("scale_activation")):
            m.register_forward_hook(hook)
    torch.manual_seed(0)
    with torch.no_grad():
        model(x)
    return float(torch.linalg.slogdet(kernel)[1])


def test_shared_pass_equals_the_written_out_proxies_and_leaves_the_model():
    """naswot and grad_norm from one shared forward equal the textbook computations, and the
    model (weights, BatchNorm statistics, grads, mode) is left exactly as it was."""
    spec = _tiny()
    torch.manual_seed(0)
    model = build_model(spec).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = _batch()
    got = compute_proxies(spec, (x, y), ("naswot", "grad_norm", "synflow"), model=model)
    assert got["naswot"] == pytest.approx(_naswot_reference(model, x), rel=1e-12)
    ref = copy.deepcopy(model).train()
    torch.manual_seed(0)
    torch.nn.functional.cross_entropy(ref(x), y).backward()
    norm = sum(float(m.weight.grad.norm()) for m in ref.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    assert got["grad_norm"] == pytest.approx(norm, rel=1e-6)
    assert not model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_a_given_model_scores_as_the_spec_built_under_the_seed():
    """A trial's proxies on the net it trains (built once) equal those of a fresh build."""
    spec = _tiny()
    batch = _batch()
    torch.manual_seed(0)
    model = build_model(spec)
    assert compute_proxies(spec, batch, model=model) == compute_proxies(spec, batch, seed=0)
    cl = compute_proxies(spec, batch, seed=0, channels_last=True)
    for name, value in compute_proxies(spec, batch, seed=0).items():
        assert cl[name] == pytest.approx(value, rel=1e-3), name
