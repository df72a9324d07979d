"""Fixtures shared by the ebm3d tests."""
import pytest
import torch


@pytest.fixture()
def one_thread():
    """One torch thread: on a shared 2-core machine a second intra-op thread only adds
    synchronisation to these small tensors."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
