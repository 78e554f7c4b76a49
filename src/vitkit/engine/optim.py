"""AdamW parameter groups: weight decay only on weight matrices, layer-wise learning-rate decay by depth.

No weight decay on 1-D parameters (norm weights, biases, layer scales), on anything named ``*.bias`` and on the
model's ``no_weight_decay()`` names (position embeddings, class tokens, relative-position tables ...).
With ``layer_decay`` < 1 a parameter at depth ``model.layer_id(name)`` (0 = stem, 1..N blocks, N+1 head) gets
the lr scale ``layer_decay ** (num_layer_ids - 1 - layer_id)``: the head trains at the full rate.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


def takes_weight_decay(name: str, param: torch.Tensor, skip: set[str]) -> bool:
    return not (param.ndim <= 1 or name.endswith(".bias") or name in skip)


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float = 1.0) -> list[dict]:
    """Trainable parameters split into groups with keys params, names, weight_decay, lr_scale, layer_id."""
    model = _unwrap(model)
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    use_layers = layer_decay < 1.0
    if use_layers and not hasattr(model, "layer_id"):
        raise TypeError(f"layer-wise lr decay needs model.layer_id(name); {type(model).__name__} has none")
    n_layers = model.num_layer_ids() if use_layers else 1
    groups: dict[tuple[bool, int], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = takes_weight_decay(name, p, skip)
        layer = model.layer_id(name) if use_layers else 0
        if not 0 <= layer < n_layers:
            raise ValueError(f"layer_id({name!r}) = {layer} outside 0..{n_layers - 1}")
        key = (decay, layer)
        if key not in groups:
            scale = layer_decay ** (n_layers - 1 - layer) if use_layers else 1.0
            groups[key] = {"params": [], "names": [], "weight_decay": weight_decay if decay else 0.0,
                           "lr_scale": scale, "layer_id": layer}
        groups[key]["params"].append(p)
        groups[key]["names"].append(name)
    return [groups[k] for k in sorted(groups)]


def fused_available(params) -> bool:
    """Whether torch's fused AdamW kernel takes every parameter (floating point, all on the CPU or all on CUDA)."""
    params = list(params)
    devices = {p.device.type for p in params}
    return bool(params) and len(devices) == 1 and devices <= {"cpu", "cuda"} and all(
        p.dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64) for p in params)


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, betas=(0.9, 0.999), eps: float = 1e-8,
                    layer_decay: float = 1.0, name: str = "adamw", momentum: float = 0.9,
                    fused: bool | None = None) -> torch.optim.Optimizer:
    """AdamW (or SGD with momentum) over :func:`param_groups`; each group's lr is ``lr * lr_scale``.

    AdamW runs torch's fused kernel where it can (``fused=None``): one pass over each parameter instead of a
    dozen element-wise ops, 4.5x faster on the CPU for ViT-B's 86 M parameters (157 vs 709 ms, one thread)
    and the same update to float rounding. ``fused=False`` forces the for-each / per-tensor path.
    """
    groups = param_groups(model, weight_decay, layer_decay)
    for g in groups:
        g["lr"] = lr * g["lr_scale"]
    if name == "adamw":
        params = [p for g in groups for p in g["params"]]
        use = fused_available(params) if fused is None else fused
        if use and not fused_available(params):
            raise ValueError("optim.fused=true needs every parameter as floating point on one CPU or CUDA device")
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                 **({"fused": True} if use else {}))
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {name!r}")
