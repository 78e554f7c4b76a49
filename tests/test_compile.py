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
    assert load_recipe(find_recipe("demo/digits"), ["train.compile=dynamic"]).train.compile == "dynamic"
    with pytest.raises(RecipeError, match="train.compile.*true/false or dynamic"):
        load_recipe(find_recipe("demo/digits"), ["train.compile=fast"])
    with pytest.raises(RecipeError, match="compile"):
        load_recipe(find_recipe("demo/digits"), ["train.compiled=true"])


def test_compile_modes_reach_torch_compile(monkeypatch):
    """true: torch's automatic dynamic shapes (dynamic=None); "dynamic": dynamic=True; false: the module itself;
    vitkit's Inductor options in every mode."""
    import torch
    import torch.nn as nn

    from vitkit.models.compile import INDUCTOR_OPTIONS, maybe_compile

    seen = []
    monkeypatch.setattr(torch, "compile", lambda m, **kw: seen.append(kw) or m)
    m = nn.Linear(2, 2)
    assert maybe_compile(m, False) is m and seen == []
    maybe_compile(m)
    maybe_compile(m, True)
    maybe_compile(m, "dynamic")
    maybe_compile(m, dynamic=True)
    maybe_compile(m, dynamic=False)
    assert [kw["dynamic"] for kw in seen] == [None, None, True, True, False]
    assert all(kw["options"] == INDUCTOR_OPTIONS for kw in seen)
    with pytest.raises(ValueError, match="compile mode"):
        maybe_compile(m, "fast")


def test_inductor_options_this_torch_lacks_are_left_out(monkeypatch):
    """An older torch (the lent GPU machine's, say) has no ``strict_output_strides``: the compile must not ask
    for it, or torch.compile refuses the unknown option."""
    from vitkit.models import compile as C

    monkeypatch.setattr(C, "INDUCTOR_OPTIONS", {**C.INDUCTOR_OPTIONS, "an_option_no_torch_has": True})
    assert C.inductor_options() == {"strict_output_strides": True}


@pytest.mark.slow
def test_compiled_training_runs_two_steps(tmp_path):
    """Two optimiser steps through torch.compile (automatic dynamic shapes); the checkpoint keeps the model's own
    keys."""
    r = load_recipe(find_recipe("demo/digits"), [*TINY, "train.compile=true", f"run.dir={tmp_path / 'run'}"])
    trainer = Trainer(r, quiet=True)
    assert trainer.ddp is not trainer.model and hasattr(trainer.ddp, "_orig_mod")
    result = trainer.fit()
    assert result.steps == 2
    assert result.final and all(math.isfinite(v) for v in result.final.values())
    saved = load_file(next((tmp_path / "run" / "checkpoints").rglob("*.safetensors")))
    assert saved and not any("_orig_mod" in k for k in saved)


