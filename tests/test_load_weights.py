"""The one loading policy: strict, or the classifier reset / matched / kept by name, with the report saying what
happened to it; create_model, the trainer's fine-tuning and inference all load through it."""
from __future__ import annotations

import pytest
import torch

import vitkit
from vitkit.checkpoints import CheckpointError, base, load_weights, save_weights

SMALL = dict(img_size=16, patch_size=8, embed_dim=32, depth=1, num_heads=2)


def _model(num_classes: int = 10, **kw):
    return vitkit.create_model("vit_demo_patch4_32", num_classes=num_classes, **{**SMALL, **kw})


def _source(num_classes: int = 1000):
    src = _model(num_classes)
    with torch.no_grad():
        for p in src.parameters():
            p.normal_()
    return src


def _same_body(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa if not k.startswith("head."))


def test_strict_head_mismatch_raises_naming_the_head():
    with pytest.raises(CheckpointError, match=r"head\.weight: checkpoint \(1000, 32\) vs model \(10, 32\)"):
        load_weights(_model(10), _source(1000).state_dict())
    with pytest.raises(ValueError, match="head must be one of"):
        load_weights(_model(10), _source(10).state_dict(), head="guess")


def test_reset_loads_the_body_and_zero_initialises_the_head():
    src, dst = _source(1000), _model(10)
    report = load_weights(dst, src.state_dict(), head="reset")
    assert _same_body(src, dst) and report.missing == ["head.bias", "head.weight"]  # not from the file
    assert dst.head.weight.shape == (10, 32) and not dst.head.weight.any() and not dst.head.bias.any()
    assert report.head.startswith("reset") and "1000 classes" in report.head and "head: reset" in report.describe()
    same = _source(10)
    load_weights(dst, same.state_dict(), head="reset")  # reset even where it would fit
    assert not dst.head.weight.any()


def test_match_keeps_a_fitting_head_and_resets_another():
    src, dst = _source(10), _model(10)
    report = load_weights(dst, src.state_dict(), head="match")
    assert report.head == "loaded" and torch.equal(dst.head.weight, src.head.weight)
    report = load_weights(dst, _source(7).state_dict(), head="match")
    assert report.head.startswith("reset") and dst.num_classes == 10 and not dst.head.weight.any()


def test_keep_resizes_the_model_to_the_checkpoint_head():
    src, dst = _source(7), _model(10)
    report = load_weights(dst, src.state_dict(), head="keep")
    assert dst.num_classes == 7 and torch.equal(dst.head.weight, src.head.weight) and _same_body(src, dst)
    assert "resized" in report.head and "7 classes" in report.head
    assert dst(torch.randn(1, 3, 16, 16)).shape == (1, 7)


def test_body_mismatch_still_raises_whatever_the_head_policy():
    src = _model(10, depth=2)
    for head in ("reset", "match", "keep"):
        with pytest.raises(CheckpointError, match="unexpected keys"):
            load_weights(_model(10), src.state_dict(), head=head)
    report = load_weights(_model(10), src.state_dict(), head="reset", strict=False)
    assert report.unexpected and report.head.startswith("reset")


def test_head_is_found_by_the_models_names_not_a_prefix():
    # a body key that merely starts with "head" is not the classifier
    model = _model(10)
    assert base.classifier_keys(model, ["head.weight", "head.bias", "headless.weight", "blocks.0.head"]) == [
        "head.bias", "head.weight"]


def test_create_model_and_legacy_load_checkpoint_use_the_policy(tmp_path):
    src = _source(1000)
    save_weights(src, tmp_path / "w.safetensors")
    m = vitkit.create_model("vit_demo_patch4_32", weights=str(tmp_path / "w.safetensors"), head="reset",
                            num_classes=10, **SMALL)
    assert _same_body(src, m) and not m.head.weight.any()
    with pytest.raises(CheckpointError):
        vitkit.create_model("vit_demo_patch4_32", weights=str(tmp_path / "w.safetensors"), num_classes=10, **SMALL)
    report = vitkit.load_checkpoint(_model(10), tmp_path / "w.safetensors", strict=False)
    assert [k for k, _, _ in report.mismatched] == ["head.bias", "head.weight"]


def test_inference_reads_a_foreign_file_once_and_takes_its_head(tmp_path, monkeypatch):
    from vitkit.engine.inference import load_trained

    src = _source(7)
    torch.save(src.state_dict(), tmp_path / "w.pth")  # no class names: the head says how many classes
    reads = []
    real = base.read_state_dict
    monkeypatch.setattr(base, "read_state_dict", lambda s: reads.append(s) or real(s))
    t = load_trained(str(tmp_path / "w.pth"), model_name="vit_demo_patch4_32",
                     overrides=[f"model.{k}={v}" for k, v in SMALL.items()])
    assert len(reads) == 1 and t.model.num_classes == 7 and torch.equal(t.model.head.weight, src.head.weight)


def test_trainer_fine_tune_path_matches_the_head(tmp_path):
    from vitkit.engine.recipe import load_recipe
    from vitkit.engine.trainer import build_model

    save_weights(_source(10), tmp_path / "ten.safetensors")
    save_weights(_source(1000), tmp_path / "thousand.safetensors")
    over = [f"model.{k}={v}" for k, v in SMALL.items()]
    logged: list[str] = []
    m = build_model(load_recipe(None, [*over, f"model.weights={tmp_path / 'ten.safetensors'}"]), 10, logged.append)
    assert m.head.weight.any() and "head: loaded" in logged[-1]
    m = build_model(load_recipe(None, [*over, f"model.weights={tmp_path / 'thousand.safetensors'}"]), 10,
                    logged.append)
    assert not m.head.weight.any() and "head: reset" in logged[-1]
    bad = _model(10, embed_dim=64, num_heads=2)
    save_weights(bad, tmp_path / "bad.safetensors")
    with pytest.raises(CheckpointError, match="shape mismatches"):
        build_model(load_recipe(None, [*over, f"model.weights={tmp_path / 'bad.safetensors'}"]), 10, logged.append)
