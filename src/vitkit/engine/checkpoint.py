"""Training state (what ``--resume`` needs), written atomically into a run's ``checkpoints/`` folder.

"Checkpoint" here means the training state of a run. Model *weights* in any layout are read and loaded by
:mod:`vitkit.checkpoints` (:func:`vitkit.load_weights`); *activation* checkpointing (recomputing activations in
backward) is ``model.set_grad_checkpointing()``. See ARCHITECTURE.md.

A checkpoint is a directory ``checkpoints/step_0000123/`` holding ``model.safetensors`` (weights, loadable by
:func:`vitkit.load_checkpoint`), ``ema.safetensors`` (when EMA is on) and ``state.pt`` (optimiser, grad scaler,
EMA counters, RNG states, step/epoch/sampler position). It is written into a temporary directory, every file
and the directory fsync'ed, then renamed into place; only then is ``checkpoints/latest`` (a one-line pointer)
replaced, again by write-fsync-rename. A writer killed at any moment leaves the previous checkpoint and pointer
intact; leftovers of an interrupted write are ignored and removed by the next save (and a failed write removes
its own). Weights holding NaN or inf are never written (:class:`NonFiniteWeightsError` names the step and the last
good checkpoint), and :func:`load_checkpoint_dir` falls back to the newest readable checkpoint when the latest
one is damaged, saying which it skipped and why.
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

from vitkit.checkpoints.base import CheckpointError
from vitkit.checkpoints.validate import check_finite, first_nonfinite, read_safetensors
from vitkit.fileio import atomic_write_text, fsync_path

LATEST = "latest"
MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
STATE_FILE = "state.pt"


class NonFiniteWeightsError(FloatingPointError):
    """Training produced NaN/inf weights; nothing was saved over the last good checkpoint."""


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
    atomic_write_text(folder / LATEST, name + "\n")


def check_weights_finite(folder: str | os.PathLike, step: int, model: nn.Module, ema: nn.Module | None = None) -> None:
    """Raise :class:`NonFiniteWeightsError` naming the step and the last good checkpoint in ``folder``."""
    for what, m in (("weights", model), ("EMA weights", ema)):
        bad = first_nonfinite(m.state_dict()) if m is not None else None
        if bad is not None:
            raise NonFiniteWeightsError(
                f"the {what} became non-finite at step {step} ({bad[0]!r} holds {bad[1]} NaN/inf values); "
                f"checkpoint not written. Last good checkpoint: {last_good(folder)} - resume from it with a lower "
                "optim.lr or train.clip_grad set")


def save_checkpoint(folder: str | os.PathLike, step: int, model: nn.Module, state: dict[str, Any],
                    ema: nn.Module | None = None, keep: int = 2) -> Path:
    """Write checkpoint ``step`` under ``folder`` atomically, point ``latest`` at it, keep the newest ``keep``."""
    from safetensors.torch import save_file

    from .rundir import write_guard

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:07d}"
    final = folder / name
    check_weights_finite(folder, step, model, ema)
    weights = _weights(model)
    ema_weights = _weights(ema) if ema is not None else None
    tmp = folder / f".tmp-{name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    meta = {"format": "pt", "vitkit_model": str(getattr(model, "model_name", type(model).__name__)),
            "step": str(step)}
    files = [tmp / MODEL_FILE, tmp / STATE_FILE]
    needed = sum(t.numel() * t.element_size() for t in weights.values()) * (3 + (ema is not None))
    try:  # disk full, read-only, permission: our half-written folder is removed, the error says what is needed
        with write_guard(tmp, needed):
            tmp.mkdir()
            save_file(weights, files[0], metadata=meta)
            if ema_weights is not None:
                files.append(tmp / EMA_FILE)
                save_file(ema_weights, files[-1], metadata={**meta, "ema": "1"})
            torch.save(state, files[1])
            for f in files:
                fsync_path(f)
            fsync_path(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():  # re-saving the same step: move the old one aside first (rename is atomic)
        old = folder / f".old-{name}-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    fsync_path(folder)
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


def last_good(folder: str | os.PathLike) -> str:
    """The checkpoint ``latest`` points at in ``folder`` (a path), or a phrase saying there is none."""
    p = Path(folder) / LATEST
    if p.is_file():
        return str(Path(folder) / p.read_text().strip())
    return "none (no checkpoint was written before)"


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


def _read_dir(p: Path) -> dict[str, Any]:
    ema = read_safetensors(p / EMA_FILE) if (p / EMA_FILE).is_file() else None
    model = read_safetensors(p / MODEL_FILE)
    check_finite(model, str(p / MODEL_FILE))
    if ema is not None:
        check_finite(ema, str(p / EMA_FILE))
    try:
        state = torch.load(p / STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure makes this checkpoint unreadable
        raise CheckpointError(f"{p / STATE_FILE}: unreadable ({type(e).__name__}: {e})") from None
    return {"dir": p, "model": model, "ema": ema, "state": state, "skipped": []}


def _candidates(path: Path) -> list[Path]:
    """Checkpoints to try for a run or checkpoints directory: ``latest`` first, then the others newest first."""
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    steps = sorted((p for p in folder.glob("step_*") if p.is_dir()), reverse=True)
    first = []
    if (folder / LATEST).is_file():
        first = [folder / (folder / LATEST).read_text().strip()]
    return first + [p for p in steps if p not in first]


def load_checkpoint_dir(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint: {"dir", "model" (state dict), "ema" (state dict or None), "state", "skipped"}.

    Given a step directory, that checkpoint or an error. Given a run or ``checkpoints`` directory, the one
    ``latest`` names, or - when it is missing, unreadable or holds non-finite weights - the newest readable
    one; ``skipped`` lists ``(directory, reason)`` for each damaged checkpoint passed over.
    """
    p = Path(path)
    if (p / MODEL_FILE).is_file() or p.name.startswith("step_"):
        return _read_dir(resolve_checkpoint(p))
    skipped: list[tuple[Path, str]] = []
    for cand in _candidates(p):
        if not (cand / MODEL_FILE).is_file() or not (cand / STATE_FILE).is_file():
            skipped.append((cand, f"incomplete (no {MODEL_FILE} or {STATE_FILE})"))
            continue
        try:
            ck = _read_dir(cand)
        except CheckpointError as e:
            skipped.append((cand, str(e)))
            continue
        ck["skipped"] = skipped
        return ck
    if skipped:
        raise CheckpointError(f"no readable checkpoint in {path}: " + "; ".join(f"{d.name}: {r}" for d, r in skipped))
    return _read_dir(resolve_checkpoint(p))  # raises the "no checkpoint" error
