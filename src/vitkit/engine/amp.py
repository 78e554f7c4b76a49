"""Mixed precision: bf16 autocast (CPU or GPU), fp16 autocast with gradient scaling (GPU only), or none."""
from __future__ import annotations

import contextlib

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_amp(amp: str, device: torch.device) -> None:
    if amp not in ("bf16", "fp16", "none"):
        raise ValueError(f"amp must be bf16, fp16 or none, got {amp!r}")
    if amp == "fp16" and device.type != "cuda":
        raise ValueError("train.amp=fp16 needs a GPU (gradient scaling); use train.amp=bf16 or none on CPU")


def autocast(amp: str, device: torch.device):
    """The autocast context for ``amp`` on ``device`` (a null context for "none")."""
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[amp])


def grad_scaler(amp: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A GradScaler for fp16 on GPU; None otherwise (bf16 has fp32's range and needs no scaling)."""
    if amp == "fp16" and device.type == "cuda":
        return torch.amp.GradScaler("cuda")
    return None
