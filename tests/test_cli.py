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


def test_help_does_not_load_torch():
    code = ("import sys; from vitkit.cli import build_parser; build_parser().format_help(); "
            "print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": os.path.join(ROOT, "src")})
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr


def test_train_help_lists_the_recipes(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    demo = next(line for line in out.splitlines() if line.strip().startswith("demo/:"))
    assert " digits," in demo and "motion_digits_mvit" in demo and "swin_tiny_patch4_window7_224" in out
    assert "_base_/" not in out and "imagenet_scratch" not in out


def test_recipe_dump_only_on_request_and_dry_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # a config error: one line on stderr, nothing dumped before it
    assert main(["train", "demo/digits", "--quiet", "train.clip_grad=-1"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "train.clip_grad must be > 0" in captured.err
    # --dry-run: checked, printed, nothing built; options and overrides in any order; a README-style path
    assert main(["train", "--dry-run", "configs/demo/digits.yaml", "schedule.epochs=1", "--quiet",
                 "optim.lr=1e-3"]) == 0
    captured = capsys.readouterr()
    assert "# resolved recipe" in captured.out and "lr: 0.001" in captured.out and "recipe OK" in captured.out
    assert "warm-up clipped" in captured.err
    assert not (tmp_path / "runs").exists()
    assert main(["train", "demo/digit", "--dry-run"]) == 2
    assert "did you mean demo/digits" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "demo/digits", "--no-such-option"])
    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err


def test_cached_model_counts_are_current():
    # the counts `vitkit models` shows without recounting: every variant recounted here must match the file
    import json

    import vitkit
    from vitkit.analysis.counts import COUNTS_FILE, fingerprint, recount

    cached = json.loads(COUNTS_FILE.read_text())
    names = vitkit.list_models()
    assert sorted(cached) == names, "run `vitkit models --update-counts`"
    for name in names:
        assert cached[name] == recount(name), f"{name}: cached counts stale; run `vitkit models --update-counts`"
        assert cached[name]["fingerprint"] == fingerprint(name)


def test_models_reads_cached_counts_and_counts_only_changed_rows(monkeypatch):
    import vitkit.analysis.counts as C

    counted = []
    real = C.recount
    monkeypatch.setattr(C, "recount", lambda name: counted.append(name) or real(name))
    monkeypatch.setattr(C, "_cache", None)
    rows = model_rows("vit_*")
    assert counted == [] and len(rows) > 5            # all from the cache
    C._load()["vit_demo_patch8_32"]["fingerprint"] = "edited"  # a variant changed since the file was written
    C._load()["vit_tiny_patch16_224"]["fingerprint"] = "edited"
    rows = model_rows("vit_demo*")
    assert counted == ["vit_demo_patch8_32"]          # counted now, and only the row shown
    assert [r for r in rows if r["name"] == "vit_demo_patch8_32"][0]["params_m"] > 0
    monkeypatch.setattr(C, "_cache", None)


def test_a_missing_optional_package_is_one_line_naming_its_install(monkeypatch, capsys):
    """On a plain install (no extras), `vitkit export --format onnx` and `vitkit benchmark --against timm` say which
    package is missing and how to install it, in one line with exit status 2, not a traceback (benchmark before
    it times anything); a missing module that is not an optional package still raises."""
    import sys

    from vitkit.cli import main, missing_package_message

    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx -> ModuleNotFoundError, as without the extra
    assert main(["export", "vit_demo_patch4_32", "--format", "onnx", "-o", "unused.onnx"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'onnx'" in err and "vitkit[export]" in err and err.startswith("vitkit export:")
    monkeypatch.setitem(sys.modules, "timm", None)
    assert main(["benchmark", "vit_demo_patch4_32", "--against", "timm"]) == 2
    out, err = capsys.readouterr()
    assert err.strip().count("\n") == 0 and "'timm'" in err and "pip install timm" in err
    assert "machine load" not in out  # said before anything is timed
    assert missing_package_message(ModuleNotFoundError("x", name="vitkit.nothing")) is None
