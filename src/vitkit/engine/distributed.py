"""One process or many: process-group setup and the few collectives the engine needs.

Single machine, N processes (one per GPU, or N CPU processes)::

    torchrun --nproc-per-node N -m vitkit train configs/demo/digits.yaml

Many machines: start the same command on every node, with the node count, this node's rank and a rendezvous
address that all nodes reach (the first node's host name and a free port)::

    # on each of 2 nodes (node 0 is host-a):
    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint host-a:29500 \\
             --rdzv-id myrun -m vitkit train configs/kinetics/mvit_base_16x4.yaml run.dir=/shared/runs/mvit

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; the engine reads them,
joins the group with the ``nccl`` backend on GPUs and ``gloo`` on CPUs, and places each process on
``cuda:LOCAL_RANK``. Notes for multi-node runs:

- ``train.batch_size`` is the GLOBAL batch: it is split over all processes (and accumulation steps), so a recipe
  trains the same model whatever the number of machines; it must be divisible by ``world_size * accum_steps``.
- ``run.dir`` should point at storage that every node sees; only global rank 0 writes checkpoints, metrics and
  plots, and ``--resume`` reads the checkpoint on every rank (so it must be readable on every node).
- Datasets must be readable at the same path on every node. Each rank reads a disjoint shard of every epoch
  (DistributedSampler); evaluation shards the test set without padding and gathers the per-sample scores, so
  accuracy is identical for any number of processes.
- Set ``NCCL_SOCKET_IFNAME`` / ``GLOO_SOCKET_IFNAME`` when nodes have several network interfaces.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str | None = None) -> DistInfo:
    """Join the process group torchrun describes in the environment (no-op for a single process).

    ``device``: "cpu", "cuda" or None (cuda when available).
    """
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but no GPU is available")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if use_cuda else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistInfo(rank, world, local, dev)


def cleanup(synchronize: bool = False) -> None:
    """Leave the process group. With ``synchronize`` (a normal end), first wait until every rank is here: a rank
    that exits while the main rank still writes its reports can abort in gloo's threads ("terminate called
    without an active exception", seen once in the two-process test under load 5-7). After an error it leaves
    at once: a barrier would wait for a rank that may be gone."""
    if dist.is_available() and dist.is_initialized():
        if synchronize and dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


@contextlib.contextmanager
def joined(device: str | None = None) -> Iterator[DistInfo]:
    """:func:`init_distributed` for the block, then :func:`cleanup`: synchronized when the block ends normally (a
    ``return`` inside it included), at once when it raises."""
    info = init_distributed(device)
    try:
        yield info
    except BaseException:
        cleanup()
        raise
    cleanup(synchronize=True)


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if _active():
        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank."""
    if not _active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order."""
    if not _active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if _active():
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t