# -- graph breaks (TorchDynamo decides them before any backend runs: traced with the eager backend) --------------
_FAMILIES = {
    "vit": ("vit_demo_patch8_32", {}, (2, 3, 32, 32)),
    "swin": ("swin_tiny_patch4_window7_224", dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1),
                                                   window_size=4, img_size=64), (2, 3, 64, 64)),
    "video_swin": ("swin3d_tiny", dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1),
                                        window_size=(2, 4, 4), img_size=64, num_frames=4), (1, 3, 4, 64, 64)),
    "uniformer": ("uniformer_demo_32", {}, (2, 3, 32, 32)),
    "mvit": ("mvit_demo_8x32", {}, (1, 3, 8, 32, 32)),
}


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("family", sorted(_FAMILIES))
def test_every_family_traces_without_graph_breaks(family):
    """One graph per forward (and so per backward): window orders, masks and bias indices are built with
    static-shape ops (a boolean-mask index once broke Swin's graph 25 times)."""
    import vitkit
    from vitkit.analysis.graph_breaks import audit

    name, kw, shape = _FAMILIES[family]
    result = audit(vitkit.create_model(name, drop_path_rate=0.0, **kw), [shape], recompiles=False)
    assert result.graph_breaks == 0 and result.graphs == 1, result.reasons


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("family", sorted(_FAMILIES))
def test_every_family_traces_without_graph_breaks_in_inference(family):
    """The same in eval mode without gradients, whose path differs (Swin's cached attention bias: torch 2.11's
    Dynamo broke the graph at every block there on ``id(None)``, seen on a lent H200)."""
    import vitkit
    from vitkit.analysis.graph_breaks import audit

    name, kw, shape = _FAMILIES[family]
    result = audit(vitkit.create_model(name, drop_path_rate=0.0, **kw), [shape], recompiles=False, inference=True)
    assert result.graph_breaks == 0 and result.graphs == 1, result.reasons


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("family", sorted(_FAMILIES))
def test_every_family_traces_without_graph_breaks_under_bf16_autocast(family):
    """Training and inference under CPU bf16 autocast (``train.amp: bf16`` with ``train.compile``), whose paths
    differ again: the check for bf16 units before the check for tracing had TorchDynamo trace into the
    ``/proc/cpuinfo`` read at every Linear (Swin 38 graph breaks, UniFormer 36, then the recompile limit)."""
    import torch

    import vitkit
    from vitkit.analysis.graph_breaks import audit

    name, kw, shape = _FAMILIES[family]
    for inference in (False, True):
        result = audit(vitkit.create_model(name, drop_path_rate=0.0, **kw), [shape], recompiles=False,
                       inference=inference, amp_dtype=torch.bfloat16)
        assert result.graph_breaks == 0 and result.graphs == 1, (inference, result.reasons)


# -- recompiles: one compiled model fed three sizes, dynamic=True explicitly (train.compile: dynamic; the default
# automatic mode compiles the first size static, then once symbolic) -------------------------------------------
_SIZES = {
    # the native 32 between two other sizes: the same-size resampling shortcut once guarded on it
    "vit": ("vit_demo_patch8_32", {}, [(2, 3, 48, 48), (2, 3, 32, 32), (2, 3, 64, 64)]),
    # 64: no window padding; 80: stage 2 (10 -> 12) padded; 72: both stages padded. Once three graphs.
    "swin": ("swin_tiny_patch4_window7_224", dict(embed_dim=16, depths=(2, 2), num_heads=(1, 1), window_size=4,
                                                   img_size=64), [(2, 3, 64, 64), (2, 3, 80, 80), (2, 3, 72, 72)]),
    # from 64 up (at 32 the last map is 1x1, and torch specialises sizes 0 and 1: one recompile, not vitkit's)
    "uniformer": ("uniformer_demo_32", {}, [(2, 3, 64, 64), (2, 3, 96, 96), (2, 3, 128, 128)]),
}


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("family", sorted(_SIZES))
def test_three_sizes_compile_one_graph(family):
    """No recompile at a new size (forward and backward, eager backend, dynamic=True)."""
    import vitkit
    from vitkit.analysis.graph_breaks import audit

    name, kw, shapes = _SIZES[family]
    result = audit(vitkit.create_model(name, drop_path_rate=0.0, **kw), shapes)
    assert result.graphs_per_size == [1, 1, 1], result.recompile_reasons
    assert result.recompiles == 0


def test_traced_same_size_resample_is_exact():
    """While compiled, resampling to the same grid interpolates (no size guard); that is an exact identity."""
    import torch

    from vitkit.layers import resample_1d, resample_pos_embed

    pe, table = torch.randn(1, 1 + 7 * 5, 8), torch.randn(13, 4)
    pe3 = torch.randn(1, 3 * 4 * 5, 8)
    fn = torch.compile(lambda: (resample_pos_embed(pe, (7, 5), (7, 5)), resample_1d(table, 13),
                                resample_pos_embed(pe3, (3, 4, 5), (3, 4, 5), 0)), backend="eager")
    a, b, c = fn()
    assert torch.equal(a, pe) and torch.equal(b, table) and torch.equal(c, pe3)
