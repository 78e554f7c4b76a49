"""Trained models back from disk: a run directory (recipe + weights) or a weights file plus a model name."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch.nn as nn
from safetensors import safe_open

from vitkit.checkpoints import load_weights
from vitkit.data import class_names
from vitkit.registry import create_model
from vitkit.tasks import get_task

from .data import resolve_input
from .recipe import Recipe, RecipeError, find_recipe, load_recipe


@dataclass
class Trained:
    model: nn.Module
    recipe: Recipe
    classes: list[str] | None
    weights: Path
    run_dir: Path | None = None  # the run directory the weights came from, when known


def _classes_from(weights: Path, run_dir: Path | None) -> list[str] | None:
    if weights.suffix == ".safetensors":
        with safe_open(str(weights), framework="pt") as f:
            meta = f.metadata() or {}
        if "classes" in meta:
            return list(json.loads(meta["classes"]))
    if run_dir is not None and (run_dir / "results.json").is_file():
        return json.loads((run_dir / "results.json").read_text()).get("classes")
    return None


def _weights_in(folder: Path, ema: bool) -> Path:
    """The weights a run folder holds: its own model/ema file, else its latest checkpoint's.

    ``folder``: a run directory (final weights, or the latest checkpoint of an unfinished run), its
    ``checkpoints/`` folder (via ``latest``) or one ``step_*`` checkpoint folder.
    """
    from .checkpoint import EMA_FILE, MODEL_FILE, resolve_checkpoint

    name = EMA_FILE if ema else MODEL_FILE
    if (folder / name).is_file():
        return folder / name
    try:
        ck = resolve_checkpoint(folder)
    except FileNotFoundError:
        ck = None
    if ck is None or not (ck / name).is_file():
        raise FileNotFoundError(f"{folder} holds no {name}: expected a run directory, its checkpoints/ folder or "
                                "a step_* checkpoint folder (or pass a weights file)")
    return ck / name


def load_trained(source: str, *, model_name: str | None = None, recipe: str | None = None,
                 overrides: list[str] | None = None, ema: bool = False) -> Trained:
    """``source``: a run directory, its ``checkpoints/`` folder or a ``step_*`` checkpoint inside it (the run's
    recipe.yaml and model / ema weights: the final ones, else the latest checkpoint's), or a weights file in any
    layout vitkit reads (then ``model_name`` or a recipe names the model)."""
    src = Path(source)
    overrides = list(overrides or [])
    run_dir = None
    if src.is_dir():
        weights = _weights_in(src, ema)
        run_dir = next((c for c in (src, *list(src.parents)[:3]) if (c / "recipe.yaml").is_file()), None)
        rec_path = find_recipe(recipe) if recipe else (run_dir / "recipe.yaml" if run_dir else None)
        if rec_path is None:
            raise FileNotFoundError(f"no recipe.yaml in {src} or the run directory above it; pass the recipe "
                                    "the run was trained with")
    elif src.is_file():
        weights = src
        rec_path = find_recipe(recipe) if recipe else None
        if model_name is None and rec_path is None:
            raise RecipeError(f"{src} is a weights file: name its model with --model NAME (or give a recipe)")
    else:
        raise FileNotFoundError(f"not found: {source} (expected a run directory or a weights file)")
    if model_name is not None:
        overrides.append(f"model.name={model_name}")
    rec = load_recipe(rec_path, overrides)  # None: the schema defaults with the given model name
    classes = _classes_from(weights, run_dir)
    cfg, spec = resolve_input(rec, data_follows_model=get_task(rec.task.name).input_follows_model)
    if classes is not None:
        cfg["num_classes"] = len(classes)
    model = create_model(rec.model.name, **cfg)
    model.input_spec = spec
    # a file without class names (a foreign checkpoint) says the class count through its head: read it once
    load_weights(model, weights, head="keep" if classes is None and "num_classes" not in cfg else "strict")
    if classes is None:
        classes = default_class_names(getattr(model, "num_classes", 0))
    return Trained(model.eval(), rec, classes, weights, run_dir)


def default_class_names(num_classes: int) -> list[str] | None:
    """The shipped ImageNet-1k / Kinetics-400 / Kinetics-600 / Something-Something V2 names for 1000 / 400 / 600 /
    174 outputs; None otherwise."""
    shipped = {1000: "imagenet1k", 400: "kinetics400", 600: "kinetics600", 174: "something_something_v2"}
    return list(class_names(shipped[num_classes])) if num_classes in shipped else None
