"""The default space contains its competitors (issue 29): MobileNetV2 and EfficientNet-B0 fitted
by width to the study's base points, as the study fits them, are trial parameters of the space."""

import optuna
import pytest

from scaling.compound.match import fit_width
from scaling.search.members import params_for, same_spec, space_size, spec_from_params
from scaling.search.space import default_space, sample_spec
from scaling.zoo import get_spec

optuna.logging.set_verbosity(optuna.logging.WARNING)
G = {"num_classes": 10, "in_chans": 1, "resolution": 28, "drop_path_rate": 0.0}


def _study_fit(name, target):
    """The study's base point of a width family (scaling/study/plan.py: base_point)."""
    return fit_width(get_spec(name, small_input=True, **G), target, tol=0.05, name="base")


@pytest.mark.parametrize("target", [900_000, 1_070_000])
@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_b0"])
def test_mobilenet_v2_and_b0_by_width_are_members_of_the_default_space(name, target):
    fit = _study_fit(name, target)
    assert fit.divisor < 8  # the case the old space (divisor 8, floor 1.32M) could not express
    params = params_for(fit.spec, default_space(), budget=target)
    rebuilt = spec_from_params(params, default_space(), budget=target)
    assert same_spec(rebuilt, fit.spec)
    assert rebuilt.to_dict() != fit.spec.to_dict()  # only the labels differ: name, family
    assert rebuilt.replace(name="", family="") == fit.spec.replace(name="", family="")


def test_enqueued_params_sample_the_same_spec_in_a_real_study():
    """The path --enqueue takes: study.enqueue_trial(params), then the space samples it."""
    fit = _study_fit("efficientnet_b0", 900_000)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    study.enqueue_trial(params_for(fit.spec, budget=900_000))
    trial = study.ask()
    assert same_spec(sample_spec(trial, None, 28, 1, 10, budget=900_000), fit.spec)
    assert trial.user_attrs["channel_divisor"] == fit.divisor == 2


@pytest.mark.parametrize("spec,match", [
    (get_spec("resnet18", stem_pool=None, **G), "the space cannot express"),
    (get_spec("mobilenet_v3_small", small_input=True, **G), "the space cannot express"),
])
def test_what_the_space_cannot_express_is_named(spec, match):
    with pytest.raises(ValueError, match=match):
        params_for(spec, budget=1e6)


def test_one_activation_per_net():
    spec = _study_fit("efficientnet_b0", 900_000).spec
    stages = (spec.stages[0].replace(activation="relu6"), *spec.stages[1:])
    with pytest.raises(ValueError, match=r"activation \['relu6', 'silu'\]: it takes one per net"):
        params_for(spec.replace(stages=stages), budget=900_000)


def test_a_fitted_space_needs_the_budget():
    with pytest.raises(ValueError, match="budget is required"):
        params_for(_study_fit("mobilenet_v2", 900_000).spec)


def test_the_default_space_size():
    """3 stride patterns x 36 per-net choices (3 activations, 2 SE, 2 mid divisors, 3 heads) x
    per stage (kernels x repeats x base widths x (expansions per MBConv/fused block + 1 for ds))."""
    stages = [2 * 2 * 1 * (1 + 1), 2 * 3 * 1 * 7, 2 * 3 * 2 * 7, 2 * 4 * 2 * 7, 2 * 3 * 2 * 7,
              2 * 4 * 2 * 7, 1 * 2 * 1 * 7]
    expected = 3 * 36
    for n in stages:
        expected *= n
    assert space_size(default_space()) == expected
    narrow = default_space()
    narrow["net"]["se"] = [0.25]
    assert space_size(narrow) == expected / 2
