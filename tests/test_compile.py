"""``train.compile``: the recipe key is validated, and a compiled tiny model trains and saves its own key names."""
from __future__ import annotations

import math

import pytest
from safetensors.torch import load_file

from vitkit.engine.recipe import RecipeError, find_recipe, load_recipe
from vitkit.engine.trainer import Trainer

TINY = ["model.patch_size=8", "model.embed_dim=32", "model.depth=1", "model.num_heads=2", "eval.batch_size=512",
        "train.batch_size=64", "train.workers=0", "train.max_steps=2", "schedule.epochs=1", "eval.every=100"]


def test_compile_key_is_validated():
    assert load_recipe(find_recipe("demo/digits")).train.compile is False
    assert load_recipe(find_recipe("demo/digits"), ["train.compile=true"]).train.compile is True
    with pytest.raises(RecipeError, match="train.compile.*true/false"):
        load_recipe(find_recipe("demo/digits"), ["train.compile=fast"])
    with pytest.raises(RecipeError, match="compile"):
        load_recipe(find_recipe("demo/digits"), ["train.compiled=true"])


@pytest.mark.slow
def test_compiled_training_runs_two_steps(tmp_path):
    """Two optimiser steps through torch.compile (dynamic shapes); the checkpoint keeps the model's own keys."""
    r = load_recipe(find_recipe("demo/digits"), [*TINY, "train.compile=true", f"run.dir={tmp_path / 'run'}"])
    trainer = Trainer(r, quiet=True)
    assert trainer.ddp is not trainer.model and hasattr(trainer.ddp, "_orig_mod")
    result = trainer.fit()
    assert result.steps == 2
    assert result.final and all(math.isfinite(v) for v in result.final.values())
    saved = load_file(next((tmp_path / "run" / "checkpoints").rglob("*.safetensors")))
    assert saved and not any("_orig_mod" in k for k in saved)
