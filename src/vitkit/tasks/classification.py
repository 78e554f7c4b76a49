"""Classification, the default task: what the engine did before tasks existed, unchanged.

Data from :func:`vitkit.engine.data.build_split`, the model from :func:`vitkit.engine.trainer.build_model`
(the classifier, ``model.weights`` loaded with the head replaced when the class count differs), cross-entropy
(label smoothing, or soft targets under mixup/cutmix; sigmoid + BCE for multi-hot labels), top-1/top-5 with
multi-view averaging (and mAP for multi-label data).
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from vitkit.data import is_builtin
from vitkit.models.input_spec import InputSpec

from . import register_task
from .base import Task

def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.sum(-target * F.log_softmax(logits, dim=-1), dim=-1).mean()


class Classification(Task):
    name = "classification"
    headline = "top1"
    train_metric = "train_top1"

    def build_datasets(self, recipe: Any, spec: InputSpec) -> tuple[Any, Any]:
        from vitkit.engine.data import build_split

        train_set = build_split(recipe, spec, train=True)
        test_set = build_split(
            recipe, spec, train=False, num_clips=recipe.eval.num_clips, num_crops=recipe.eval.num_crops,
            classes=None if is_builtin(recipe.data.dataset) else list(train_set.classes))
        return train_set, test_set

    def build_model(self, recipe: Any, num_classes: int, log: Callable[[str], None] = print) -> nn.Module:
        from vitkit.engine.trainer import build_model

        return build_model(recipe, num_classes, log=log)

    def mixup(self, recipe: Any, num_classes: int):
        r = recipe.train
        if r.mixup <= 0 and r.cutmix <= 0:
            return None
        from vitkit.data.mixup import MixupCutmix

        return MixupCutmix(num_classes, r.mixup, r.cutmix, r.mixup_switch_prob, r.label_smoothing)

    def loss(self, output: torch.Tensor, target: torch.Tensor, soft_target: torch.Tensor | None = None,
             label_smoothing: float = 0.0) -> torch.Tensor:
        logits = output.float()
        if target.ndim == 2 and soft_target is None:  # multi-hot labels: multi-label data
            from vitkit.engine.multilabel import multilabel_loss

            return multilabel_loss(logits, target)
        if soft_target is not None:
            return soft_cross_entropy(logits, soft_target)
        return F.cross_entropy(logits, target, label_smoothing=label_smoothing)

    def batch_stats(self, output: torch.Tensor, target: torch.Tensor) -> tuple[int, int]:
        from vitkit.engine.multilabel import top1_hits

        return top1_hits(output, target), int(target.shape[0])

    def evaluate(self, model: nn.Module, dataset: Any, **kwargs) -> dict[str, float]:
        from vitkit.engine.evaluate import evaluate

        res = evaluate(model, dataset, **kwargs)
        out = {"top1": res.top1, "top5": res.top5, "loss": res.loss, "num_samples": res.num_samples}
        if not res.has_top5:  # five classes or fewer: top-5 is 100 % and not reported
            del out["top5"]
        if res.mAP is not None:
            out["mAP"] = res.mAP
        return out

    def describe(self, result: dict) -> str:
        top5 = f" top-5 {result['top5']:.2f}%" if "top5" in result else ""
        line = f"top-1 {result['top1']:.2f}%{top5} loss {result['loss']:.4f}"
        return line + (f"; mAP {result['mAP']:.2f}%" if "mAP" in result else "")


register_task(Classification())
