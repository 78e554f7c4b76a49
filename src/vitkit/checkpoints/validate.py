"""Checks on weight files and the tensors in them, each failure a one-line :class:`CheckpointError`.

- :func:`read_safetensors`: a truncated file, or one that is not safetensors at all, names the file and what
  its header says instead of a Rust ``SafetensorError`` traceback.
- :func:`check_dtypes`: integer or boolean tensors where the model holds floating-point ones (``load_state_dict``
  would cast them silently: a bool ``True`` becomes a weight of 1.0).
- :func:`check_finite`: NaN or infinite values, naming the tensor and how many.

The loading policy (:func:`vitkit.checkpoints.load_checkpoint`) and the training checkpoints
(:mod:`vitkit.engine.checkpoint`) both call these; they are kept apart from the policy so it can change freely.
"""
from __future__ import annotations

import os
from typing import Mapping

import torch

from .base import CheckpointError

__all__ = ["read_safetensors", "check_dtypes", "check_finite", "first_nonfinite"]


def read_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """``safetensors.torch.load_file`` with a clear error for truncated or foreign files."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = os.fspath(path)
    try:
        return load_file(path)
    except (SafetensorError, ValueError, RuntimeError) as e:
        size = os.path.getsize(path) if os.path.exists(path) else 0
        raise CheckpointError(f"{path}: not a readable safetensors file ({_first_line(e)}; {size} bytes) - "
                              "truncated by an interrupted copy or download, or another format") from None


def _first_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return msg[0] if msg else type(e).__name__


def first_nonfinite(sd: Mapping[str, torch.Tensor]) -> tuple[str, int] | None:
    """The first floating tensor holding NaN/inf and how many such values it holds, or None."""
    for k, v in sd.items():
        if isinstance(v, torch.Tensor) and v.is_floating_point() and v.numel():
            ok = torch.isfinite(v)
            if not bool(ok.all()):
                return k, int((~ok).sum())
    return None


def check_finite(sd: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise :class:`CheckpointError` naming ``source`` and the first tensor with NaN or infinite values."""
    bad = first_nonfinite(sd)
    if bad is not None:
        k, n = bad
        numel = sd[k].numel()
        raise CheckpointError(f"{source}: tensor {k!r} holds {n} non-finite value(s) (NaN or inf) of {numel}; "
                              "the weights are unusable (saved from a diverged run?)")


def check_dtypes(sd: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise when a tensor is integer or boolean where ``reference`` (the model's state) holds floating point."""
    for k, v in sd.items():
        ref = reference.get(k)
        if ref is None or not isinstance(v, torch.Tensor):
            continue
        if ref.is_floating_point() and not (v.is_floating_point() or v.is_complex()):
            raise CheckpointError(f"{source}: tensor {k!r} is {str(v.dtype).replace('torch.', '')} but the model "
                                  f"expects floating point ({str(ref.dtype).replace('torch.', '')}); "
                                  "the file is not weights for this model")
