"""The 2-process evaluation tests' shared routine: evaluate models under a gloo process group, then (rank 0) the
same models in one process, so a test compares metrics and records of both (detection, pose)."""
from __future__ import annotations

from typing import Any


def evaluate_two_then_one(task: Any, models: dict, ds: Any, batch_size: int, rank: int, world: int,
                          init: str) -> tuple[dict, dict | None]:
    """``({name: (metrics, records)} under ``world`` processes, the same in one process on rank 0 else None)``."""
    import torch.distributed as dist

    from vitkit.engine.distributed import DistInfo

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    two = {}
    for name, m in models.items():
        recs: list = []
        two[name] = (task.evaluate(m, ds, batch_size=batch_size, dist=DistInfo(rank, world), records=recs), recs)
    dist.destroy_process_group()
    if rank != 0:
        return two, None
    one = {}
    for name, m in models.items():  # the same models in one process, same threads
        recs = []
        one[name] = (task.evaluate(m, ds, batch_size=batch_size, records=recs), recs)
    return two, one
