"""Fine-tuning modes: full, linear probe (only the classifier trains), or the stem and first stages frozen.

``linear_probe_bn`` is the MAE / MoCo v3 linear-probing protocol: the backbone frozen and a BatchNorm without
affine parameters put before the classifier (:class:`ProbeHead`; it normalises the frozen features, and after
training it can be folded into the linear layer, :meth:`ProbeHead.folded`).

Stages follow each family's structure: Swin ``layers.{i}``, UniFormer ``patch_embed{i}``/``blocks{i}``, and for
the plain-depth ViT / MViT every block is its own stage (as timm's ``freeze`` by block and mmcls's
``frozen_stages``). Frozen parameters stop requiring gradients (the optimiser skips them) and frozen normalisation
layers keep their running statistics (BatchNorm / GroupNorm in eval mode, as mmcls ``norm_eval``).
"""
from __future__ import annotations

import re

import torch
import torch.nn as nn

from vitkit.checkpoints.heads import PROBE_NORM_EPS, fold_probe_norm

MODES = ("full", "linear_probe", "linear_probe_bn", "freeze")
_CLASSIFIER = ("head.", "aux_head.", "fc_norm.")


def stage_of(model: nn.Module, name: str) -> int:
    """0 for the stem (patch embedding, tokens, position tables), i >= 1 for the i-th stage, a large number for the
    final norm and the classifier."""
    family = getattr(model, "family", "")
    if family == "swin":
        m = re.match(r"layers\.(\d+)\.", name)
        return int(m.group(1)) + 1 if m else (0 if name.startswith(("patch_embed", "absolute_pos_embed")) else 1 << 20)
    if family == "uniformer":
        m = re.match(r"(?:patch_embed|blocks)(\d)\.", name)
        if m:
            return int(m.group(1)) if name.startswith("blocks") or m.group(1) != "1" else 0
        return 1 << 20
    layer = model.layer_id(name)  # 0 stem, 1..N blocks, N+1 head and final norm
    return layer if layer < model.num_layer_ids() - 1 else 1 << 20


def apply_finetune(model: nn.Module, mode: str = "full", freeze_stages: int = 0) -> list[str]:
    """Freeze parameters for ``mode``; returns the names of the frozen ones.

    ``linear_probe``: everything but the classifier (``head``, and ``fc_norm`` where the model has one);
    ``linear_probe_bn``: the same, with the classifier wrapped in a :class:`ProbeHead`. ``freeze``: the stem and
    the first ``freeze_stages`` stages. ``full``: nothing.
    """
    if mode not in MODES:
        raise ValueError(f"model.finetune must be one of {MODES}, got {mode!r}")
    if freeze_stages < 0 or (freeze_stages and mode != "freeze"):
        raise ValueError(f"model.freeze_stages={freeze_stages} needs model.finetune=freeze and a value >= 0")
    if mode == "linear_probe_bn":
        add_probe_norm(model)
    frozen: list[str] = []
    for name, p in model.named_parameters():
        if mode in ("linear_probe", "linear_probe_bn"):
            freeze = not name.startswith(_CLASSIFIER)
        elif mode == "freeze":
            freeze = stage_of(model, name) <= freeze_stages
        else:
            freeze = False
        if freeze:
            p.requires_grad_(False)
            frozen.append(name)
    if frozen:
        _keep_frozen_norms_in_eval(model, set(frozen))
    return frozen


class ProbeHead(nn.Linear):
    """A linear classifier behind ``BatchNorm1d(affine=False, eps=1e-6)`` (MAE ``main_linprobe.py``): the features
    are normalised by batch statistics while training and by the running ones at test. Its state-dict keys are
    the classifier's own (``head.weight``, ``head.bias``) plus the statistics (``head.norm.running_mean`` ...)."""

    def __init__(self, head: nn.Linear) -> None:
        super().__init__(head.in_features, head.out_features, bias=head.bias is not None,
                         device=head.weight.device, dtype=head.weight.dtype)
        self.load_state_dict(head.state_dict())
        self.norm = nn.BatchNorm1d(head.in_features, affine=False, eps=PROBE_NORM_EPS, device=head.weight.device)

    def forward(self, x):
        return super().forward(self.norm(x))

    def folded(self) -> nn.Linear:
        """The plain ``nn.Linear`` computing what this head computes at test (the norm folded into it; loading a
        probe run's weights into a plain model does the same, :mod:`vitkit.checkpoints.heads`)."""
        out = nn.Linear(self.in_features, self.out_features, device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            w, b = fold_probe_norm(self.weight, self.bias, self.norm.running_mean, self.norm.running_var,
                                   self.norm.eps)
            out.weight.copy_(w)
            out.bias.copy_(b)
        return out


def add_probe_norm(model: nn.Module) -> ProbeHead:
    """Put a :class:`ProbeHead` in place of ``model.head`` (a linear classifier); returns it."""
    head = getattr(model, "head", None)
    if isinstance(head, ProbeHead):
        return head
    if not isinstance(head, nn.Linear):
        raise ValueError(f"model.finetune=linear_probe_bn needs a linear classifier at model.head; "
                         f"{type(model).__name__} has {type(head).__name__}")
    model.head = ProbeHead(head)
    return model.head


def _keep_frozen_norms_in_eval(model: nn.Module, frozen: set[str]) -> None:
    """Frozen BatchNorm layers keep their statistics: their ``train()`` is pinned to eval mode."""
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and f"{name}.weight" in frozen:
            m.train = _eval_only.__get__(m)  # type: ignore[method-assign]
            m.eval()


def _eval_only(self: nn.Module, mode: bool = True) -> nn.Module:
    return nn.Module.train(self, False)


def pretrained_model(recipe, cfg: dict, num_classes: int, log=print) -> nn.Module:
    """The recipe's model from ``model.pretrained`` (a tag of the model, or ``model.tag``), with ``num_classes``
    outputs (the published classifier kept when it has that many classes, else a new zero-initialised one), and
    the fine-tuning mode applied."""
    from vitkit.registry import create_model

    if recipe.model.weights is not None:
        raise ValueError("model.weights and model.pretrained are both set: give one")
    model = create_model(recipe.model.name, pretrained=recipe.model.pretrained, **{**cfg, "num_classes": num_classes})
    report = model.pretrained_report
    log(f"loaded {report.source}" + (" except the classifier" if report.missing else ""))
    return tune(recipe, model, log)


def tune(recipe, model: nn.Module, log=print) -> nn.Module:
    """``model.finetune`` / ``model.freeze_stages`` of the recipe applied to ``model`` (returned)."""
    frozen = apply_finetune(model, recipe.model.finetune, recipe.model.freeze_stages)
    if frozen:
        log(f"fine-tune mode {recipe.model.finetune}: {len(frozen)} parameter tensors frozen")
    return model
