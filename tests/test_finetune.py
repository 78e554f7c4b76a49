"""Fine-tuning modes (linear probe, frozen stages) and recipes that start from published weights (model.pretrained)."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save

import vitkit
from vitkit.engine.finetune import apply_finetune, stage_of
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
