"""Fixtures shared by the vidcap tests."""
import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: with several threads on a busy machine, synchronisation costs 100× the work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
