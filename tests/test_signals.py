"""Graceful stops: SIGINT/SIGTERM finish the step, checkpoint, say how to resume, exit non-zero; resume is exact."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vitkit.engine import signals
from vitkit.engine.checkpoint import load_checkpoint_dir
from vitkit.engine.recipe import find_recipe, load_recipe
from vitkit.engine.signals import GracefulStop, Interrupted
from vitkit.engine.trainer import Trainer

TINY = ["model.patch_size=8", "model.embed_dim=32", "model.depth=2", "model.num_heads=2", "eval.batch_size=512",
        "train.batch_size=128", "schedule.epochs=1", "schedule.warmup_epochs=0", "train.max_steps=4",
        "train.workers=0", "model.drop_path_rate=0.1", "data.augment={crop: rrc, scale: [0.5, 1.0]}"]


def _recipe(run_dir: Path, *extra: str):
    return load_recipe(find_recipe("demo/digits"), [*TINY, f"run.dir={run_dir}", *extra])


def _wait_for_step(run: Path, proc: subprocess.Popen, step: int, timeout: float) -> None:
    """Until the run's metrics log holds ``step`` (or the process ends, or ``timeout`` seconds pass)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        rows = (run / "metrics.jsonl").read_text().splitlines() if (run / "metrics.jsonl").exists() else []
        if any(json.loads(r).get("step", 0) >= step for r in rows):
            return
        time.sleep(0.2)


def test_signal_finishes_the_step_checkpoints_and_resumes_exactly(tmp_path, capsys):
    straight = Trainer(_recipe(tmp_path / "a"), quiet=True)
    straight.fit()
    t = Trainer(_recipe(tmp_path / "b"), quiet=True)
    step = t.train_step

    def step_then_signal(*a, **k):
        out = step(*a, **k)
        if t.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives mid-run, as from a scheduler
        return out

    t.train_step = step_then_signal
    with pytest.raises(Interrupted) as e:
        t.fit()
    assert e.value.exit_code == 128 + signal.SIGTERM
    out = capsys.readouterr().out
    assert f"vitkit train --resume {tmp_path / 'b'}" in out and "stopped by SIGTERM at step 2/4" in out
    assert load_checkpoint_dir(tmp_path / "b")["state"]["step"] == 2
    assert not (tmp_path / "b" / "results.json").exists(), "an interrupted run is not finished"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, "the handler outlived the run"

    Trainer(_recipe(tmp_path / "b"), resume=str(tmp_path / "b"), quiet=True).fit()
    a, b = load_checkpoint_dir(tmp_path / "a"), load_checkpoint_dir(tmp_path / "b")
    assert a["state"]["step"] == b["state"]["step"] == 4
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), f"{k} differs after the interrupted run resumed"
    for i, s in a["state"]["optimizer"]["state"].items():
        assert torch.equal(s["exp_avg"], b["state"]["optimizer"]["state"][i]["exp_avg"])


def test_second_signal_stops_at_once_and_duplicates_count_once(monkeypatch):
    told = []
    before = signal.getsignal(signal.SIGINT)  # default_int_handler; SIG_IGN under `nohup cmd &`
    with GracefulStop(told.append) as stop:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)  # within DUPLICATE_S: torchrun's forwarded copy of the same Ctrl-C
        assert stop.requested and stop.signum == signal.SIGINT and len(told) == 1
        monkeypatch.setattr(signals, "DUPLICATE_S", 0.0)
        with pytest.raises(KeyboardInterrupt, match="second SIGINT"):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before  # the handler found on entry is back


def test_ctrl_c_to_the_process_group_with_workers(tmp_path):
    """The CLI as a terminal runs it: Ctrl-C reaches the trainer and its loader worker; exit 130, resumable."""
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"),
                                                        os.environ.get("PYTHONPATH", "")])}
    args = [a for a in TINY if not a.startswith(("train.max_steps", "train.workers"))] + ["train.workers=1"]
    proc = subprocess.Popen([sys.executable, "-m", "vitkit", "train", *args, "train.max_steps=200", "train.log_every=1",
                             f"run.dir={run}"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        _wait_for_step(run, proc, 2, 240)
        os.killpg(proc.pid, signal.SIGINT)  # the whole group, as a terminal's Ctrl-C
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, out[-2000:]
    assert f"continue with: vitkit train --resume {run}" in out and "Traceback" not in out, out[-2000:]
    step = load_checkpoint_dir(run)["state"]["step"]
    assert 2 <= step < 200
    with pytest.raises(ProcessLookupError):  # no worker outlives the run
        os.killpg(proc.pid, 0)


@pytest.mark.slow
def test_sigterm_under_torchrun_stops_every_rank_after_the_same_step(tmp_path):
    """SIGTERM to the torchrun agent (what a scheduler does): both ranks finish the same step, one checkpoint."""
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"),
                                                        os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    args = [a for a in TINY if not a.startswith("train.max_steps")]
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "vitkit",
                             "train", *args, "train.max_steps=400", "train.log_every=1", f"run.dir={run}"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        _wait_for_step(run, proc, 2, 300)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0
    stopped = [line for line in out.splitlines() if "stopped by SIGTERM at step" in line]
    assert len(stopped) == 1, out[-3000:]  # rank 0 speaks for both
    step = load_checkpoint_dir(run)["state"]["step"]
    assert f"at step {step}/" in stopped[0]
    assert "timed out" not in out.lower() and "watchdog" not in out.lower(), out[-3000:]
