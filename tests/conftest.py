"""Shared pytest fixtures."""

import l3d  # noqa: F401  (first: it sets the CPU threads' wait policy before torch loads, as every entry point does)
import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a test module: the tiny tensors of most tests run fastest that way
    (thread start-up and OpenMP synchronisation dominate), and a busy machine cannot slow them."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
