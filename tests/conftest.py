"""Shared test settings: deterministic, two threads at most (CI has 2 cores)."""
import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def one_thread():
    """One intra-op thread for the test, restored after it: small models run many times faster than with two
    threads spinning against each other on a busy 2-core machine (measured 0.2 s vs 4.7 s a training step)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(params=[1, 2], ids=["1 thread", "2 threads"])
def threads(request):
    """Run the test with one and with two intra-op threads (attention's masked softmax flushes subnormals with
    one thread and floors float32 scores with more)."""
    n = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(n)
