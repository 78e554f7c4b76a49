"""The run directory: one training at a time, no silent re-use, room and permission checked before the first step."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch.nn as nn

from vitkit.engine import checkpoint as ckpt
from vitkit.engine import rundir
from vitkit.engine.distributed import DistInfo
from vitkit.engine.recipe import find_recipe, load_recipe
from vitkit.engine.rundir import RunDirError, RunLock
from vitkit.engine.trainer import Trainer

TINY = ["model.patch_size=8", "model.embed_dim=32", "model.depth=2", "model.num_heads=2", "eval.batch_size=512",
        "train.workers=0", "train.batch_size=128", "schedule.epochs=1", "schedule.warmup_epochs=0"]


def _recipe(run_dir: Path, *extra: str):
    return load_recipe(find_recipe("demo/digits"), [*TINY, f"run.dir={run_dir}", *extra])


def _rows(run: Path, kind: str) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == kind]


def test_second_training_is_locked_out_and_a_finished_run_is_refused(tmp_path):
    run = tmp_path / "run"
    first = Trainer(_recipe(run, "train.max_steps=2", "eval.every=1"), quiet=True)
    with pytest.raises(RunDirError, match=r"in use by another training \(pid %d" % os.getpid()):
        Trainer(_recipe(run, "train.max_steps=2"), quiet=True)
    assert not (run / "recipe.yaml").exists(), "the locked-out run wrote into the directory"
    res = first.fit()  # releases the lock on exit
    # results.json describes the saved weights: max_steps stops mid-epoch, the final evaluation is at that step
    evals = _rows(run, "eval")
    assert evals[-1]["step"] == res.steps == 2
    assert json.loads((run / "results.json").read_text())["steps"] == 2

    before = (run / "metrics.jsonl").read_text()
    with pytest.raises(RunDirError, match="already holds a finished run") as e:
        Trainer(_recipe(run, "train.max_steps=1"), quiet=True)
    assert f"--resume {run}" in str(e.value) and "--overwrite" in str(e.value)
    assert (run / "metrics.jsonl").read_text() == before, "the refused run touched metrics.jsonl"

    Trainer(_recipe(run, "train.max_steps=1"), quiet=True, overwrite=True).fit()
    assert [r["step"] for r in _rows(run, "train")] == [1], "overwrite kept the old run's metrics"
    assert sorted(p.name for p in (run / "checkpoints").glob("step_*")) == ["step_0000001"]


def test_stale_lock_of_a_killed_process_is_taken_over(tmp_path):
    code = ("import os, signal, sys; from vitkit.engine.rundir import RunLock; "
            "lock = RunLock(sys.argv[1]).acquire(); os.kill(os.getpid(), signal.SIGKILL)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], env=env)
    assert proc.wait(timeout=120) == -9
    record = (tmp_path / ".lock").read_text()
    assert record.startswith(f"pid {proc.pid} "), record
    with RunLock(tmp_path) as lock:
        assert lock.stale and f"pid {proc.pid} " in lock.stale
        with pytest.raises(RunDirError, match="in use"):
            RunLock(tmp_path).acquire()
    assert (tmp_path / ".lock").read_text() == "", "a clean release leaves an empty record"
    with RunLock(tmp_path) as lock:
        assert lock.stale is None


def test_leftovers_of_interrupted_checkpoint_writes_are_removed(tmp_path):
    folder = tmp_path / "checkpoints"
    ckpt.save_checkpoint(folder, 1, nn.Linear(2, 2), {"step": 1})
    (folder / ".tmp-step_0000002-4242").mkdir()
    (folder / ".tmp-step_0000002-4242" / "model.safetensors").write_bytes(b"half")
    (folder / ".latest.tmp-4242").write_text("step_0000002")
    logged = []
    lock = rundir.claim(tmp_path, DistInfo(), resume=True, overwrite=False, needed=1000, keep=2, log=logged.append)
    try:
        assert sorted(p.name for p in folder.iterdir()) == ["latest", "step_0000001"]
        assert any("leftover" in m for m in logged)
    finally:
        lock.release()


@contextlib.contextmanager
def _small_fs(path: Path, size: str, read_only: bool = False):
    """A real tmpfs of ``size`` at ``path`` where the platform lets us mount one (root on Linux), else None."""
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if read_only else "")
    if shutil.which("mount") is None or os.geteuid() != 0 or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True).returncode != 0:
        yield None
        return
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_disk_full_is_found_before_the_first_step(tmp_path, monkeypatch):
    with _small_fs(tmp_path / "fs", "256k") as fs:
        if fs is None:  # simulated: the filesystem reports 256 KB free
            fs = tmp_path / "fs"
            real = shutil.disk_usage
            monkeypatch.setattr(rundir.shutil, "disk_usage",
                                lambda p: real(p)._replace(free=256 * 1024) if str(p).startswith(str(fs)) else real(p))
        with pytest.raises(RunDirError) as e:
            rundir.preflight(fs / "run", needed=200_000, keep=2)
        msg = str(e.value)
        assert "\n" not in msg and str(fs / "run") in msg and "free" in msg and "run.keep" in msg
        rundir.preflight(fs / "run2", needed=10_000, keep=2)  # what fits passes


def test_unwritable_run_directory_is_one_line(tmp_path, monkeypatch):
    with _small_fs(tmp_path / "ro", "64k", read_only=True) as fs:
        if fs is None:  # simulated: creating the probe file fails as on a read-only filesystem
            fs = tmp_path / "ro"
            (fs / "run").mkdir(parents=True)
            real_open = open

            def ro_open(file, mode="r", *a, **k):
                if str(file).startswith(str(fs)) and "w" in mode:
                    raise OSError(errno.EROFS, "Read-only file system", str(file))
                return real_open(file, mode, *a, **k)

            monkeypatch.setattr("builtins.open", ro_open)
            target = fs / "run"
        else:
            target = fs
        with pytest.raises(RunDirError, match="read-only") as e:
            rundir.preflight(target, needed=1000, keep=2)
        assert str(target) in str(e.value) and "\n" not in str(e.value)


def test_disk_full_during_a_checkpoint_write_is_cleaned_and_explained(tmp_path, monkeypatch):
    model = nn.Linear(256, 256)  # 257 KB of weights, more than the filesystem holds
    with _small_fs(tmp_path / "fs", "128k") as fs:
        if fs is None:  # simulated: the weights write fails with ENOSPC
            fs = tmp_path / "fs"

            import safetensors.torch as st

            real_save = st.save_file

            def full(tensors, *a, **k):
                if sum(t.numel() for t in tensors.values()) > 10_000:
                    raise OSError(errno.ENOSPC, "No space left on device")
                return real_save(tensors, *a, **k)

            monkeypatch.setattr("safetensors.torch.save_file", full)
        ckpt.save_checkpoint(fs, 1, nn.Linear(2, 2), {"step": 1})  # a small one fits
        with pytest.raises(RunDirError, match="disk full writing") as e:
            ckpt.save_checkpoint(fs, 2, model, {"step": 2})
        assert "\n" not in str(e.value) and "--resume" in str(e.value)
        assert not list(fs.glob(".tmp-*")), "the half-written checkpoint folder was left behind"
        assert ckpt.load_checkpoint_dir(fs)["state"]["step"] == 1
