"""Fine-tuning modes (linear probe, frozen stages) and recipes that start from published weights (model.pretrained)."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save

import vitkit
from vitkit.engine.finetune import ProbeHead, add_probe_norm, apply_finetune, stage_of
from vitkit.engine.recipe import find_recipe, load_recipe
from vitkit.engine.trainer import Trainer
from vitkit.weights import Weights
from test_weights import env, records, server  # noqa: F401  (fixtures: local mirror, test zoo records)

TINY = {"embed_dim": 32, "depth": 2, "num_heads": 2}


def _trainable(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_linear_probe_and_frozen_stages():
    vit = vitkit.create_model("vit_demo_patch4_32")
    apply_finetune(vit, "linear_probe")
    assert _trainable(vit) == {"head.weight", "head.bias"}

    swin = vitkit.create_model("swin_tiny_patch4_window7_224", embed_dim=24, depths=(1, 1, 2, 1),
                               num_heads=(1, 1, 1, 1), img_size=64, window_size=2)
    apply_finetune(swin, "freeze", 2)
    names = _trainable(swin)
    assert not any(n.startswith(("patch_embed", "layers.0.", "layers.1.")) for n in names)
    assert any(n.startswith("layers.2.") for n in names) and "head.weight" in names and "norm.weight" in names

    uf = vitkit.create_model("uniformer_demo_32")
    apply_finetune(uf, "freeze", 1)
    assert stage_of(uf, "patch_embed1.proj.weight") == 0 and stage_of(uf, "patch_embed2.proj.weight") == 2
    names = _trainable(uf)
    assert not any(n.startswith(("patch_embed1.", "blocks1.")) for n in names) and "blocks2.0.conv1.weight" in names
    uf.train()  # frozen BatchNorm keeps its statistics
    bn = dict(uf.named_modules())["blocks1.0.norm1"]
    assert isinstance(bn, torch.nn.modules.batchnorm._BatchNorm) and not bn.training
    assert dict(uf.named_modules())["blocks2.0.norm1"].training

    mvit = vitkit.create_model("mvit_demo_8x32")
    apply_finetune(mvit, "freeze", 2)
    names = _trainable(mvit)
    assert "blocks.1.attn.qkv.weight" not in names and "blocks.2.attn.qkv.weight" in names
    assert "cls_token" not in names and "head.weight" in names

    with pytest.raises(ValueError, match="finetune must be one of"):
        apply_finetune(vit, "lora")
    with pytest.raises(ValueError, match="needs model.finetune=freeze"):
        apply_finetune(vit, "full", 2)


def test_recipe_from_a_published_tag_trains_only_the_probe(env, server, records, tmp_path):  # noqa: F811
    source = vitkit.create_model("vit_demo_patch8_32", num_classes=10, **TINY)
    with torch.no_grad():
        for p in source.parameters():
            p.normal_(0, 0.1)
    w = records(Weights("vit_demo_patch8_32", "test_probe", "https://weights.example.org/probe.safetensors",
                        "timm", "MIT", "none", "test", config={"num_classes": 10, **TINY}))
    server.put(w.url, save({k: v.contiguous() for k, v in source.state_dict().items()}))
    r = load_recipe(find_recipe("demo/digits"), [
        *(f"model.{k}={v}" for k, v in TINY.items()), f"run.dir={tmp_path / 'run'}", "eval.batch_size=512",
        "model.pretrained=test_probe", "model.finetune=linear_probe", "schedule.epochs=1", "train.workers=0",
        "schedule.warmup_epochs=0", "train.ema_decay=null"])
    assert r.to_dict()["model"]["pretrained"] == "test_probe"
    trainer = Trainer(r, quiet=True)
    trainer.fit()
    trained = trainer.model.state_dict()
    for k, v in source.state_dict().items():
        if k.startswith("head."):
            assert not torch.equal(trained[k], v), k  # the probe learned
        else:
            assert torch.equal(trained[k], v), k  # the backbone did not move


# -- the shipped fine-tuning recipes (configs/finetune/) ------------------------------------------------------
_VIT = {"patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}
_SWIN = {"embed_dim": 16, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 1, 1), "img_size": 64}
_UF = {"depth": (1, 1, 1, 1), "embed_dim": (16, 32, 32, 64), "head_dim": 16, "img_size": 32}
_IMAGES = ["data.dataset=digits", "data.train_split=train", "data.val_split=test"]
_CLIPS = ["data.dataset=motion-digits", "data.train_split=train", "data.val_split=test", "data.num_frames=4",
          "data.sampling_rate=1", "data.repeated_aug=1", "data.augment={}", "data.mean=null", "data.std=null"]
#: recipe -> (tiny config of the recipe's model, tiny config of the published file's model, overrides); every
#: shipped recipe must be here, so each is trained for two steps from its tag, served by the local mirror
FINETUNE = {
    "finetune/vit_base_patch16_384_in21k_to_in1k": (
        {**_VIT, "img_size": 48}, {**_VIT, "img_size": 32}, [*_IMAGES, "data.input_size=48"]),  # 4x4 -> 6x6 grid
    "finetune/vit_base_patch16_224_linear_probe": ({**_VIT, "img_size": 32}, {**_VIT, "img_size": 32},
                                                   [*_IMAGES, "data.input_size=32"]),
    "finetune/vit_base_patch16_224_llrd_in21k_to_in1k": ({**_VIT, "img_size": 32}, {**_VIT, "img_size": 32},
                                                         [*_IMAGES, "data.input_size=32"]),
    "finetune/swin_base_patch4_window12_384_in22k_to_in1k": (
        {**_SWIN, "window_size": 4}, {**_SWIN, "window_size": 2}, [*_IMAGES, "data.input_size=64"]),  # 3x3 -> 7x7
    "finetune/swin_tiny_patch4_window7_224_freeze2": ({**_SWIN, "window_size": 2}, {**_SWIN, "window_size": 2},
                                                      [*_IMAGES, "data.input_size=64"]),
    "finetune/swin3d_tiny_k400_from_in1k": (
        {**_SWIN, "img_size": 32, "num_frames": 4, "window_size": (2, 2, 2)}, {**_SWIN, "img_size": 32,
                                                                            "window_size": 2},
        [*_CLIPS, "data.input_size=32", "data.sampling_rate=1", "eval.num_crops=1"]),
    "finetune/uniformer_small_16x4_k400_from_in1k": ({**_UF, "num_frames": 4}, _UF,
                                                     [*_CLIPS, "data.input_size=32"]),
    "finetune/uniformer_small_16_ssv2_from_k600": ({**_UF, "num_frames": 4}, {**_UF, "num_frames": 4},
                                                   [*_CLIPS, "data.input_size=32", "data.format=auto",
                                                    "data.root=null", "eval.num_crops=1"]),
}


def _tag_of(recipe) -> Weights:
    from vitkit.weights import get_weights

    p = recipe.model.pretrained
    return get_weights(p) if "." in p else get_weights(recipe.model.name, p)


def test_every_shipped_finetune_recipe_resolves_from_a_zoo_tag():
    from vitkit.engine.recipe import list_recipes

    shipped = [n for n in list_recipes() if n.startswith("finetune/")]
    assert sorted(shipped) == sorted(FINETUNE), "a new finetune recipe needs a tiny setting in FINETUNE"
    for name in shipped:
        r = load_recipe(find_recipe(name))
        assert r.model.pretrained and r.model.weights is None, name
        w = _tag_of(r)  # raises for a tag the zoo does not have
        assert vitkit.model_info(w.model).family == vitkit.model_info(r.model.name).family, name
        assert w.url.startswith("https://") and w.source, name


def _published_bytes(w: Weights, sd: dict) -> bytes:
    """``sd`` (vitkit keys) written in the record's layout, as its publisher serves it."""
    import io

    from test_weights import jax_npz_of

    if w.layout == "jax-npz":
        return jax_npz_of(sd, depth=_VIT["depth"], heads=_VIT["num_heads"])
    if w.layout == "timm":
        return save({k: v.contiguous() for k, v in sd.items()})
    assert w.layout == "official", w.layout
    buf = io.BytesIO()
    torch.save({"model": sd} if vitkit.model_info(w.model).family == "swin" else sd, buf)
    return buf.getvalue()


