"""Follow-up probes for what ``benchmarks/gpu.py`` found on a lent GPU, in one short run (about 4 minutes).

1. ``grads`` (with ``--grads``): per-parameter relative error of a family's fp32 gradients on the GPU (TF32 off) against a float64
   copy on the CPU, worst first (``gpu.py`` reports only the whole-model figure).
2. ``profile``: the top CUDA kernels by self device time of one bf16 inference forward and one training step,
   vitkit beside its peer (``torch.profiler``).
3. ``mfu``: ViT-B/16 training steps at a larger batch with fused AdamW (eager; compiled at the end of the run),
   MFU against the published peak.
4. ``breaks``: ``torch._dynamo.explain`` on a family's forward: graph breaks and their reasons.
5. ``host``: per family, the host's time to issue a bf16 forward (no synchronise) beside the whole forward, vitkit
   and its peer, and vitkit MViT-B's ops by their own CPU time: is a step bound by the host?
6. ``layout A/B``: whole steps of UniFormer-S (image and video), MViTv2-T and MViT-B with every depthwise
   convolution on contiguous input against the layouts as they are, alternating.
7. ``layouts``: every depthwise convolution shape of MViTv2-T, UniFormer-S and MViT-B, forward + backward in bf16
   on contiguous and on channels-last input under ``cudnn.benchmark``: the first call (autotuning) and the median.

Usage: python benchmarks/gpu_probe.py [--out DIR] [--smoke]   (``--smoke``: the CPU, tiny models)
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import os
import sys
import time

import torch

import vitkit
from vitkit.analysis import benchmark as B

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpu import against_float64  # noqa: E402 - gpu.py's fp32-on-the-device against float64 comparison


def worst_grads(name: str, shape: tuple, device: torch.device, top: int = 8) -> list[tuple[str, float, float]]:
    """(parameter, |error| / |whole reference gradient|, own relative error) of the ``top`` parameters whose fp32
    device gradients differ most from float64 on the CPU (some gradients are 0 in exact arithmetic, such as a key
    bias under softmax, so their own relative error alone would rank noise first)."""
    torch.manual_seed(0)
    model = vitkit.create_model(name).eval()
    ref = copy.deepcopy(model)
    model.to(device)
    _, _, named = against_float64(model, ref, torch.randn(1, *shape), device)
    pairs = [(n, g.double().cpu(), r) for n, g, r in named]
    total = torch.cat([r.flatten() for _, _, r in pairs]).norm().item()
    rows = [(n, (g - r).norm().item() / total, (g - r).norm().item() / max(r.norm().item(), 1e-300))
            for n, g, r in pairs]
    return sorted(rows, key=lambda r: -r[1])[:top]


def kernel_table(fn, device: torch.device, top: int = 15, by_cpu: bool = False) -> str:
    """The profiler's table of one call of ``fn`` (after two warm-up calls), by self device time (or CPU time)."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(2):
        fn()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
    key = "self_cuda_time_total" if device.type == "cuda" and not by_cpu else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=top, max_name_column_width=60)


def profile_pair(ours: str, lib: str, peer: str, shape: tuple, batch: int, device: torch.device) -> str:
    """Kernel tables of bf16 inference and a bf16 training step, vitkit and the peer."""
    torch.manual_seed(0)
    models = {"vitkit": vitkit.create_model(ours).to(device), lib: B.build_peer(lib, peer).to(device)}
    x = torch.randn(batch, *shape, device=device)
    target = torch.zeros(batch, dtype=torch.long, device=device)
    out = []
    for impl, m in models.items():
        opt = torch.optim.AdamW(m.parameters(), lr=1e-4)

        def infer(m=m):
            m.eval()
            with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16):
                m(x)

        def train(m=m, opt=opt):
            m.train()
            B.train_step(m, x, target, opt, torch.bfloat16)

        out.append(f"== {impl} {ours if impl == 'vitkit' else peer} inference, bf16, batch {batch}\n"
                   + kernel_table(infer, device))
        out.append(f"== {impl} training step, bf16, batch {batch}\n" + kernel_table(train, device))
    return "\n".join(out)


