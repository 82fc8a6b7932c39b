"""Suite-wide settings."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Run the suite on one torch thread: the tests use tiny nets, where extra threads only add
    overhead, and on a shared 2-core machine two threads ran a small net up to 100x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def pytest_collection_modifyitems(items):
    """Tests marked ``slow`` first (a stable sort): with two test processes (pytest-xdist) the
    long ones then run beside the many short ones instead of after them, so the suite's wall
    time is near half its CPU time rather than its tail."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
