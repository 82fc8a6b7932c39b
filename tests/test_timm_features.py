"""timm's feature levels on every name both libraries have (issue 32, the ``compare`` extra):
``features_only`` with timm's default and explicit ``out_indices`` gives timm's number of
levels, channels and reductions, and ``feature_info`` answers timm's ``FeatureInfo`` accessors
as timm's does. Built on the meta device: only ``feature_info`` is compared (the forward is
compared on a few models in tests/test_timm_methods.py)."""

from __future__ import annotations

import pytest
import torch
from timm_reference import shared_names

from scaling.zoo import create_model

INDICES = (None, (1, 2, 3, 4), (0, -1))


def _answers(info, n: int) -> tuple:
    """What a timm user reads from a FeatureInfo (module names differ by layout: their count;
    ``len()`` and iteration are ours, the selected levels, where timm's count all levels; ours
    keeps ``out_indices`` counted from the start, timm's as given)."""
    return ([i % n for i in info.out_indices], info.channels(), info.reduction(),
            info.channels(0), info.reduction(n - 1), info.channels([0, n - 1]),
            len(info.module_name()), info.get_dicts(keys=["num_chs", "reduction"]),
            [d["num_chs"] for d in info.get_dicts()])


@pytest.mark.parametrize("name", shared_names())
def test_feature_levels_are_timms(name):
    timm = pytest.importorskip("timm")
    for idx in INDICES:
        kw = {} if idx is None else {"out_indices": idx}
        with torch.device("meta"):
            ours = create_model(name, features_only=True, **kw).feature_info
            theirs = timm.create_model(name, features_only=True, **kw).feature_info
        n = len(theirs.info)
        assert len(ours.info) == n, (name, idx)
        assert _answers(ours, n) == _answers(theirs, n), (name, idx)
