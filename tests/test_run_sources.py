"""Commands take what users have: a run directory, its checkpoints/ or a step_* folder (as predict does)."""
from __future__ import annotations

import json

import pytest

from vitkit.cli import main as cli

TINY = ["model.patch_size=8", "model.embed_dim=32", "model.depth=2", "model.num_heads=2", "eval.batch_size=512",
        "train.workers=0", "train.max_steps=1", "schedule.epochs=1", "--quiet"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("runs") / "digits"
    assert cli(["train", *TINY, f"run.dir={d}"]) == 0
    return d


def test_evaluate_export_attention_take_a_run_or_a_checkpoint_folder(run, tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    step = next((run / "checkpoints").glob("step_*"))
    assert cli(["evaluate", str(step), "--limit", "20", "--workers", "0", "--out", str(tmp_path / "ev")]) == 0
    assert json.loads((tmp_path / "ev" / "eval.json").read_text())["weights"] == str(step / "model.safetensors")
    out = tmp_path / "digits.onnx"
    assert cli(["export", str(run / "checkpoints"), "-o", str(out), "--exporter", "torchscript"]) == 0
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(props["vitkit.classes"]) == [str(i) for i in range(10)]  # the run's class names
    assert "10 class names in its metadata" in capsys.readouterr().out
    assert cli(["attention", str(run), "sample:coffee", "--layers", "0", "--out", str(tmp_path / "att")]) == 0
    assert (tmp_path / "att" / "layer_00.png").is_file()
    assert json.loads((tmp_path / "att" / "mean_distance.json").read_text())["model"] == "vit_demo_patch8_32"
    # a folder that is not a run, and a run folder with --weights: one clear line each
    assert cli(["export", str(tmp_path / "ev"), "-o", str(tmp_path / "x.onnx")]) == 2
    assert "holds no model.safetensors" in capsys.readouterr().err
    assert cli(["attention", str(run), "sample:coffee", "--weights", "w.safetensors"]) == 2
    assert "drop --weights" in capsys.readouterr().err
