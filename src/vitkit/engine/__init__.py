"""Training and evaluation: recipes, the training loop, optimisation, checkpoints, distribution, evaluation.

    from vitkit.engine import load_recipe, train
    from vitkit.engine.evaluate import evaluate
    result = train(load_recipe("configs/demo/digits.yaml", ["optim.lr=1e-3"]))

Modules: :mod:`.recipe` (YAML schema and overrides), :mod:`.recipe_files` (finding recipes, ``_base_``
inheritance), :mod:`.trainer` (the loop), :mod:`.optim` (parameter groups, layer-wise lr decay), :mod:`.schedule`
(warm-up + cosine), :mod:`.ema`, :mod:`.amp`, :mod:`.checkpoint` (atomic, resumable), :mod:`.distributed` (DDP,
multi-node notes), :mod:`.data` (seeded sampling), :mod:`.evaluate` (multi-view metrics, confusion matrix),
:mod:`.metrics` (JSON lines, plots), :mod:`.inference` (trained models back from disk). The names below are
imported on first use, so reading a recipe does not load torch (``vitkit.engine.evaluate`` is the module; the
function is ``vitkit.engine.evaluate.evaluate``).
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "EvalResult": ".evaluate",
    "Recipe": ".recipe", "RecipeError": ".recipe", "load_recipe": ".recipe",
    "Trainer": ".trainer", "TrainResult": ".trainer", "train": ".trainer",
}
__all__ = ["EvalResult", "Recipe", "RecipeError", "TrainResult", "Trainer", "load_recipe", "train"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'vitkit.engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value
