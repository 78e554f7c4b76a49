"""The task interface the engine trains through (see the package docstring for the contract)."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch
import torch.nn as nn


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """A task without options of its own."""


class Task:
    """Base class: the parts of training, evaluation and prediction that depend on the kind of problem."""

    name: str = ""
    #: True: the model's input is the data's (a data size that disagrees with the model is an error, see
    #: :func:`vitkit.engine.data.resolve_input`); False: ``data.input_size`` is the task's own crop / scale and the
    #: backbone runs at any size (dense tasks)
    input_follows_model: bool = True
    #: True: every training batch has one shape, so cuDNN's per-shape algorithm search (``cudnn.benchmark``) is
    #: paid once; False: shapes vary per batch (detection's multi-scale resizing), where the search would run for
    #: each new shape (as mmdet's and detectron2's defaults, it is then left off; ``train.cudnn_benchmark``)
    fixed_input_shapes: bool = True
    options: type = NoOptions
    headline: str = ""  # main metric key in evaluate()'s dict
    train_metric: str = "train_top1"  # metrics-log key of the running training accuracy

    # -- recipe ----------------------------------------------------------------------------------------------
    def validate(self, recipe: Any) -> None:
        """Cross-section checks for this task (raise ``RecipeError`` naming what is expected)."""

    def bind(self, recipe: Any) -> "Task":
        """The task for one run of ``recipe`` (a task whose loss takes recipe options returns a configured copy)."""
        return self

    def opts(self, recipe: Any) -> Any:
        """The recipe's task options as this task's dataclass (defaults where a key is absent)."""
        return self.options(**recipe.task.options)

    # -- data and model ----------------------------------------------------------------------------------------
    def build_datasets(self, recipe: Any, spec: Any) -> tuple[Any, Any]:
        raise NotImplementedError

    def class_names(self, dataset: Any) -> list[str]:
        names = getattr(dataset, "classes", None)
        n = int(getattr(dataset, "num_classes", 0) or len(names or []))
        return [str(c) for c in names] if names is not None else [str(i) for i in range(n)]

    def build_model(self, recipe: Any, num_classes: int, log: Callable[[str], None] = print) -> nn.Module:
        raise NotImplementedError

    # -- training ----------------------------------------------------------------------------------------------
    def mixup(self, recipe: Any, num_classes: int):
        return None

    def loss(self, output: Any, target: torch.Tensor, soft_target: torch.Tensor | None = None,
             label_smoothing: float = 0.0) -> torch.Tensor:
        raise NotImplementedError

    def batch_stats(self, output: Any, target: torch.Tensor) -> tuple[int, int]:
        raise NotImplementedError

    # -- evaluation / prediction -------------------------------------------------------------------------------
    def evaluate(self, model: nn.Module, dataset: Any, **kwargs) -> dict[str, float]:
        raise NotImplementedError

    def describe(self, result: dict) -> str:
        raise NotImplementedError

    def load_trained(self, source: str, recipe: str | None = None, overrides: list[str] | None = None,
                     ema: bool = False) -> Any:
        """The trained model of a run directory (its recipe, ``model.safetensors`` / ``ema.safetensors``), or of a
        weights file with ``recipe``, built by :meth:`build_model` with the class list stored in the weights'
        metadata (or ``default_num_classes``)."""
        from pathlib import Path

        from vitkit.checkpoints import load_checkpoint
        from vitkit.engine.inference import Trained, _classes_from
        from vitkit.engine.recipe import find_recipe, load_recipe

        src = Path(source)
        if src.is_file() and recipe:  # a weights file and the recipe it was trained with
            weights, run_dir = src, None
        elif src.is_dir():
            weights, run_dir = src / ("ema.safetensors" if ema else "model.safetensors"), src
            if not weights.is_file():
                raise FileNotFoundError(f"{src} holds no {weights.name}: expected a finished run directory")
        else:
            raise FileNotFoundError(f"{source}: a {self.name} run directory is expected (recipe.yaml and "
                                    "model.safetensors), or a weights file with its recipe")
        rec = load_recipe(find_recipe(recipe) if recipe else src / "recipe.yaml", overrides)
        rec.model.weights = None
        classes = _classes_from(weights, run_dir)
        task = self.bind(rec)
        n = len(classes) if classes else task.default_num_classes(rec)
        if not n:
            raise ValueError(f"{weights}: no class list in the file's metadata; set task.num_classes")
        model = task.build_model(rec, n, log=lambda m: None)
        load_checkpoint(model, weights)
        return Trained(model.eval(), rec, classes, weights)

    def default_num_classes(self, recipe: Any) -> int:
        """The class count of a run whose weights carry no class list (0: unknown)."""
        return 0

    def run_evaluate(self, args: Any, trained: Any, dist: Any) -> None:
        raise NotImplementedError(f"vitkit evaluate does not support the {self.name} task yet")

    def run_predict(self, args: Any, trained: Any) -> int:
        raise NotImplementedError(f"vitkit predict does not support the {self.name} task yet")