def vit_mfu(batch: int, device: torch.device, peak: float, name: str = "vit_base_patch16_224",
            rounds: int = 10, compiled: bool = False) -> dict[str, float]:
    """Median bf16 training step of ViT at ``batch`` with fused AdamW (eager, or compiled), and its MFU."""
    from vitkit.models.compile import maybe_compile

    torch.manual_seed(0)
    model = vitkit.create_model(name).to(device).train()
    m = maybe_compile(model, compiled)
    macs = vitkit.profile(vitkit.create_model(name), (3, 224, 224)).macs
    x = torch.randn(batch, 3, 224, 224, device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    med = B.time_train_interleaved({"vitkit": m}, x, torch.bfloat16, warmup=3, rounds=rounds,
                                   make_optimizer=lambda _name, _m: opt)["vitkit"]["seconds"]
    return {"batch": batch, "compiled": compiled, "step_ms": med * 1e3, "mfu": 6 * macs * batch / med / peak}


def graph_breaks(name: str, shape: tuple, device: torch.device) -> str:
    """``torch._dynamo.explain`` of the forward in training and in inference (eval, no gradients: the paths differ,
    e.g. Swin's cached attention bias): graph count, break count, the first reasons."""
    import torch._dynamo

    m = vitkit.create_model(name).to(device)
    x = torch.randn(2, *shape, device=device)
    lines = []
    for mode, grad in (("train", True), ("eval", False)):
        torch._dynamo.reset()
        m.train(grad)
        with torch.set_grad_enabled(grad):
            ex = torch._dynamo.explain(m)(x)
        lines.append(f"{name} {mode}: graphs {ex.graph_count}, breaks {ex.graph_break_count}")
        lines += [f"    {getattr(b, 'reason', b)}"[:600] for b in ex.break_reasons[:6]]
    return "\n".join(lines)


#: family -> (vitkit name, peer library, peer name, item shape, batch), for ``host``
PAIRS = {"vit": ("vit_base_patch16_224", "timm", "vit_base_patch16_224", (3, 224, 224), 64),
         "swin": ("swin_tiny_patch4_window7_224", "timm", "swin_tiny_patch4_window7_224", (3, 224, 224), 64),
         "mvitv2": ("mvitv2_tiny", "timm", "mvitv2_tiny", (3, 224, 224), 64),
         "swin3d": ("swin3d_tiny", "torchvision", "video.swin3d_t", (3, 16, 224, 224), 4),
         "mvit": ("mvit_base_16x4", "torchvision", "video.mvit_v1_b", (3, 16, 224, 224), 4)}


def host_times(pairs: dict, device: torch.device, rounds: int = 10) -> str:
    """Per model: median ms to issue a bf16 inference forward (host clock, no synchronise) and for the whole
    forward (synchronised). Issue time near the whole time means the host bounds the step."""
    lines = []
    for family, (ours, lib, peer, shape, batch) in pairs.items():
        torch.manual_seed(0)
        x = torch.randn(batch, *shape, device=device)
        for impl, m in (("vitkit", vitkit.create_model(ours)), (lib, B.build_peer(lib, peer))):
            m = m.to(device).eval()
            issue, whole = [], []
            with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16):
                for i in range(rounds + 3):
                    B._sync(device)
                    t = time.perf_counter()
                    m(x)
                    t1 = time.perf_counter()
                    B._sync(device)
                    if i >= 3:
                        issue.append(t1 - t)
                        whole.append(time.perf_counter() - t)
            lines.append(f"  {family:<8}{impl:<12} issue {sorted(issue)[rounds // 2] * 1e3:7.2f} ms  "
                         f"whole {sorted(whole)[rounds // 2] * 1e3:7.2f} ms")
            del m
    return "\n".join(lines)


def depthwise_shapes(name: str, shape: tuple) -> list[tuple]:
    """(input shape, weight shape, stride, padding) of every distinct depthwise convolution of a forward."""
    from torch.utils._python_dispatch import TorchDispatchMode

    seen: list[tuple] = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket in (torch.ops.aten.convolution, torch.ops.aten.mkldnn_convolution,
                                       torch.ops.aten._convolution):
                x, w = args[0], args[1]
                groups = args[-1] if isinstance(args[-1], int) else 1
                if groups > 1 and groups == x.shape[1] == w.shape[0]:
                    key = (tuple(x.shape), tuple(w.shape), tuple(args[3]), tuple(args[4]))
                    if key not in seen:
                        seen.append(key)
            return func(*args, **(kwargs or {}))

    m = vitkit.create_model(name).eval()
    with torch.no_grad(), Record():
        m(torch.randn(1, *shape))
    return seen


