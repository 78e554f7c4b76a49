"""Training and evaluation: recipes, the training loop, optimisation, checkpoints, distribution, evaluation.

    from vitkit.engine import load_recipe, train, evaluate
    result = train(load_recipe("configs/demo/digits.yaml", ["optim.lr=1e-3"]))

Modules: :mod:`.recipe` (YAML schema and overrides), :mod:`.trainer` (the loop), :mod:`.optim` (parameter groups,
layer-wise lr decay), :mod:`.schedule` (warm-up + cosine), :mod:`.ema`, :mod:`.amp`, :mod:`.checkpoint` (atomic,
resumable), :mod:`.distributed` (DDP, multi-node notes), :mod:`.data` (seeded sampling), :mod:`.evaluate`
(multi-view metrics, confusion matrix), :mod:`.metrics` (JSON lines, plots), :mod:`.inference` (trained models
back from disk).
"""
from __future__ import annotations

from .evaluate import EvalResult, evaluate
from .recipe import Recipe, RecipeError, load_recipe
from .trainer import Trainer, TrainResult, train

__all__ = ["EvalResult", "Recipe", "RecipeError", "TrainResult", "Trainer", "evaluate", "load_recipe", "train"]
