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


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, betas=(0.9, 0.999), eps: float = 1e-8,
                    layer_decay: float = 1.0, name: str = "adamw", momentum: float = 0.9) -> torch.optim.Optimizer:
    """AdamW (or SGD with momentum) over :func:`param_groups`; each group's lr is ``lr * lr_scale``."""
    groups = param_groups(model, weight_decay, layer_decay)
    for g in groups:
        g["lr"] = lr * g["lr_scale"]
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {name!r}")
