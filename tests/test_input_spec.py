"""One input specification per model: derived from the resolved config, carried by the model, followed by the
data; a recipe whose data disagrees with the model is an error naming both, or a deliberate logged resize."""
from __future__ import annotations

import pytest
import torch

import vitkit
from vitkit.engine.data import build_split, resolve_input
from vitkit.engine.recipe import RecipeError, find_recipe, load_recipe
from vitkit.engine.trainer import build_model
from vitkit.models.input_spec import KINETICS_MEAN, InputSpec

TINY = ["model.patch_size=8", "model.embed_dim=32", "model.depth=1", "model.num_heads=2"]
TINY_VIDEO = ["model.embed_dim=32", "model.depth=1", "model.num_heads=2"]


def _digits(*extra: str):
    return load_recipe(find_recipe("demo/digits"), [*TINY, *extra])


def _motion(*extra: str):
    return load_recipe(find_recipe("demo/motion_digits_vit"), [*TINY_VIDEO, *extra])


def test_model_carries_the_spec_of_its_resolved_config():
    m = vitkit.create_model("vit_demo_patch4_32")
    assert m.input_spec == vitkit.model_info("vit_demo_patch4_32").spec
    assert m.input_spec.input_size == (3, 32, 32) and not m.input_spec.is_video
    big = vitkit.create_model("vit_demo_patch4_32", img_size=48)
    assert big.input_spec.input_size == (3, 48, 48) and big.input_spec.test_size == (48, 48)
    assert big.input_spec.mean == m.input_spec.mean  # preprocessing stays the variant's
    v = vitkit.registry.input_spec("mvit_base_16x4", num_frames=8)
    assert v.input_size == (3, 8, 224, 224) and v.sampling_rate == 4 and v.mean == KINETICS_MEAN
    # a model built directly from its config derives the family's defaults
    info = vitkit.model_info("vit_tiny_patch16_224")
    with torch.device("meta"):
        assert info.builder(info.config).input_spec == info.spec
    with pytest.raises(ValueError, match="crop_pct"):
        InputSpec(crop_pct=1.5)


def test_model_size_override_moves_the_data():
    r = _digits("model.img_size=48")
    cfg, spec = resolve_input(r)
    assert cfg["img_size"] == 48 and spec.size == (48, 48)
    x, _ = build_split(r, spec, train=False)[0]
    assert tuple(x.shape) == (3, 48, 48)
    model = build_model(r, 10, log=lambda m: None)
    assert model.input_spec == spec and model(x[None]).shape == (1, 10)


def test_model_frames_override_moves_the_clips():
    r = _motion("model.num_frames=4")
    _, spec = resolve_input(r)
    assert spec.num_frames == 4
    x, _ = build_split(r, spec, train=False)[0]
    assert tuple(x.shape) == (3, 4, 32, 32)


def test_data_disagreeing_with_the_model_names_both_values():
    with pytest.raises(RecipeError, match=r"data.input_size=\[48, 48\] but vit_demo_patch\d+_32 is built for 32x32"):
        resolve_input(_digits("data.input_size=48"))
    with pytest.raises(RecipeError, match=r"data.num_frames=4 but vit_demo_video_8x32 is built for 8 frames"):
        resolve_input(_motion("data.num_frames=4"))
    # restating the model's own size is no disagreement
    assert resolve_input(_digits("data.input_size=32"))[1].size == (32, 32)


def test_resize_model_builds_the_model_at_the_data_size_and_logs_it():
    r = _digits("data.input_size=48", "data.resize_model=true")
    logged: list[str] = []
    cfg, spec = resolve_input(r, logged.append)
    assert cfg["img_size"] == 48 and spec.size == (48, 48)
    assert len(logged) == 1 and "model.img_size=48" in logged[0] and "48x48" in logged[0]
    model = build_model(r, 10, log=lambda m: None)
    assert model.pos_embed.shape[1] == 1 + (48 // 8) ** 2  # built at 48, not resampled at run time
    r = _motion("data.num_frames=4", "data.resize_model=true")
    assert resolve_input(r)[1].num_frames == 4


def test_recipe_preprocessing_replaces_the_variants():
    _, spec = resolve_input(_digits("data.mean=[0.1,0.2,0.3]", "data.std=[0.3,0.3,0.3]"))
    assert spec.mean == (0.1, 0.2, 0.3) and spec.std == (0.3, 0.3, 0.3)
    r = load_recipe(None, ["model.name=mvit_base_16x4"])
    assert resolve_input(r)[1].sampling_rate == 4  # null: the variant's T x tau
    r = load_recipe(None, ["model.name=mvit_base_16x4", "data.sampling_rate=2"])
    assert resolve_input(r)[1].sampling_rate == 2
    with pytest.raises(RecipeError, match="mean"):
        resolve_input(_digits("data.mean=[0.5]"))


def test_export_and_benchmark_read_the_models_spec(tmp_path):
    from vitkit.export import _input_size, _meta

    m = vitkit.create_model("vit_demo_patch4_32", img_size=16, patch_size=8, embed_dim=32, depth=1, num_heads=2)
    assert _input_size(m, None) == (3, 16, 16)
    meta = _meta(m, (3, 16, 16), "sdpa")
    assert meta["vitkit.crop_pct"] == str(m.input_spec.crop_pct)
    with torch.no_grad():
        assert m(torch.randn(1, *m.input_spec.input_size)).shape == (1, 10)
