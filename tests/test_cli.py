"""The CLI: help, models/profile output, clear errors, and the README's generated models table being current."""
import os
import subprocess
import sys

import pytest

from vitkit.cli import main
from vitkit.commands.models import README_END, README_START, markdown, model_rows

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_models_and_profile_commands(capsys):
    assert main(["models", "vit_base*"]) == 0
    out = capsys.readouterr().out
    assert "vit_base_patch16_224" in out and "86.57" in out and "17.56" in out
    assert main(["profile", "vit_tiny_patch16_224"]) == 0
    out = capsys.readouterr().out
    assert "blocks.11" in out and "paper 1.25" in out


def test_unknown_model_is_one_clear_line(capsys):
    assert main(["profile", "vit_bse_patch16_224"]) == 2
    err = capsys.readouterr().err
    assert "unknown model" in err and "vit_base_patch16_224" in err


def test_python_dash_m_entry_point():
    r = subprocess.run([sys.executable, "-m", "vitkit", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "models" in r.stdout and "profile" in r.stdout


def test_convert_writes_loadable_safetensors(tmp_path):
    import torch

    import vitkit

    src = vitkit.create_model("vit_tiny_patch16_224", num_classes=4)
    pth = tmp_path / "in.pth"
    torch.save({"model": src.state_dict()}, pth)
    out = tmp_path / "out.safetensors"
    assert main(["convert", str(pth), str(out), "--model", "vit_tiny_patch16_224", "--num-classes", "4"]) == 0
    dst = vitkit.create_model("vit_tiny_patch16_224", num_classes=4, weights=str(out))
    torch.testing.assert_close(dst.state_dict(), src.state_dict())


def test_readme_models_table_is_generated_and_current():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    table = readme.split(README_START, 1)[1].split(README_END, 1)[0].strip()
    expected = markdown(model_rows())
    if table != expected:
        pytest.fail("README models table is stale: run `vitkit models --update-readme README.md`")