@pytest.mark.parametrize("name", sorted(FINETUNE))
def test_finetune_recipe_trains_from_its_tag_offline(name, env, server, tmp_path, monkeypatch):  # noqa: F811
    import dataclasses

    from vitkit.weights import spec as zoo_spec

    tiny, tiny_source, data = FINETUNE[name]
    recipe = load_recipe(find_recipe(name))
    w = _tag_of(recipe)
    if w.sha256:  # the published digest is of the real file, not of the tiny one served here
        monkeypatch.setitem(zoo_spec._ZOO, w.name, dataclasses.replace(w, sha256=None))
    torch.manual_seed(0)
    source = vitkit.create_model(w.model, **tiny_source, num_classes=0 if w.labels == "none" else 5)
    with torch.no_grad():
        for p in source.parameters():
            p.normal_(0, 0.1)
    published = {k: v.clone() for k, v in source.state_dict().items()}
    server.put(w.url, _published_bytes(w, published))

    overrides = [f"model.{k}={list(v) if isinstance(v, tuple) else v}" for k, v in tiny.items()]
    r = load_recipe(find_recipe(name), [
        *overrides, *data, f"run.dir={tmp_path / 'run'}", "train.batch_size=8", "train.accum_steps=1",
        "train.max_steps=2", "train.workers=0", "train.amp=none", "train.ema_decay=null", "eval.batch_size=512",
        "eval.num_clips=1", "train.log_every=1", "schedule.min_lr=0"])
    trainer = Trainer(r, quiet=True)
    start = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    same = [k for k, v in published.items() if not k.startswith("head.") and k in start and start[k].shape == v.shape
            and "relative_position_index" not in k]
    assert len(same) > 0.6 * len(published), "the recipe's model did not take the published file"
    for k in same:  # loaded from the tag (resampled / inflated tensors change shape and are left out here)
        assert torch.equal(start[k], published[k]), k
    result = trainer.fit()
    assert trainer.step == 2 and result.final["top1"] >= 0
    frozen = {n for n, p in trainer.model.named_parameters() if not p.requires_grad}
    for n, v in trainer.model.state_dict().items():
        if n in frozen:
            assert torch.equal(v, start[n]), n  # frozen parts did not move
    moved = [n for n, p in trainer.model.named_parameters() if p.requires_grad and not torch.equal(p, start[n])]
    assert moved, "nothing trained"
    if r.model.finetune == "linear_probe_bn":
        assert isinstance(trainer.model.head, ProbeHead) and not _trainable(trainer.model) - {"head.weight",
                                                                                              "head.bias"}
        from vitkit.engine.inference import load_trained  # evaluate / predict / export of the run

        plain = load_trained(str(tmp_path / "run")).model
        assert type(plain.head) is torch.nn.Linear  # the probe's norm folded into it
        x = torch.randn(4, 3, 32, 32)
        with torch.no_grad():
            torch.testing.assert_close(plain(x), trainer.model.eval()(x), atol=1e-4, rtol=1e-4)
    if r.optim.layer_decay < 1:
        scales = {g["lr_scale"] for g in trainer.optimizer.param_groups}
        assert len(scales) == _VIT["depth"] + 2  # stem, each block, head


def test_probe_head_normalises_then_folds_into_a_linear_layer():
    vit = vitkit.create_model("vit_demo_patch4_32", num_classes=3)
    apply_finetune(vit, "linear_probe_bn")
    head = vit.head
    assert isinstance(head, ProbeHead) and add_probe_norm(vit) is head  # applying twice wraps once
    assert _trainable(vit) == {"head.weight", "head.bias"} and "head.norm.running_mean" in vit.state_dict()
    feats = torch.randn(64, head.in_features) * 5 + 3
    head.train()
    for _ in range(50):
        head(feats)  # running statistics converge to the features'
    head.eval()
    with torch.no_grad():
        head.weight.normal_()
        head.bias.normal_()
        torch.testing.assert_close(head.folded()(feats), head(feats), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(head.norm(feats).mean(0), torch.zeros(head.in_features), atol=0.1, rtol=0)
    with pytest.raises(ValueError, match="needs a linear classifier"):
        apply_finetune(vitkit.create_model("vit_demo_patch4_32", num_classes=0), "linear_probe_bn")
