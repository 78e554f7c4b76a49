"""What a run tells its user: smoothed ETA, bad files said once per run, top-5 only where it means something,
TensorBoard / Weights & Biases beside metrics.jsonl."""
from __future__ import annotations

import importlib.machinery
import logging
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from vitkit.data.badlog import RUN_DIR_ENV, BadSampleLog, run_scope
from vitkit.engine.evaluate import metrics_from_scores
from vitkit.engine.loggers import TensorBoardSink, build_sinks
from vitkit.engine.metrics import MetricsLog
from vitkit.engine.progress import EtaMeter, format_eta
from vitkit.engine.recipe import RecipeError, find_recipe, load_recipe

ROOT = Path(__file__).resolve().parents[1]


def test_eta_is_smoothed():
    m = EtaMeter(smoothing=0.3)
    assert format_eta(m.eta(100)) == "?"
    for _ in range(5):
        m.update(10, 10.0)  # 1 s per step
    assert m.eta(100) == pytest.approx(100.0)
    m.update(10, 110.0)  # one window with an evaluation in it: 11 s per step
    assert m.eta(100) == pytest.approx(100 * (0.3 * 11 + 0.7 * 1))  # moves by 30 % of the excess, not 11x
    m.update(10, 10.0)
    assert m.eta(100) < 400
    assert format_eta(95) == "1m35s" and format_eta(4000) == "1h06m" and format_eta(7) == "7s"


def test_bad_file_is_said_once_per_run_across_datasets_and_processes(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="vitkit.data")
    with run_scope(str(tmp_path / "scope")) as scope:
        os.makedirs(scope.directory, exist_ok=True)
        train, test = BadSampleLog("train"), BadSampleLog("test")
        train.report("/data/a.png", "truncated")
        test.report("/data/a.png", "truncated")   # same file in the other split: not said again
        train.report("/data/b.png", "empty")
        # another rank (a separate process with the run's directory in its environment) finds the same file
        code = ("import logging, sys; logging.basicConfig(stream=sys.stdout, level=logging.WARNING); "
                "from vitkit.data.badlog import BadSampleLog; "
                "BadSampleLog('rank1').report('/data/a.png', 'truncated'); "
                "BadSampleLog('rank1').report('/data/c.png', 'empty')")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        assert r.returncode == 0, r.stderr
        assert "a.png" not in r.stdout and "c.png" in r.stdout
        assert train.items() == {"/data/a.png": "truncated", "/data/b.png": "empty"}  # each still counts its own
        assert test.items() == {"/data/a.png": "truncated"}
    said = [rec.getMessage() for rec in caplog.records]
    assert sum("a.png" in m for m in said) == 1 and sum("b.png" in m for m in said) == 1
    assert RUN_DIR_ENV not in os.environ and not Path(scope.directory).exists()
    # outside a run, each dataset still says it (library use)
    BadSampleLog("x").report("/data/a.png", "truncated")
    assert sum("a.png" in rec.getMessage() for rec in caplog.records) == 2


def test_top5_only_with_more_than_five_classes():
    from vitkit.tasks import get_task

    labels = torch.tensor([0, 1, 2])
    small = metrics_from_scores(torch.eye(3)[[1, 1, 2]], labels)
    assert not small.has_top5 and "top5" not in small.summary()
    big = metrics_from_scores(torch.eye(8)[[1, 1, 2]], labels)
    assert big.has_top5 and big.summary()["top5"] == pytest.approx(100.0)
    task = get_task("classification")
    assert "top-5" not in task.describe({"top1": 50.0, "loss": 1.0})
    assert "top-5 90.00%" in task.describe({"top1": 50.0, "top5": 90.0, "loss": 1.0})


def test_tensorboard_events_beside_metrics(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    r = load_recipe(find_recipe("demo/digits"))
    sinks = build_sinks(r, tmp_path, log=lambda m: None)
    assert [type(s) for s in sinks] == [TensorBoardSink]
    log = MetricsLog(tmp_path / "metrics.jsonl", sinks=sinks)
    for step in (1, 2, 3):
        log.write("train", step=step, epoch=0.1 * step, loss=2.0 / step, lr=1e-3, grad_norm=float("nan"))
    log.write("eval", step=3, epoch=1, top1=55.0, loss=1.2, num_samples=10)
    log.close()
    assert len(log.read()) == 4
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"train/loss", "train/lr", "eval/top1", "eval/num_samples"} <= set(tags) and "train/grad_norm" not in tags
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2, 3]
    assert acc.Scalars("train/loss")[-1].value == pytest.approx(2.0 / 3)
    off = load_recipe(find_recipe("demo/digits"), ["run.tensorboard=false"])
    assert build_sinks(off, tmp_path / "off", log=lambda m: None) == []


def test_wandb_when_installed_and_configured(tmp_path, monkeypatch):
    calls = []

    class Run:
        def log(self, data, step):
            calls.append(("log", data, step))

        def finish(self):
            calls.append(("finish",))

    fake = types.ModuleType("wandb")
    fake.__spec__ = importlib.machinery.ModuleSpec("wandb", None)
    fake.init = lambda **kw: calls.append(("init", kw)) or Run()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    r = load_recipe(find_recipe("demo/digits"), ["run.tensorboard=false"])
    assert build_sinks(r, tmp_path / "run", log=lambda m: None) == []  # installed but not configured: never prompts
    monkeypatch.setenv("WANDB_MODE", "offline")
    log = MetricsLog(tmp_path / "metrics.jsonl", sinks=build_sinks(r, tmp_path / "run", log=lambda m: None))
    log.write("eval", step=7, epoch=1, top1=42.0, loss=1.5)
    log.close()
    assert calls[0][0] == "init" and calls[0][1]["project"] == "vitkit" and calls[0][1]["name"] == "run"
    assert calls[0][1]["config"]["model"]["name"] == "vit_demo_patch8_32"
    assert calls[1] == ("log", {"eval/epoch": 1.0, "eval/top1": 42.0, "eval/loss": 1.5}, 7)
    assert calls[2] == ("finish",)


def test_required_logger_missing_is_a_config_error(tmp_path, monkeypatch):
    import vitkit.engine.loggers as L

    monkeypatch.setattr(L, "_installed", lambda name: False)
    r = load_recipe(find_recipe("demo/digits"), ["run.tensorboard=true"])
    with pytest.raises(RecipeError, match="tensorboard"):
        build_sinks(r, tmp_path, log=lambda m: None)
