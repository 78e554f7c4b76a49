"""The built wheel carries what a non-editable install needs: every recipe, class list and data file.

The wheel is built from a copy of the sources (pip, no build isolation: setuptools from this environment, no
index), inspected as a zip, then unpacked and imported from another directory to find its recipes as an
installed package does. Installing it into a fresh virtual environment and training is the slow test below.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "vitkit"


def _build_wheel(tmp: Path) -> Path:
    src = tmp / "checkout"
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / f, src / f)
    out = tmp / "dist"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "--no-index", "-w", str(out), str(src)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = out.glob("vitkit-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return _build_wheel(tmp_path_factory.mktemp("wheel"))


def test_wheel_carries_every_recipe_class_list_and_data_file(wheel, tmp_path):
    names = set(zipfile.ZipFile(wheel).namelist())
    data = sorted(p.relative_to(PKG.parent).as_posix() for p in PKG.rglob("*")
                  if p.suffix in (".yaml", ".txt", ".json") and "__pycache__" not in p.parts)
    assert any(d.startswith("vitkit/configs/imagenet/") for d in data)
    assert any(d.startswith("vitkit/data/classes/") for d in data)
    missing = [d for d in data if d not in names]
    assert not missing, f"not in the wheel: {missing}"
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "vitkit = vitkit.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("from vitkit.engine.recipe import find_recipe, load_recipe; from vitkit.data import class_names; "
            "p = find_recipe('imagenet/swin_tiny_patch4_window7_224'); r = load_recipe(p); "
            "print(p); print(r.model.name, len(class_names('kinetics400')))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(site)}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    path, line = proc.stdout.split("\n")[:2]
    assert Path(path).is_relative_to(site) and line == "swin_tiny_patch4_window7_224 400"


@pytest.mark.slow
def test_installed_wheel_trains_from_another_directory(wheel, tmp_path):
    """A fresh virtual environment, the wheel installed with the tested pins (from the local index), then the
    main job: `vitkit train` run from a directory that is not the checkout."""
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=600)
    pip = env_dir / "bin" / "pip"
    proc = subprocess.run([str(pip), "install", "-q", "-c", str(ROOT / "constraints.txt"), str(wheel)],
                          capture_output=True, text=True, timeout=3000)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = subprocess.run([str(env_dir / "bin" / "vitkit"), "train", "train.max_steps=3", "schedule.epochs=1",
                          f"run.dir={tmp_path / 'run'}", "--quiet"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=3000)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "run" / "model.safetensors").is_file() and "test top-1" in run.stdout