def layout_times(names: dict, device: torch.device, batch: dict, rounds: int = 5) -> str:
    """Depthwise forward + backward in bf16, contiguous against channels-last input: first call and median ms."""
    import torch.nn.functional as F

    lines = []
    for name, shape in names.items():
        for xs, ws, stride, pad in depthwise_shapes(name, shape):
            xs = (batch[name] * xs[0],) + xs[1:]
            conv = F.conv3d if len(xs) == 5 else F.conv2d
            cl = torch.channels_last_3d if len(xs) == 5 else torch.channels_last
            w = torch.randn(ws, device=device, dtype=torch.bfloat16, requires_grad=True)
            row = f"  {name:<22}{str(xs):<26}{str(tuple(ws[2:])):<11}s{str(stride):<11}"
            for label, fmt in (("contiguous", torch.contiguous_format), ("channels-last", cl)):
                x = torch.randn(xs, device=device, dtype=torch.bfloat16).contiguous(memory_format=fmt)
                x.requires_grad_(True)
                times = []
                for _ in range(rounds + 1):
                    B._sync(device)
                    t = time.perf_counter()
                    conv(x, w, None, stride, pad, 1, ws[0]).sum().backward()
                    B._sync(device)
                    times.append(time.perf_counter() - t)
                rest = sorted(times[1:])
                row += f"  {label} first {times[0] * 1e3:8.1f} ms, then {rest[len(rest) // 2] * 1e3:6.2f} ms"
            lines.append(row)
    return "\n".join(lines)


@contextlib.contextmanager
def contiguous_depthwise(enabled: bool):
    """While on, every depthwise convolution of the models (MViT's pooling, MViTv2's 2-D pooling, UniFormer's
    blocks) runs on a contiguous copy of a channels-last input on CUDA and returns channels-last again, as the
    layout fix does for MViT's 3-D pooling alone (``vitkit.layers.depthwise.gpu_depthwise_input``)."""
    import torch.nn.functional as F
    from vitkit.layers import conv_blocks, depthwise

    if not enabled:
        yield
        return

    def to_contiguous(x, device_type):
        return x.contiguous() if device_type == "cuda" and x.dim() in (4, 5) else x

    def block_forward(self, x):
        fmt = torch.channels_last_3d if x.dim() == 5 else torch.channels_last
        keep = x.is_contiguous(memory_format=fmt) and not x.is_contiguous()
        conv = F.conv3d if x.dim() == 5 else F.conv2d
        y = conv(x.contiguous() if x.is_cuda else x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                 self.groups)
        return y.contiguous(memory_format=fmt) if keep else y

    saved = (depthwise.gpu_depthwise_input, conv_blocks.DepthwiseConv2d.forward, conv_blocks.DepthwiseConv3d.forward)
    depthwise.gpu_depthwise_input = to_contiguous
    conv_blocks.DepthwiseConv2d.forward = conv_blocks.DepthwiseConv3d.forward = block_forward
    try:
        yield
    finally:
        depthwise.gpu_depthwise_input, conv_blocks.DepthwiseConv2d.forward, conv_blocks.DepthwiseConv3d.forward = saved


