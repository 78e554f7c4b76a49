"""benchmarks/gpu.py --smoke: the prepared GPU script runs its whole path on the CPU and writes its JSON."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"


def test_gpu_script_smoke(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("vitkit_gpu_bench", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "gpu.json"
    assert mod.main(["--smoke", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["smoke"] is True and data["failed"] == {}
    assert data["peak_source"] == "measured bf16 matmul peak" and data["matmul_peak_flops"]["bf16"] > 0
    rows = data["rows"]
    assert {r["model"].split(":")[0] for r in rows} == set(mod.SMOKE)
    assert {r["extra"]["kind"] for r in rows} == {"inference", "train"}
    vit_train = [r for r in rows if r["model"].startswith("vit:") and r["extra"]["kind"] == "train"]
    assert {r["impl"] for r in vit_train} == {"vitkit", "timm"}
    assert "timm" in next(r for r in vit_train if r["impl"] == "vitkit")["ratios"]
    # a peer of another architecture (UniFormer against Swin-T / MViT-B on the GPU) is named by its model
    uni_train = [r for r in rows if r["model"].startswith("uniformer:") and r["extra"]["kind"] == "train"]
    assert {r["impl"] for r in uni_train} == {"vitkit", "timm vit_tiny_patch16_224"}
    assert "timm vit_tiny_patch16_224" in next(r for r in uni_train if r["impl"] == "vitkit")["ratios"]
    for r in rows:
        assert r["items_per_s"] > 0 and r["frac_peak"] > 0 and r["macs_per_item"] > 0
        assert (r["extra"].get("peak_train_mem_mb") or r["extra"].get("peak_mem_mb")) > 0
    # fp32 logits and gradients agree with a float64 copy (on the GPU this checks the device's kernels)
    assert set(data["agreement"]) == set(mod.SMOKE)
    for fam, a in data["agreement"].items():
        assert a["logits_rel_err"] < 1e-5 and a["grad_rel_err"] < 1e-5 and a["grads_missing"] == 0, (fam, a)
    assert "MFU" in capsys.readouterr().out
    # a known GPU name maps to its published peak
    assert dict(mod.BF16_PEAKS)["H200"] == 989e12


def test_gpu_probe_smoke(tmp_path):
    """benchmarks/gpu_probe.py --smoke: every probe runs on the CPU with tiny models and writes its report."""
    spec = importlib.util.spec_from_file_location("vitkit_gpu_probe", SCRIPT.with_name("gpu_probe.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    from vitkit.layers import conv_blocks, depthwise

    before = (depthwise.gpu_depthwise_input, conv_blocks.DepthwiseConv2d.forward)
    assert mod.main(["--smoke", "--out", str(tmp_path)]) == 0
    # the layout A/B's patches are undone
    assert (depthwise.gpu_depthwise_input, conv_blocks.DepthwiseConv2d.forward) == before
    report = (tmp_path / "probe.txt").read_text()
    assert "FAILED" not in report, report
    for title in ("## breaks", "## host", "## layout A/B", "## layouts"):
        assert title in report
    assert "train: graphs 1, breaks 0" in report and "eval: graphs 1, breaks 0" in report
    # both layouts timed for every depthwise shape found, 2-D (UniFormer) and 3-D (MViT)
    layout_rows = report.split("## layouts")[1].strip().splitlines()[1:]
    assert any("uniformer" in r for r in layout_rows) and any("mvit" in r for r in layout_rows)
    assert all("contiguous first" in r and "channels-last first" in r for r in layout_rows)


def test_gpu_script_trains_both_sides_at_the_paper_drop_path_rate():
    """The GPU run's training pairs follow bench_train.py's rule: each architecture at its paper's rate, on both
    sides (UniFormer-S at 0.1 beside Swin-T at 0.2); the smoke models, outside that table, keep their keywords."""
    spec = importlib.util.spec_from_file_location("vitkit_gpu_bench", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    _, own, _, _, peer, _, _ = mod.with_training_drop_path(mod.FULL["uniformer"])
    assert own == {"drop_path_rate": 0.1} and peer == {"drop_path_rate": 0.2}
    _, own, _, _, peer, _, _ = mod.with_training_drop_path(mod.FULL["mvit"])
    assert own == {"drop_path_rate": 0.2} and peer == {"stochastic_depth_prob": 0.2}
    _, own, _, _, peer, _, _ = mod.with_training_drop_path(mod.FULL["swin3d"])
    assert own == {"drop_path_rate": 0.1} and peer == {}  # torchvision's swin3d_t fixes its 0.1
    assert mod.with_training_drop_path(mod.SMOKE["vit"]) == mod.SMOKE["vit"]
