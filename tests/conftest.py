"""Shared test settings: deterministic, two threads at most (CI has 2 cores), shared among pytest-xdist workers."""
import contextlib
import os

import pytest
import torch


def _threads_per_process() -> int:
    """Two intra-op threads at most, split among the xdist workers (``-n 2`` on 2 cores: one each), so that
    parallel workers do not spin threads against each other."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(1, min(2, os.cpu_count() or 1) // workers)


torch.set_num_threads(_threads_per_process())


@contextlib.contextmanager
def intra_op_threads(n: int):
    """``n`` intra-op threads inside the block, the previous count restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def one_thread():
    """One intra-op thread for the test, restored after it: small models run many times faster than with two
    threads spinning against each other on a busy 2-core machine (measured 0.2 s vs 4.7 s a training step)."""
    with intra_op_threads(1):
        yield


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(params=[1, 2], ids=["1 thread", "2 threads"])
def threads(request):
    """Run the test with one and with two intra-op threads (attention's masked softmax flushes subnormals with
    one thread and floors float32 scores with more)."""
    with intra_op_threads(request.param) as n:
        yield n