def layout_ab(models: dict, device: torch.device, rounds: int = 5) -> str:
    """Whole bf16 inference forwards and training steps with the depthwise layouts as they are against all
    contiguous (:func:`contiguous_depthwise`), alternating per round: median ms of each, first step of each."""
    lines = []
    for name, (shape, batch) in models.items():
        torch.manual_seed(0)
        m = vitkit.create_model(name).to(device)
        x = torch.randn(batch, *shape, device=device)
        target = torch.zeros(batch, dtype=torch.long, device=device)
        opt = torch.optim.AdamW(m.parameters(), lr=1e-4, fused=device.type == "cuda")
        res = {(v, k): [] for v in (False, True) for k in ("inference", "train")}
        for i in range(rounds + 1):
            for variant in (False, True):
                with contiguous_depthwise(variant):
                    for kind in ("inference", "train"):
                        B._sync(device)
                        t = time.perf_counter()
                        if kind == "inference":
                            m.eval()
                            with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16):
                                m(x)
                        else:
                            m.train()
                            B.train_step(m, x, target, opt, torch.bfloat16)
                        B._sync(device)
                        res[(variant, kind)].append(time.perf_counter() - t)
        for kind in ("inference", "train"):
            a, b = res[(False, kind)], res[(True, kind)]
            ma, mb = sorted(a[1:])[rounds // 2], sorted(b[1:])[rounds // 2]
            lines.append(f"  {name:<22}{kind:<10} as is {ma * 1e3:8.2f} ms (first {a[0]:6.2f} s)  all contiguous "
                         f"{mb * 1e3:8.2f} ms (first {b[0]:6.2f} s)  as-is / contiguous {ma / mb:5.2f}")
        del m, opt
    return "\n".join(lines)


def _forward(name: str, lib: str | None, shape: tuple, device: torch.device, _cache: dict = {}) -> None:
    """One bf16 inference forward of 4 items of ``name`` (vitkit's, or ``lib``'s), the model kept between calls."""
    if (name, lib) not in _cache:
        model = vitkit.create_model(name) if lib is None else B.build_peer(lib, name)
        _cache[(name, lib)] = (model.to(device).eval(), torch.randn(4, *shape, device=device))
    m, x = _cache[(name, lib)]
    with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16):
        m(x)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=".")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--grads", action="store_true", help="also the per-parameter gradient errors of MViT-B")
    args = ap.parse_args(argv)
    device = torch.device("cpu" if args.smoke or not torch.cuda.is_available() else "cuda")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    video = (3, 8, 32, 32) if args.smoke else (3, 16, 224, 224)
    image = (3, 32, 32) if args.smoke else (3, 224, 224)
    mvit = "mvit_demo_8x32" if args.smoke else "mvit_base_16x4"
    compiled = "uniformer_demo_32" if args.smoke else "swin_tiny_patch4_window7_224"
    sections = []

    def section(title, fn):
        t = time.perf_counter()
        try:
            text = fn()
        except Exception as e:  # noqa: BLE001 - one probe failing must not lose the others
            text = f"FAILED: {type(e).__name__}: {e}"[:2000]
        text = f"## {title} ({time.perf_counter() - t:.1f} s)\n{text}\n"
        print(text, flush=True)
        sections.append(text)
        with open(os.path.join(args.out, "probe.txt"), "w") as f:
            f.write("\n".join(sections))

    if args.smoke:
        pairs = {"vit": ("vit_tiny_patch16_224", "timm", "vit_tiny_patch16_224", (3, 224, 224), 1)}
        shapes, batch = {"uniformer_demo_32": (3, 32, 32), "mvit_demo_8x32": (3, 8, 32, 32)}, \
            {"uniformer_demo_32": 1, "mvit_demo_8x32": 1}
        ab = {"uniformer_demo_32": ((3, 32, 32), 2), "mvit_demo_8x32": ((3, 8, 32, 32), 1)}
    else:
        pairs = PAIRS
        shapes = {"mvitv2_tiny": (3, 224, 224), "uniformer_small": (3, 224, 224), "mvit_base_16x4": video}
        batch = {"mvitv2_tiny": 64, "uniformer_small": 64, "mvit_base_16x4": 4}
        ab = {"uniformer_small": ((3, 224, 224), 64), "mvitv2_tiny": ((3, 224, 224), 64),
              "uniformer_small_16x4": (video, 4), "mvit_base_16x4": (video, 4)}
    # most wanted first: each section is written as it ends, so a run cut short keeps the earlier ones
    if args.grads:
        section("grads: " + mvit, lambda: "\n".join(f"  {n:<50} of total {e:.2e}  own {d:.2e}"
                                                   for n, e, d in worst_grads(mvit, video, device)))
    if not args.smoke:
        section("profile: mvit", lambda: profile_pair(mvit, "torchvision", "video.mvit_v1_b", video, 4, device))
    section("layout A/B", lambda: layout_ab(ab, device, rounds=1 if args.smoke else 5))
    section("host", lambda: host_times(pairs, device))
    if not args.smoke:
        section("host: MViT-B ops by own CPU time, vitkit then torchvision", lambda: "\n".join(
            kernel_table(lambda n=n, lib=lib: _forward(n, lib, video, device), device, top=25, by_cpu=True)
            for n, lib in ((mvit, None), ("video.mvit_v1_b", "torchvision"))))
    section("breaks: " + compiled, lambda: graph_breaks(compiled, image, device))
    section("layouts", lambda: layout_times(shapes, device, batch))
    if not args.smoke:
        section("mfu: vit-b", lambda: "\n".join(str(vit_mfu(b, device, 989e12)) for b in (64, 256)))
        # last: a compile of a minute or so, the first thing a short lease drops
        section("mfu: vit-b compiled", lambda: str(vit_mfu(256, device, 989e12, compiled=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
