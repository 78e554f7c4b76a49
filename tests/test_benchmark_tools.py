"""Benchmark tooling: memory and attention-MAC counters on constructed cases, scaling exponents, peers, the
README table generator and the ``vitkit benchmark`` command. Nothing here asserts on a timing."""
from __future__ import annotations

import importlib.util
import json
import os

import pytest
import torch
import torch.nn as nn

import vitkit
from vitkit.analysis import benchmark as B
from vitkit.analysis.plots import loglog_slope

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _readme_table():
    spec = importlib.util.spec_from_file_location("readme_table", os.path.join(ROOT, "benchmarks", "readme_table.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Widen(nn.Module):
    """Two 4x-wide temporaries alive at once, then their product: peak = 3 * 4 * input bytes."""

    def forward(self, x):
        a = x.repeat(1, 4)
        b = a * 2
        return a * b


class Chain(nn.Module):
    """Ten element-wise steps that drop the previous result: peak = two input-sized tensors."""

    def forward(self, x):
        for _ in range(10):
            x = x + x  # no wrapped Python scalar: the allocator sees those too
        return x


def test_forward_memory_counts_allocated_bytes():
    x = torch.randn(1, 1000)  # 4000 bytes, not counted (it exists before the forward)
    assert B.forward_memory(Widen(), x) == 3 * 16000
    assert B.forward_memory(Chain(), x) == 2 * 4000  # freed intermediates are released, not accumulated


def test_train_memory_sees_what_compiled_kernels_allocate():
    """The CPU count is the allocator's, so a compiled step's activations are in it: the GELU's 4 MB input is
    kept for the backward in either form (an op-level count of Python-visible tensors saw none of Inductor's)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 4096), nn.GELU(), nn.Linear(4096, 8))
    x = torch.randn(256, 64)
    activation = 256 * 4096 * 4
    eager = B.train_memory(model, x)
    compiled = torch.compile(model)
    B.train_memory(compiled, x)  # the compile
    peak = B.train_memory(compiled, x)
    assert activation <= peak and activation <= eager
    assert 0.5 < peak / eager < 2


def test_train_memory_counts_the_optimiser_it_is_given():
    """bench_train reports each library's peak with its own optimiser: the count steps with what
    ``make_optimizer`` builds, whose state is part of the peak (AdamW's two float32 moments: 8 MB for a 4 MB
    weight; plain SGD keeps none)."""
    torch.manual_seed(0)
    model = nn.Linear(1024, 1024)
    x = torch.randn(2, 1024)
    weights = 1024 * 1025 * 4
    adamw = B.train_memory(model, x)
    sgd = B.train_memory(model, x, make_optimizer=lambda _name, m: torch.optim.SGD(m.parameters(), lr=0.1))
    assert weights <= sgd < 1.5 * weights and adamw >= sgd + 2 * weights


def test_forward_memory_grows_with_batch_for_a_real_model():
    model = vitkit.create_model("vit_demo_patch4_32")
    m1 = B.forward_memory(model, torch.randn(1, 3, 32, 32))
    m4 = B.forward_memory(model, torch.randn(4, 3, 32, 32))
    assert 0 < m1 < m4 <= 4 * m1 + 1024


def test_attention_macs_closed_form_vit():
    # per layer: heads * N^2 * (d_qk + d_v) = N^2 * 2 * D for N = 65 tokens (64 patches + class), D = 128
    model = vitkit.create_model("vit_demo_patch4_32")
    assert B.attention_macs(model, torch.randn(1, 3, 32, 32)) == 6 * 65**2 * 2 * 128


def test_attention_cost_quadratic_for_vit_linear_for_swin():
    # counted at two sizes on narrow models: ViT's global attention grows with pixels^~2 (N^2, N = 196 / 784
    # patches + class token), Swin's fixed windows with pixels^1 exactly
    def attn(name, s, **narrow):
        model = vitkit.create_model(name, img_size=s, **narrow)
        return B.attention_macs(model, torch.zeros(1, 3, s, s))

    vit = [attn("vit_tiny_patch16_224", s, depth=2, embed_dim=48, num_heads=1) for s in (224, 448)]
    assert vit[0] == 2 * 197**2 * 2 * 48
    assert loglog_slope([224**2, 448**2], vit) == pytest.approx(2.0, abs=0.01)
    if "swin_tiny_patch4_window7_224" in vitkit.list_models():
        narrow = dict(embed_dim=12, depths=(2, 2, 2, 2), num_heads=(1, 1, 1, 1))
        swin = [attn("swin_tiny_patch4_window7_224", s, **narrow) for s in (224, 448)]
        assert loglog_slope([224**2, 448**2], swin) == pytest.approx(1.0, abs=1e-9)


def test_loglog_slope():
    assert loglog_slope([1, 2, 4, 8], [3, 12, 48, 192]) == pytest.approx(2.0)
    assert loglog_slope([10, 100], [5, 50]) == pytest.approx(1.0)


def test_peer_model_errors_name_the_choices():
    with pytest.raises(ValueError, match="timm or torchvision|'timm' or 'torchvision'"):
        B.peer_model("vit_base_patch16_224", "mmpretrain")
    with pytest.raises(ValueError, match="no torchvision counterpart"):
        B.peer_model("vit_demo_patch4_32", "torchvision")
    with pytest.raises(ValueError, match="timm has no model"):
        B.peer_model("vit_demo_patch4_32", "timm")


def test_compare_with_timm_same_weights_side_by_side():
    rows, notes = B.compare("vit_tiny_patch16_224", ["timm"], batch=1, dtypes=("fp32",), iters=1,
                            peaks={"fp32": 1e11})
    assert [r.impl for r in rows] == ["vitkit", "timm"]
    assert "same weights" in notes["timm"]
    ours = rows[0]
    assert set(ours.ratios) == {"timm"} and ours.ratios["timm"] > 0
    assert ours.macs_per_item == vitkit.profile("vit_tiny_patch16_224").macs
    assert all(r.extra["peak_mem_mb"] > 0 for r in rows)


def test_readme_block_replacement_touches_only_the_block():
    rt = _readme_table()
    text = f"# title\nintro\n{rt.START}\nold table\n{rt.END}\nrest of the file\n"
    new = rt.replace_block(text, "| a |\n|---|")
    assert new == f"# title\nintro\n{rt.START}\n| a |\n|---|\n{rt.END}\nrest of the file\n"
    assert rt.replace_block(new, "x") == f"# title\nintro\n{rt.START}\nx\n{rt.END}\nrest of the file\n"
    with pytest.raises(ValueError, match="speed-table:start"):
        rt.replace_block("no markers", "x")


def test_readme_table_from_the_registry(tmp_path):
    rt = _readme_table()
    readme = tmp_path / "README.md"
    readme.write_text(f"keep me\n{rt.START}\n{rt.END}\nand me\n")
    out = tmp_path / "table.json"
    rc = rt.main(["--pattern", "vit_*patch16_224", "--no-throughput", "--readme", str(readme), "--json", str(out)])
    assert rc == 0
    text = readme.read_text()
    assert text.startswith("keep me\n") and text.endswith("and me\n")
    row = next(line for line in text.splitlines() if "`vit_base_patch16_224`" in line)
    info = vitkit.model_info("vit_base_patch16_224")
    assert f"{info.top1:.1f}" in row and "86.57 / 86.57" in row and "17.56 / 17.56" in row
    data = json.loads(out.read_text())
    assert {r["model"] for r in data["rows"]} == set(vitkit.list_models("vit_*patch16_224", include_demo=False))
    assert rt.main(["--pattern", "no_such_model*", "--no-throughput", "--readme", str(readme)]) == 2


def test_cli_benchmark_writes_json_and_scaling_plot(tmp_path):
    from PIL import Image

    from vitkit.cli import main

    rc = main(["benchmark", "vit_demo_patch4_32", "--batch", "2", "--iters", "1", "--dtypes", "fp32",
               "--sizes", "32,64", "--out", str(tmp_path)])
    assert rc == 0
    data = json.loads((tmp_path / "vit_demo_patch4_32.json").read_text())
    assert data["rows"][0]["impl"] == "vitkit" and data["rows"][0]["extra"]["peak_mem_mb"] > 0
    sc = data["scaling"]["vit_demo_patch4_32"]
    assert sc["size"] == [32, 64] and sc["pixels"] == [1024, 4096]
    assert sc["attn_gmacs"][1] / sc["attn_gmacs"][0] == pytest.approx((257 / 65) ** 2)
    with Image.open(tmp_path / "vit_demo_patch4_32_scaling.png") as im:
        assert im.size[0] > 300
    row = data["rows"][0]  # the spread over the rounds, and how busy the machine was
    assert row["rounds"] == 1 and row["latency_min_ms"] <= row["latency_ms"] <= row["latency_max_ms"]
    assert "load_avg" in data["environment"] and data["environment"]["cpu_count"] >= 1
    assert main(["benchmark", "vit_demo_patch4_32", "--dtypes", "fp64", "--out", str(tmp_path)]) == 2


def test_cli_benchmark_keeps_existing_results_and_refuses_impossible_peaks(tmp_path, monkeypatch, capsys):
    from vitkit.cli import main

    args = ["benchmark", "vit_demo_patch8_32", "--batch", "2", "--iters", "3", "--dtypes", "fp32", "--out",
            str(tmp_path)]
    committed = tmp_path / "vit_demo_patch8_32.json"
    committed.write_text('{"committed": true}')
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "machine load (1/5/15 min)" in out and "min-max ms" in out
    assert json.loads(committed.read_text()) == {"committed": True}  # not overwritten by default
    new = [p for p in tmp_path.glob("vit_demo_patch8_32-*.json")]
    assert len(new) == 1 and len(json.loads(new[0].read_text())["rows"][0]) > 5
    assert main([*args, "--overwrite"]) == 0
    assert "rows" in json.loads(committed.read_text())
    # a "peak" far below what the model then reaches: > 100 % of peak is refused and nothing is written
    monkeypatch.setattr(B, "matmul_peak", lambda *a, **k: 1.0)
    before = sorted(tmp_path.iterdir())
    assert main(args) == 2
    assert "above 100 %" in capsys.readouterr().err
    assert sorted(tmp_path.iterdir()) == before


def test_peak_fraction_check_and_free_path(tmp_path):
    row = B.BenchRow("vitkit", "m", "fp32", 1, 10.0, 100.0, 10, 0.5)
    B.check_peak_fractions([row])
    row.frac_peak = 1.3
    with pytest.raises(ValueError, match="130 %"):
        B.check_peak_fractions([row])
    p = tmp_path / "r.json"
    assert B.free_path(str(p)) == str(p)
    p.write_text("{}")
    alt = B.free_path(str(p))
    assert alt != str(p) and alt.startswith(str(tmp_path / "r-")) and alt.endswith(".json")
    assert B.free_path(str(p), overwrite=True) == str(p)


def test_paired_ratios_come_from_the_same_rounds():
    """A machine that slows down between rounds moves both implementations' latencies: the ratio within each
    round stays put, and that is the spread reported beside the median ratio."""
    ours = B.BenchRow("vitkit", "m", "bf16", 8, 1.0, 100.0, 1, 0.1, round_ms=[100.0, 200.0, 150.0])
    peer = B.BenchRow("timm", "m", "bf16", 8, 0.8, 125.0, 1, 0.1, round_ms=[130.0, 240.0, 180.0])
    alone = B.BenchRow("tv", "m", "bf16", 8, 0.5, 200.0, 1, 0.1)  # not timed round-robin: no pairs
    rows = [ours, peer, alone]
    B.add_ratios(rows)
    assert ours.ratios == pytest.approx({"timm": 1.25, "tv": 2.0})
    assert list(ours.paired_ratios) == ["timm"] and ours.paired_ratios["timm"] == pytest.approx((1.2, 1.2, 1.3))
    assert "timm 1.25x [1.20-1.30], tv 2.00x" in B.format_table(rows)


def test_interleaved_and_forward_timing_use_the_chosen_clock(monkeypatch):
    ticks = iter(range(0, 10_000, 2))  # a fake clock: every reading 2 s later than the one before
    monkeypatch.setitem(B.CLOCKS, "cpu", lambda: float(next(ticks)))
    model, x = nn.Linear(4, 4), torch.randn(2, 4)
    res = B.time_interleaved({"a": model, "b": model}, x, iters=3, clock="cpu")
    assert res["a"]["all"] == [2.0, 2.0, 2.0] and res["b"]["seconds"] == 2.0
    assert B.time_forward(model, x, iters=2, clock="cpu")["all"] == [2.0, 2.0]
    rows = B.measure_interleaved({"a": model}, "lin", x, 16, {"fp32": 1e9}, ("fp32",), iters=2, clock="cpu")
    assert rows[0].latency_ms == 2000.0 and rows[0].round_ms == [2000.0, 2000.0]


def test_bench_train_writes_json_after_every_model(tmp_path, monkeypatch):
    """A run stopped part-way (here: interrupted in the second model) keeps the first model's rows on disk."""
    spec = importlib.util.spec_from_file_location("bench_train", os.path.join(ROOT, "benchmarks", "bench_train.py"))
    bt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bt)
    monkeypatch.setattr(B, "matmul_peak", lambda *a, **k: 1e12)

    def fake_run_model(name, *args, **kwargs):
        if name == "swin_tiny_patch4_window7_224":
            raise KeyboardInterrupt
        return [B.BenchRow("vitkit", name, "fp32", 8, 10.0, 800.0, 1, 0.5,
                           extra={"first_step_s": 1.0, "first_step_wall_s": 1.0, "peak_train_mem_mb": 1.0})]

    monkeypatch.setattr(bt, "run_model", fake_run_model)
    out = tmp_path / "train.json"
    args = ["--models", "vit_small_patch16_224,swin_tiny_patch4_window7_224", "--dtypes", "fp32", "--threads", "1",
            "--out", str(out)]
    with pytest.raises(KeyboardInterrupt):
        bt.main(args)
    data = json.loads(out.read_text())
    assert data["complete"] is False and data["models_done"] == ["vit_small_patch16_224"]
    assert data["command"].startswith("benchmarks/bench_train.py --models vit_small_patch16_224,swin")
    assert [r["model"] for r in data["rows"]] == ["vit_small_patch16_224"] and data["load_after"]["load_avg"]
    assert bt.main([*args[:1], "vit_small_patch16_224", *args[2:], "--overwrite"]) == 0
    assert json.loads(out.read_text())["complete"] is True


def test_train_timing_reports_child_process_cpu():
    """The first step's CPU time in child processes (Inductor's C++ compiler) is reported beside the process's."""
    import subprocess
    import sys

    before = B.children_cpu_time()
    subprocess.run([sys.executable, "-c", "sum(range(3 * 10**6))"], check=True)
    assert B.children_cpu_time() > before
    for fresh in (False, True):  # fresh: the warm-up runs with empty Inductor caches in a folder removed after
        res = B.time_train_interleaved({"m": nn.Linear(4, 3)}, torch.randn(2, 4), rounds=1, clock="cpu",
                                       fresh_compile_cache=fresh)
        assert res["m"]["first_children_s"] >= 0.0 and res["m"]["first_s"] >= 0.0


def test_dense_kernels_include_onednn_linear():
    """vitkit's bf16 training and fused inference GEMMs run as oneDNN's linear: the Amdahl split counts them as the
    dense arithmetic they are, like aten's matrix products."""
    from vitkit.analysis.step_profile import is_dense

    assert is_dense("mkldnn::_linear_pointwise") and is_dense("aten::addmm") and is_dense("aten::mm")
    assert not is_dense("aten::gelu") and not is_dense("aten::copy_")


def test_step_profiles_step_each_model_with_the_optimiser_the_timed_step_uses():
    """bench_train times each library with its own optimiser; its per-op profile and fault count must profile that
    step, not torch's default AdamW for all: with fused AdamW the table shows the fused kernel and none of the
    per-tensor update ops, without ``make_optimizer`` the per-tensor ones."""
    from vitkit.analysis.step_profile import count_step_faults, profile_train_steps

    models = {"fused": nn.Sequential(nn.Flatten(), nn.Linear(12, 3)),
              "plain": nn.Sequential(nn.Flatten(), nn.Linear(12, 3))}
    x = torch.randn(2, 3, 2, 2)
    made = []

    def make(name, model):
        made.append(name)
        return torch.optim.AdamW(model.parameters(), lr=1e-3, fused=name == "fused")

    tables = profile_train_steps(models, x, runs=1, make_optimizer=make)
    assert sorted(made) == ["fused", "plain"]
    assert "aten::_fused_adamw_" in tables["fused"].ops and "aten::lerp_" not in tables["fused"].ops
    assert "aten::_fused_adamw_" not in tables["plain"].ops
    default = profile_train_steps({"fused": models["fused"]}, x, runs=1)
    assert "aten::_fused_adamw_" not in default["fused"].ops
    count_step_faults(models, x, make_optimizer=make)
    assert sorted(made) == ["fused", "fused", "plain", "plain"]


def test_page_faults_are_booked_to_the_op_that_touches_fresh_pages():
    """A tensor on fresh pages (64 MB of a new anonymous mapping: malloc could serve ``torch.empty`` from heap
    memory an earlier test touched) takes its page faults in the op that first writes it, one per 4 KiB page or
    fewer (huge pages); a write into memory already touched takes none; the step counter gives every model a table
    and the formatter names each op and total."""
    import mmap

    resource = pytest.importorskip("resource")
    from vitkit.analysis.step_profile import PageFaults, count_step_faults, format_fault_tables

    reused = torch.zeros(16 * 2**20)
    fresh_pages = mmap.mmap(-1, 16 * 2**20 * 4)
    fresh = torch.frombuffer(fresh_pages, dtype=torch.float32)
    with PageFaults() as seen:
        fresh.fill_(1.0)
        reused.fill_(2.0)
    fill = seen.ops["aten.fill_.Scalar"]
    assert fill[1] == 2 and 0 < fill[0] <= 16 * 2**20 * 4 // resource.getpagesize() + 64, fill
    with PageFaults() as again:
        reused.fill_(3.0)
    assert again.ops["aten.fill_.Scalar"][0] < 64
    counts = count_step_faults({"a": nn.Sequential(nn.Flatten(), nn.Linear(12, 3))}, torch.randn(2, 3, 2, 2))
    assert "aten.addmm.default" in counts["a"] and counts["a"]["aten.addmm.default"][1] == 1
    text = format_fault_tables(counts, top=100)
    assert "aten.addmm.default" in text and "a: " in text and "minor page faults in the step" in text


@pytest.mark.parametrize("setting,off,on", [("allocator", "default", "reuse"), ("huge_pages", "default", "advised"),
                                            ("subnormals", "floor", "flushed"),
                                            ("dw_batch", "small chunks", "large chunks"),
                                            ("fp32_onednn", "addmm", "onednn"), ("pointwise2d", "conv", "product"),
                                            ("rebuild", "kept", "rebuilt"), ("dense_heads", "views", "dense"),
                                            pytest.param("compiled_depthwise", "traced", "operators",
                                                         marks=pytest.mark.slow),
                                            pytest.param("compiled_softmax", "plain", "floored",
                                                         marks=pytest.mark.slow),
                                            pytest.param("compiled_materialize", "inlined", "materialized",
                                                         marks=pytest.mark.slow),
                                            pytest.param("compiled_flush", "plain", "flushed",
                                                         marks=pytest.mark.slow)])
def test_bench_allocator_compares_the_same_step_with_and_without_the_setting(tmp_path, setting, off, on):
    """One model, one precision, one round: both sides timed, faults counted, peaks measured, the JSON written."""
    from vitkit.engine import allocator
    from vitkit.layers import conv_blocks, depthwise, fused, heads, huge_pages, rebuild, subnormals
    from vitkit.layers.attention import _COMPILED_FLOOR, _COMPILED_FLUSH
    from vitkit.layers.materialize import _MATERIALIZE

    if not allocator.supported():
        pytest.skip("needs glibc malloc without a preloaded allocator")
    if setting == "huge_pages" and not huge_pages.supported():
        pytest.skip("transparent huge pages are not given on request here")
    spec = importlib.util.spec_from_file_location("bench_allocator",
                                                  os.path.join(ROOT, "benchmarks", "bench_allocator.py"))
    ba = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ba)
    out = tmp_path / "allocator.json"
    assert ba.main(["--setting", setting, "--models", "vit_small_patch16_224", "--dtypes", "fp32", "--rounds", "1",
                    "--batch", "1", "--out", str(out)]) == 0
    row, = json.loads(out.read_text())["allocator_rows"]
    assert (row["model"], row["dtype"], row["rounds"], row["setting"]) == ("vit_small_patch16_224", "fp32", 1, setting)
    for side in (off, on):
        assert len(row[side]["round_ms"]) == 1 and row[side]["faults_per_step"] >= 0 and row[side]["peak_mb"] > 0
    assert row["ratio"] == pytest.approx(row[off]["median_ms"] / row[on]["median_ms"])
    assert huge_pages._ADVISE.on and subnormals._FLUSH.on  # left as they were
    assert conv_blocks._LARGE_CHUNKS.on is True and depthwise._COMPILED_OPERATORS.on is True
    assert _COMPILED_FLOOR.on is True and _COMPILED_FLUSH.on is True and _MATERIALIZE.on is True
    assert fused._FP32_TRAINING.on is True and conv_blocks._POINTWISE_PRODUCTS.on is True and rebuild._REBUILD.on
    assert heads._DENSE_HEADS.on is True


