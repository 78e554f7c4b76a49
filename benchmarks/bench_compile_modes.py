"""Compile time and steady training step of vitkit models under each ``torch.compile`` dynamic-shape mode.

``dynamic=False`` (static shapes), ``dynamic=None`` (torch's default, "automatic dynamic": static at first, one
recompile with symbolic sizes when an input size changes) and ``dynamic=True`` (symbolic sizes from the first
call), each with vitkit's Inductor options, in a fresh process with an empty Inductor cache (no cached kernels
or graphs from an earlier run). A training step is forward + cross-entropy + backward + vitkit's AdamW at one
fixed input size; the first step pays the compile. ``--resize`` adds one step at a second size afterwards (what
automatic dynamic's recompile costs when a size changes). Times by the process CPU clock (use
TORCHINDUCTOR_COMPILE_THREADS=1 so the compile runs in this process and is counted), the CPU time of the C++
compiler processes Inductor starts (``children``), and the wall clock.

Usage: TORCHINDUCTOR_COMPILE_THREADS=1 python benchmarks/bench_compile_modes.py --models swin_tiny_patch4_window7_224
       [--modes false,none,true] [--batch 2] [--steps 4] [--threads 1] [--resize 192] [--out results/x.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

MODES = {"false": False, "none": None, "true": True}


def one_run(name: str, mode: str, batch: int, steps: int, threads: int, resize: int | None) -> dict:
    """Runs in the child process: compile ``name`` with ``dynamic=MODES[mode]``, time the steps."""
    import torch

    import vitkit
    from vitkit.analysis import benchmark as B
    from vitkit.engine.optim import build_optimizer
    from vitkit.models.compile import maybe_compile

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = vitkit.create_model(name).train()
    x = torch.randn(batch, 3, 224, 224)  # image models
    target = torch.zeros(batch, dtype=torch.long)
    opt = build_optimizer(model, 1e-4, 0.05)
    compiled = maybe_compile(model, dynamic=MODES[mode])
    cpu, wall, kids = [], [], []
    for _ in range(steps):
        t, w, c = time.process_time(), time.perf_counter(), B.children_cpu_time()
        B.train_step(compiled, x, target, opt)
        cpu.append(time.process_time() - t)
        wall.append(time.perf_counter() - w)
        kids.append(B.children_cpu_time() - c)
    out = {"model": name, "dynamic": MODES[mode], "batch": batch, "input": list(x.shape), "step_cpu_s": cpu,
           "step_wall_s": wall, "step_children_cpu_s": kids, "first_step_cpu_s": cpu[0],
           "first_step_children_cpu_s": kids[0], "first_step_wall_s": wall[0],
           "steady_step_cpu_s": sorted(cpu[1:])[(len(cpu) - 2) // 2] if len(cpu) > 1 else None}
    if resize:
        xr = torch.nn.functional.interpolate(x, size=(resize, resize), mode="bilinear")
        t, w = time.process_time(), time.perf_counter()
        B.train_step(compiled, xr, target, opt)
        out["resize"] = {"input": list(xr.shape), "step_cpu_s": time.process_time() - t,
                         "step_wall_s": time.perf_counter() - w}
        t = time.process_time()
        B.train_step(compiled, xr, target, opt)
        out["resize"]["second_step_cpu_s"] = time.process_time() - t
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="swin_tiny_patch4_window7_224")
    ap.add_argument("--modes", default="false,none,true")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4, help="steps at the fixed size, the first included")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--resize", type=int, default=None, help="then one step at this image size")
    ap.add_argument("--out", default=None, help="JSON, rewritten after every run")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        name, mode = args.child.split(":")
        print(json.dumps(one_run(name, mode, args.batch, args.steps, args.threads, args.resize)))
        return
    from vitkit.analysis import benchmark as B

    results = {"benchmark": "compile time and steady training step per torch.compile dynamic mode",
               "command": " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]]),
               "compile_threads": os.environ.get("TORCHINDUCTOR_COMPILE_THREADS"), "runs": []}
    for name in args.models.split(","):
        for mode in args.modes.split(","):
            before = B.machine_load()
            with tempfile.TemporaryDirectory() as cache:
                env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache)
                cmd = [sys.executable, __file__, "--child", f"{name}:{mode}", "--batch", str(args.batch),
                       "--steps", str(args.steps), "--threads", str(args.threads)]
                if args.resize:
                    cmd += ["--resize", str(args.resize)]
                p = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if p.returncode != 0:
                print(p.stderr[-3000:], file=sys.stderr)
                run = {"model": name, "dynamic": MODES[mode], "error": p.stderr[-500:]}
            else:
                run = json.loads(p.stdout.strip().splitlines()[-1])
            run["load_before"], run["load_after"] = before["load_avg"], B.machine_load()["load_avg"]
            results["runs"].append(run)
            print(json.dumps({k: v for k, v in run.items() if k != "error"}), flush=True)
            if args.out:
                with open(args.out, "w") as f:
                    json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
