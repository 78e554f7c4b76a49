"""Training checkpoints, written atomically.

A checkpoint is a directory ``checkpoints/step_0000123/`` holding ``model.safetensors`` (weights, loadable by
:func:`vitkit.load_checkpoint`), ``ema.safetensors`` (when EMA is on) and ``state.pt`` (optimiser, grad scaler,
EMA counters, RNG states, step/epoch/sampler position). It is written into a temporary directory, every file
and the directory fsync'ed, then renamed into place; only then is ``checkpoints/latest`` (a one-line pointer)
replaced, again by write-fsync-rename. A writer killed at any moment leaves the previous checkpoint and pointer
intact; leftovers of an interrupted write are ignored and removed by the next save.
"""
from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

LATEST = "latest"
MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
STATE_FILE = "state.pt"


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _weights(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}


def rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached))}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _write_pointer(folder: Path, name: str) -> None:
    tmp = folder / f".{LATEST}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(name + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, folder / LATEST)
    _fsync_path(folder)


def save_checkpoint(folder: str | os.PathLike, step: int, model: nn.Module, state: dict[str, Any],
                    ema: nn.Module | None = None, keep: int = 2) -> Path:
    """Write checkpoint ``step`` under ``folder`` atomically, point ``latest`` at it, keep the newest ``keep``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:07d}"
    final = folder / name
    tmp = folder / f".tmp-{name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    meta = {"format": "pt", "vitkit_model": str(getattr(model, "model_name", type(model).__name__)),
            "step": str(step)}
    files = [tmp / MODEL_FILE, tmp / STATE_FILE]
    save_file(_weights(model), files[0], metadata=meta)
    if ema is not None:
        files.append(tmp / EMA_FILE)
        save_file(_weights(ema), files[-1], metadata={**meta, "ema": "1"})
    torch.save(state, files[1])
    for f in files:
        _fsync_path(f)
    _fsync_path(tmp)
    if final.exists():  # re-saving the same step: move the old one aside first (rename is atomic)
        old = folder / f".old-{name}-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    _fsync_path(folder)
    _write_pointer(folder, name)
    _prune(folder, keep, protect=name)
    return final


def _prune(folder: Path, keep: int, protect: str) -> None:
    steps = sorted(p for p in folder.glob("step_*") if p.is_dir())
    for p in steps[:-keep] if keep > 0 else []:
        if p.name != protect:
            shutil.rmtree(p, ignore_errors=True)
    for p in folder.glob(".tmp-*"):  # leftovers of interrupted writers (not ours: ours was renamed)
        shutil.rmtree(p, ignore_errors=True)
    for p in folder.glob(f".{LATEST}.tmp-*"):
        p.unlink(missing_ok=True)


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint directory from a run dir, a ``checkpoints`` dir (via ``latest``) or a step dir."""
    p = Path(path)
    if (p / "checkpoints").is_dir():
        p = p / "checkpoints"
    if (p / LATEST).is_file():
        name = (p / LATEST).read_text().strip()
        p = p / name
    if not (p / MODEL_FILE).is_file() or not (p / STATE_FILE).is_file():
        raise FileNotFoundError(
            f"no checkpoint at {path}: expected a run directory, its checkpoints/ directory, or a step_* "
            f"directory holding {MODEL_FILE} and {STATE_FILE}"
        )
    return p


def load_checkpoint_dir(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint: {"dir", "model" (state dict), "ema" (state dict or None), "state"}."""
    from safetensors.torch import load_file

    p = resolve_checkpoint(path)
    ema = load_file(p / EMA_FILE) if (p / EMA_FILE).is_file() else None
    state = torch.load(p / STATE_FILE, map_location="cpu", weights_only=True)
    return {"dir": p, "model": load_file(p / MODEL_FILE), "ema": ema, "state": state}