def test_bench_train_pairs_train_at_their_architectures_drop_path_rate():
    """Both sides of a training pair do the drop-path work their paper's training does: vitkit at its variant's
    recipe rate, the peer (built with its library's keyword) at the rate of the architecture it implements, e.g.
    timm's Swin-T at 0.2 beside UniFormer-S at 0.1, not the builders' defaults (timm's Swin-T 0.1, ViT 0)."""
    spec = importlib.util.spec_from_file_location("bench_train", os.path.join(ROOT, "benchmarks", "bench_train.py"))
    bt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bt)
    from vitkit.engine.recipe import find_recipe, load_recipe

    for name, (lib, peer_name, _) in bt.SUITE.items():
        assert 0.0 < bt.TRAIN_DROP_PATH[name] < 0.5
        bt.drop_path_kwargs(lib, peer_name)  # every peer resolves to an architecture with a rate (else KeyError)
    # where vitkit ships the paper's training recipe, the table says what the recipe trains with
    shipped = {"swin_tiny_patch4_window7_224": "imagenet", "uniformer_small": "imagenet",
               "mvit_base_16x4": "kinetics", "uniformer_small_16x4": "kinetics"}
    for name, folder in shipped.items():
        recipe = load_recipe(find_recipe(f"{folder}/{name}"))
        assert recipe.model.name == name and recipe.model.config["drop_path_rate"] == bt.TRAIN_DROP_PATH[name]
    assert bt.drop_path_kwargs("timm", "swin_tiny_patch4_window7_224") == {"drop_path_rate": 0.2}
    assert bt.drop_path_kwargs("torchvision", "video.mvit_v1_b") == {"stochastic_depth_prob": 0.2}
    timm_swin = B.build_peer("timm", "swin_tiny_patch4_window7_224", **bt.drop_path_kwargs(
        "timm", "swin_tiny_patch4_window7_224"))
    assert timm_swin.layers[-1].blocks[-1].drop_path1.drop_prob == pytest.approx(0.2)
    swin3d = B.build_peer("torchvision", "video.swin3d_t", **bt.drop_path_kwargs("torchvision", "video.swin3d_t"))
    assert swin3d.features[-1][-1].stochastic_depth.p == pytest.approx(0.1)
    mvit = bt._mvit_v1_b_at(4, 64, **bt.drop_path_kwargs("torchvision", "video.mvit_v1_b"))
    assert mvit.blocks[-1].stochastic_depth.p == pytest.approx(0.2)
