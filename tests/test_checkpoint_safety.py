"""Weights that must not be saved or loaded silently: non-finite, truncated, foreign, integer where floats belong."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
from safetensors.torch import save_file

import vitkit
from vitkit.checkpoints import CheckpointError
from vitkit.cli import main as cli
from vitkit.engine import checkpoint as ckpt
from vitkit.engine.diagnose import nonfinite_loss_message
from vitkit.engine.recipe import load_recipe


def _model(fill: float) -> nn.Linear:
    m = nn.Linear(4, 3)
    with torch.no_grad():
        m.weight.fill_(fill)
        m.bias.fill_(fill)
    return m


def test_nonfinite_weights_are_never_the_latest_checkpoint(tmp_path):
    ckpt.save_checkpoint(tmp_path, 1, _model(1.0), {"step": 1})
    bad = _model(2.0)
    with torch.no_grad():
        bad.weight[0, 1] = math.nan
    with pytest.raises(ckpt.NonFiniteWeightsError) as e:
        ckpt.save_checkpoint(tmp_path, 2, bad, {"step": 2})
    msg = str(e.value)
    assert "step 2" in msg and "'weight'" in msg and str(tmp_path / "step_0000001") in msg
    with pytest.raises(ckpt.NonFiniteWeightsError, match="EMA weights"):
        ckpt.save_checkpoint(tmp_path, 2, _model(2.0), {"step": 2}, ema=bad)
    assert (tmp_path / "latest").read_text().strip() == "step_0000001"
    assert not (tmp_path / "step_0000002").exists() and not list(tmp_path.glob(".tmp-*"))


def test_resume_falls_back_to_the_newest_readable_checkpoint(tmp_path):
    for step in (1, 2, 3):
        ckpt.save_checkpoint(tmp_path, step, _model(step), {"step": step}, keep=3)
    weights = tmp_path / "step_0000003" / ckpt.MODEL_FILE
    weights.write_bytes(weights.read_bytes()[:40])  # truncated by a crash or a copy
    got = ckpt.load_checkpoint_dir(tmp_path)
    assert got["state"]["step"] == 2 and torch.all(got["model"]["weight"] == 2)
    assert [d.name for d, _ in got["skipped"]] == ["step_0000003"]
    assert "not a readable safetensors file" in got["skipped"][0][1]
    # state.pt damaged in the next one: fall back again, and name each reason
    (tmp_path / "step_0000002" / ckpt.STATE_FILE).write_bytes(b"garbage")
    got = ckpt.load_checkpoint_dir(tmp_path)
    assert got["state"]["step"] == 1 and len(got["skipped"]) == 2
    # an explicitly named checkpoint is not replaced by another one
    with pytest.raises(CheckpointError, match="step_0000003"):
        ckpt.load_checkpoint_dir(tmp_path / "step_0000003")
    (tmp_path / "step_0000001" / ckpt.MODEL_FILE).write_bytes(b"")
    with pytest.raises(CheckpointError, match="no readable checkpoint"):
        ckpt.load_checkpoint_dir(tmp_path)


@pytest.fixture
def bad_files(tmp_path):
    """Weight files of vit_demo_patch4_32 damaged in each way, with the tensor the error must name."""
    model = vitkit.create_model("vit_demo_patch4_32")
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    good = tmp_path / "good.safetensors"
    save_file(sd, good)
    files = {}
    files["truncated"] = (tmp_path / "truncated.safetensors", None)
    files["truncated"][0].write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    files["not_safetensors"] = (tmp_path / "photo.safetensors", None)
    files["not_safetensors"][0].write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    for kind, key, value in (("nan", "blocks.1.mlp.fc1.weight", math.nan), ("inf", "head.bias", math.inf)):
        t = dict(sd)
        t[key] = t[key].clone()
        t[key].view(-1)[3] = value
        save_file(t, tmp_path / f"{kind}.safetensors")
        files[kind] = (tmp_path / f"{kind}.safetensors", key)
    for kind, key, dtype in (("int", "patch_embed.proj.weight", torch.int64), ("bool", "norm.weight", torch.bool)):
        t = dict(sd)
        t[key] = t[key].to(dtype)
        path = tmp_path / f"{kind}.pth"  # also through the torch (weights_only) reader
        torch.save(t, path)
        files[kind] = (path, key)
    return model, files


def test_damaged_weight_files_raise_checkpoint_error_naming_file_and_tensor(bad_files):
    model, files = bad_files
    for kind, (path, key) in files.items():
        with pytest.raises(CheckpointError) as e:
            vitkit.load_checkpoint(model, path)
        msg = str(e.value)
        assert str(path) in msg, (kind, msg)
        if key is not None:
            assert repr(key) in msg, (kind, msg)
        assert "\n" not in msg, (kind, msg)


def test_every_weight_loading_command_reports_damaged_files_in_one_line(bad_files, tmp_path, capsys):
    _, files = bad_files
    path = str(files["nan"][0])
    for argv in (["convert", path, str(tmp_path / "out.safetensors"), "--model", "vit_demo_patch4_32"],
                 ["evaluate", path, "--model", "vit_demo_patch4_32"]):
        assert cli(argv) != 0
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and path in err and "blocks.1.mlp.fc1.weight" in err, (argv, err)


def test_nonfinite_loss_names_the_cause_from_the_actual_settings(tmp_path):
    m = nn.Linear(4, 3)
    x = torch.randn(2, 4)
    plain = load_recipe(None, ["train.amp=none", "optim.lr=1e-2", "schedule.warmup_epochs=0"])
    msg = nonfinite_loss_message(plain, 7, float("nan"), x, m, 1e-2, "runs/x/checkpoints/step_0000005")
    assert "fp16" not in msg and "step 7" in msg and "step_0000005" in msg
    assert "optim.lr" in msg and "train.clip_grad" in msg and "warmup" in msg
    clipped = load_recipe(None, ["optim.lr=1e-4", "train.clip_grad=1.0", "schedule.warmup_epochs=1"])
    msg = nonfinite_loss_message(clipped, 1, math.inf, x, m, 1e-4, "none")
    assert "set train.clip_grad" not in msg and "warm-up" not in msg and "optim.lr=0.0001" in msg
    x_bad = x.clone()
    x_bad[0, 0] = math.nan
    assert "input batch" in nonfinite_loss_message(plain, 0, math.nan, x_bad, m, 1e-2, "none")
    with torch.no_grad():
        m.weight[0, 0] = math.inf
    assert "'weight'" in nonfinite_loss_message(plain, 3, math.nan, x, m, 1e-2, "none")
