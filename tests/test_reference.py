"""The repository's copy of the reference figures is complete and current."""

import pytest
from tv_reference import REFERENCE, SHARED, reference


def test_reference_lists_the_29_torchvision_models():
    ref = reference()
    assert len(ref) == 29
    assert ref["efficientnet_b2"]["resolution"] == 288
    assert all(r["params"] > 0 and r["macs_224"] > 0 for r in ref.values())


def test_reference_copy_equals_shared():
    if not SHARED.is_file():
        pytest.skip(f"{SHARED} is not beside this checkout")
    assert REFERENCE.read_bytes() == SHARED.read_bytes()
