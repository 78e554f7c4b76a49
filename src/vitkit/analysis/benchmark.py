"""Timing helpers for side-by-side benchmarks: this CPU's matmul peak, forward throughput, tables and JSON.

Method (what users asked of benchmark scripts): warm-up runs first, ``torch.inference_mode``, the median of
repeated timed runs with their spread (min / max over the rounds), CUDA synchronised where there is a GPU, the
machine's load average beside the figures, and the fraction of the measured matmul peak
(``2 * MACs * items/s / peak FLOP/s``) so a figure can be compared across machines. A fraction above 100 % means
the peak was measured under other conditions than the run (load changed, another thread count): such results are
refused (:func:`check_peak_fractions`), not written.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Iterator, Sequence

import torch
import torch.nn as nn

from vitkit.checkpoints import load_checkpoint
from vitkit.export import size_overrides
from vitkit.registry import create_model, model_info

from .profile import _NATIVE_MHA, _SDPA_OPS, MacCounter, _sdpa, profile


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast_context(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` for ``dtype`` (bf16/fp16) on ``device``, or a no-op for fp32 / None."""
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


#: what a benchmark times by: wall-clock, or the process's CPU time (on a shared machine, with one thread, the
#: CPU time barely moves with the other load: seconds the process waits for a core are not counted)
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def matmul_peak(
    dtype: torch.dtype = torch.float32, size: int = 2048, repeats: int = 5, device: str | torch.device = "cpu",
    clock: str = "wall",
) -> float:
    """Measured FLOP/s of a square ``size`` matmul in ``dtype`` with the current thread count (best of ``repeats``),
    timed by ``clock`` (:data:`CLOCKS`; time the peak as the benchmark it normalises)."""
    now = CLOCKS[clock]
    device = torch.device(device)
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t = now()
        a @ b
        _sync(device)
        best = min(best, now() - t)
    return 2 * size**3 / best


def time_forward(
    model: nn.Module,
    x: torch.Tensor,
    amp_dtype: torch.dtype | None = None,
    warmup: int = 2,
    iters: int = 5,
    min_seconds: float = 0.0,
    clock: str = "wall",
) -> dict[str, float]:
    """Median seconds per forward of ``model(x)`` in eval + inference mode (optionally under autocast), timed
    by ``clock`` (:data:`CLOCKS`; ``min_seconds`` counts wall time).

    Returns ``seconds`` (median), ``items_per_s`` (batch / median), ``all`` (every timed run).
    """
    now = CLOCKS[clock]
    model.eval()
    device = x.device
    times: list[float] = []
    with torch.inference_mode(), autocast_context(device, amp_dtype):
        for _ in range(warmup):
            model(x)
        start = time.perf_counter()
        while len(times) < iters or time.perf_counter() - start < min_seconds:
            _sync(device)
            t = now()
            model(x)
            _sync(device)
            times.append(now() - t)
    med = statistics.median(times)
    return {"seconds": med, "items_per_s": x.shape[0] / med, "all": times}


def time_interleaved(
    models: dict[str, nn.Module],
    x: torch.Tensor,
    amp_dtype: torch.dtype | None = None,
    warmup: int = 1,
    iters: int = 5,
    clock: str = "wall",
) -> dict[str, dict[str, float]]:
    """Time several models on the same input round-robin (one run of each per round), median per model.

    Round-robin spreads drift in machine load evenly over the implementations being compared, so their
    ratio stays meaningful on a busy machine. ``clock`` picks wall or process CPU time (:data:`CLOCKS`).
    Returns ``{name: time_forward-style dict}``.
    """
    now = CLOCKS[clock]
    device = x.device
    times: dict[str, list[float]] = {k: [] for k in models}
    for m in models.values():
        m.eval()
    with torch.inference_mode(), autocast_context(device, amp_dtype):
        for m in models.values():
            for _ in range(warmup):
                m(x)
        for _ in range(iters):
            for name, m in models.items():
                _sync(device)
                t = now()
                m(x)
                _sync(device)
                times[name].append(now() - t)
    out = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        out[name] = {"seconds": med, "items_per_s": x.shape[0] / med, "all": ts}
    return out


def measure_interleaved(
    models: dict[str, nn.Module],
    name: str,
    x: torch.Tensor,
    macs_per_item: int,
    peaks: dict[str, float],
    dtypes: Sequence[str] = ("fp32", "bf16"),
    iters: int = 5,
    warmup: int = 1,
    clock: str = "wall",
) -> list["BenchRow"]:
    """:func:`measure` for several implementations at once, timed round-robin (see :func:`time_interleaved`)."""
    rows = []
    for d in dtypes:
        amp = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[d]
        res = time_interleaved(models, x, amp, warmup=warmup, iters=iters, clock=clock)
        for impl, r in res.items():
            ips = r["items_per_s"]
            rows.append(
                BenchRow(impl, name, d, x.shape[0], ips, r["seconds"] * 1e3, macs_per_item,
                         2 * macs_per_item * ips / peaks[d] if peaks.get(d) else float("nan"),
                         **_spread(r["all"], interleaved=True))
            )
    return rows


@dataclass
class BenchRow:
    """One measured configuration: implementation, precision, throughput, fraction of peak, ratios to peers."""

    impl: str
    model: str
    dtype: str
    batch: int
    items_per_s: float
    latency_ms: float
    macs_per_item: int
    frac_peak: float
    ratios: dict[str, float] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)
    #: spread of the per-round latencies (``latency_ms`` is their median)
    latency_min_ms: float = float("nan")
    latency_max_ms: float = float("nan")
    rounds: int = 0
    #: every round's latency in order, for implementations timed round-robin (empty otherwise)
    round_ms: list[float] = field(default_factory=list)
    #: per peer, (min, median, max) of the ratios within each round (peer's latency / ours): the machine's speed
    #: drifts between rounds more than within one, so this is the steadier spread of a ratio
    paired_ratios: dict[str, tuple[float, float, float]] = field(default_factory=dict)


def _spread(times: Sequence[float], interleaved: bool = False) -> dict[str, object]:
    out: dict[str, object] = {"latency_min_ms": min(times) * 1e3, "latency_max_ms": max(times) * 1e3,
                              "rounds": len(times)}
    if interleaved:
        out["round_ms"] = [t * 1e3 for t in times]
    return out


def measure(
    impl: str,
    name: str,
    model: nn.Module,
    x: torch.Tensor,
    macs_per_item: int,
    peaks: dict[str, float],
    dtypes: Sequence[str] = ("fp32", "bf16"),
    iters: int = 5,
    warmup: int = 2,
    clock: str = "wall",
) -> list[BenchRow]:
    """Time ``model(x)`` under each precision; ``peaks`` maps 'fp32'/'bf16' to this machine's FLOP/s."""
    rows = []
    for d in dtypes:
        amp = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[d]
        r = time_forward(model, x, amp, warmup=warmup, iters=iters, clock=clock)
        ips = r["items_per_s"]
        rows.append(
            BenchRow(impl, name, d, x.shape[0], ips, r["seconds"] * 1e3, macs_per_item,
                     2 * macs_per_item * ips / peaks[d] if peaks.get(d) else float("nan"), **_spread(r["all"]))
        )
    return rows


def add_ratios(rows: list[BenchRow], ours: str = "vitkit") -> None:
    """Fill ``ratios`` of our rows: our items/s over each peer's, per precision; and, for rows timed round-robin,
    ``paired_ratios``: the spread of the ratio within each round."""
    for r in rows:
        if r.impl != ours:
            continue
        for p in rows:
            if p.impl != ours and p.dtype == r.dtype and p.batch == r.batch:
                r.ratios[p.impl] = r.items_per_s / p.items_per_s
                if r.round_ms and len(p.round_ms) == len(r.round_ms):
                    each = sorted(b / a for a, b in zip(r.round_ms, p.round_ms))
                    r.paired_ratios[p.impl] = (each[0], statistics.median(each), each[-1])


def format_table(rows: Iterable[BenchRow], unit: str = "img/s") -> str:
    """Throughput, median latency with its min-max over the rounds, % of peak, ratios to peers (with the range
    of the per-round ratios in brackets where the rounds were interleaved)."""
    rows = list(rows)
    head = (f"{'impl':<17}{'model':<32}{'dtype':<6}{'batch':>6}{unit:>10}{'ms':>10}{'min-max ms':>22}{'%peak':>7}"
            "  ratios")
    lines = [head, "-" * len(head)]
    for r in rows:
        ratios = ", ".join(f"{k} {v:.2f}x" + (" [{:.2f}-{:.2f}]".format(r.paired_ratios[k][0], r.paired_ratios[k][2])
                                               if k in r.paired_ratios else "") for k, v in r.ratios.items())
        spread = f"{r.latency_min_ms:.1f}-{r.latency_max_ms:.1f} ({r.rounds})" if r.rounds else "-"
        lines.append(
            f"{r.impl:<17}{r.model:<32}{r.dtype:<6}{r.batch:>6}{r.items_per_s:>10.2f}{r.latency_ms:>10.1f}"
            f"{spread:>22}{100 * r.frac_peak:>6.1f}%  {ratios}"
        )
    return "\n".join(lines)


def machine_load() -> dict[str, object]:
    """Load average (1, 5, 15 min) and CPU count: how busy the machine was around a measurement."""
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):  # not on this platform
        load = None
    return {"load_avg": load, "cpu_count": os.cpu_count()}


def describe_load(load: dict[str, object]) -> str:
    """One line for the console, with a warning when the 1-minute load exceeds the cores."""
    avg, cores = load.get("load_avg"), load.get("cpu_count")
    if not avg:
        return "machine load: unknown on this platform"
    line = f"machine load (1/5/15 min): {avg[0]:.2f} / {avg[1]:.2f} / {avg[2]:.2f} on {cores} cores"
    if cores and avg[0] > cores:
        line += " - busy: figures are lower and noisier than on a quiet machine"
    return line


def environment() -> dict[str, object]:
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **machine_load(),
    }


def check_peak_fractions(rows: Iterable[BenchRow], limit: float = 1.0) -> None:
    """Refuse figures above the measured matmul peak: they mean the peak was measured under other load or
    settings than the run (or a wrong MAC count), so none of the run's fractions can be trusted."""
    over = [r for r in rows if r.frac_peak == r.frac_peak and r.frac_peak > limit]
    if over:
        worst = max(over, key=lambda r: r.frac_peak)
        raise ValueError(
            f"{worst.impl} {worst.dtype} reached {100 * worst.frac_peak:.0f} % of the measured matmul peak, above "
            f"100 %: the peak was measured under other conditions than the run (machine load changed?); results "
            "not written - rerun on a quiet machine, or fix the thread count with --threads")


def free_path(path: str, overwrite: bool = False) -> str:
    """``path``, or, when it exists and ``overwrite`` is off, ``<stem>-<UTC time><ext>`` beside it, so committed
    results are never replaced by accident."""
    if overwrite or not os.path.exists(path):
        return path
    stem, ext = os.path.splitext(path)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    cand, n = f"{stem}-{stamp}{ext}", 1
    while os.path.exists(cand):
        n += 1
        cand = f"{stem}-{stamp}-{n}{ext}"
    return cand


def write_json(path: str, rows: Iterable[BenchRow], peaks: dict[str, float], **extra) -> None:
    """Write rows, peaks and the environment as JSON (creating the folder)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    payload = {"environment": environment(), "matmul_peak_flops": peaks, "rows": [asdict(r) for r in rows], **extra}
    with open(path, "w") as f:
        json.dump(payload, f, indent=2)


# -- model-level benchmarks: peers, memory, resolution scaling (``vitkit benchmark``) ------------------------
#: vitkit name -> torchvision builder name (random init; no download)
TORCHVISION_PEERS = {
    "vit_base_patch16_224": "vit_b_16", "vit_base_patch32_224": "vit_b_32", "vit_large_patch16_224": "vit_l_16",
    "vit_huge_patch14_224": "vit_h_14", "swin_tiny_patch4_window7_224": "swin_t",
    "swin_small_patch4_window7_224": "swin_s", "swin_base_patch4_window7_224": "swin_b",
    "mvit_base_16x4": "video.mvit_v1_b", "mvit_v2_s": "video.mvit_v2_s", "swin3d_tiny": "video.swin3d_t",
    "swin3d_small": "video.swin3d_s", "swin3d_base": "video.swin3d_b",
}


def peer_model(name: str, against: str) -> tuple[str, nn.Module]:
    """(label, module): the same architecture from ``against`` ('timm' or 'torchvision'), random init, eval mode."""
    if against == "timm":
        import timm

        if name not in timm.list_models():
            raise ValueError(f"timm has no model named {name!r} (image models only; see timm.list_models())")
        return "timm", build_peer("timm", name).eval()
    if against == "torchvision":
        if name not in TORCHVISION_PEERS:
            raise ValueError(f"no torchvision counterpart known for {name!r}; known: {sorted(TORCHVISION_PEERS)}")
        return "torchvision", build_peer("torchvision", TORCHVISION_PEERS[name]).eval()
    raise ValueError(f"--against must be 'timm' or 'torchvision', got {against!r}")


class AllocatedPeak:
    """Peak bytes the CPU allocator holds while active, above the level at entry: every allocation and free of
    c10's CPU allocator in order, as the profiler's memory events report them (``profile_memory=True``). This sees
    what ops, autograd, the optimiser and Inductor's compiled kernels allocate alike, including tensors a kernel
    makes and frees inside itself, and not what exists before (weights, the input); the CPU counterpart of CUDA's
    ``max_memory_allocated`` above ``memory_allocated``. oneDNN's own scratch buffers are not counted."""

    def __enter__(self) -> "AllocatedPeak":
        from torch.profiler import ProfilerActivity, profile

        self._prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
        self._prof.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._prof.__exit__(*exc)
        events = [e for e in self._prof.profiler.kineto_results.events() if e.name() == "[memory]"]
        now = self.peak = 0
        for e in sorted(events, key=lambda e: e.start_ns()):
            if e.device_type() == torch.autograd.DeviceType.CPU:
                now += e.nbytes()
                self.peak = max(self.peak, now)


def forward_memory(model: nn.Module, x: torch.Tensor, amp_dtype: torch.dtype | None = None) -> int:
    """Peak bytes of the tensors one inference forward allocates (activations and temporaries; weights and
    the input excluded). On CUDA this is ``max_memory_allocated`` above the level before the call; on the CPU
    the same from the CPU allocator's events (:class:`AllocatedPeak`)."""
    model.eval()
    device = x.device
    with torch.inference_mode(), autocast_context(device, amp_dtype):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            base = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            model(x)
            torch.cuda.synchronize(device)
            return torch.cuda.max_memory_allocated(device) - base
        counter = AllocatedPeak()
        with counter:
            out = model(x)
        del out
        return counter.peak


def attention_macs(model: nn.Module, x: torch.Tensor) -> int:
    """MACs of the attention matmuls alone (QK^T and AV of every fused attention call) in ``model(x)``."""
    class _AttnOnly(MacCounter):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func in _SDPA_OPS:
                self.total += _sdpa(args[0], args[1], args[2])
            elif func is _NATIVE_MHA:  # the attention matmuls inside the native MHA kernel
                b, n, c = args[0].shape
                self.total += b * n * n * 2 * c
            return out

    counter = _AttnOnly()
    model.eval()
    with torch.no_grad(), counter:
        model(x)
    return counter.total


def compare(
    name: str,
    against: Sequence[str] = (),
    batch: int = 8,
    dtypes: Sequence[str] = ("fp32", "bf16"),
    iters: int = 5,
    input_size: Sequence[int] | None = None,
    peaks: dict[str, float] | None = None,
    compile: bool | str = False,
) -> tuple[list[BenchRow], dict[str, str]]:
    """vitkit ``name`` and its peers in one process, round-robin: throughput, latency, % of matmul peak and
    peak forward memory (``extra['peak_mem_mb']``). Returns the rows and, per peer, a note on the weights.
    ``compile``: every implementation is wrapped by the same ``torch.compile`` (:func:`maybe_compile`; ``True``
    or ``"dynamic"``) and the warm-up round pays the compile time; memory is counted on the eager modules."""
    from vitkit.models.compile import maybe_compile

    torch.manual_seed(0)
    models = {"vitkit": create_model(name).eval()}
    size = tuple(input_size or models["vitkit"].input_spec.input_size)
    notes = {}
    for a in against:
        label, peer = peer_model(name, a)
        try:  # same weights in both, so the work is identical
            load_checkpoint(models["vitkit"], peer.state_dict())
            notes[label] = f"{type(peer).__name__}; same weights (its state dict converted into vitkit)"
        except Exception as e:  # a peer whose layout has no converter still runs, on its own random weights
            notes[label] = f"{type(peer).__name__}; own random weights (not convertible: {type(e).__name__})"
        models[label] = peer
    kinds = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    peaks = peaks or {d: matmul_peak(kinds[d]) for d in dtypes}
    macs = profile(name, size).macs
    x = torch.randn(batch, *size)
    timed = {k: maybe_compile(m, compile) for k, m in models.items()}
    rows = measure_interleaved(timed, name, x, macs, peaks, dtypes, iters=iters)
    for r in rows:
        r.extra["compiled"] = compile
        mem = forward_memory(models[r.impl], x, kinds[r.dtype] if r.dtype != "fp32" else None)
        r.extra["peak_mem_mb"] = mem / 2**20
    add_ratios(rows)
    return rows, notes


def resolution_scaling(
    name: str, sizes: Sequence[int], batch: int = 1, iters: int = 3, dtype: str = "fp32", **overrides
) -> dict[str, list[float]]:
    """Cost of ``name`` at square inputs ``sizes`` (frames kept): latency, GMACs, attention GMACs, memory.

    Each size builds the variant at that size (position tables resampled once), with config ``overrides``
    (e.g. ``windows=True`` for UniFormer's windowed stage 3). Sizes the architecture cannot take are skipped
    and listed under ``skipped``.
    """
    info = model_info(name)
    spec = info.spec
    out: dict[str, list] = {"size": [], "pixels": [], "ms": [], "gmacs": [], "attn_gmacs": [], "mem_mb": [],
                            "skipped": []}
    amp = {"fp32": None, "bf16": torch.bfloat16}[dtype]
    for s in sizes:
        shape = (*spec.input_size[:-2], s, s)
        try:
            model = create_model(name, **{**overrides, **size_overrides(info, shape)}).eval()
            x = torch.randn(batch, *shape)
            macs = profile(model, shape).macs
        except (ValueError, RuntimeError) as e:
            out["skipped"].append(f"{s}: {e}")
            continue
        t = time_forward(model, x, amp, warmup=1, iters=iters)
        out["size"].append(s)
        out["pixels"].append(s * s)
        out["ms"].append(t["seconds"] * 1e3 / batch)
        out["gmacs"].append(macs / 1e9)
        out["attn_gmacs"].append(attention_macs(model, x[:1]) / 1e9)
        out["mem_mb"].append(forward_memory(model, x[:1], amp) / 2**20)
    return out


# -- training steps (benchmarks/bench_train.py, benchmarks/gpu.py) ------------------------------------------
@contextlib.contextmanager
def _fresh_inductor_cache(parent: str | None) -> Iterator[None]:
    """Empty Inductor caches in a new folder under ``parent`` while the block runs (nothing when ``None``); the
    folder is kept (the caller removes ``parent``): kernels loaded from it stay in use after the block."""
    if parent is None:
        yield
        return
    from torch._inductor import utils

    fresh_cache = getattr(utils, "fresh_cache", None) or utils.fresh_inductor_cache  # the older torch's name
    with fresh_cache(dir=parent, delete=False):
        yield


def children_cpu_time() -> float:
    """CPU seconds (user + system) of this process's finished child processes, e.g. Inductor's C++ compiler."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def train_step(model: nn.Module, x: torch.Tensor, target: torch.Tensor, opt: torch.optim.Optimizer,
               amp_dtype: torch.dtype | None = None) -> None:
    """One training step as vitkit's trainer does it: forward under autocast, cross-entropy, backward, optimiser."""
    with autocast_context(x.device, amp_dtype):
        out = model(x)
    torch.nn.functional.cross_entropy(out.float(), target).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


#: what builds a model's training optimiser in a benchmark: ``make_optimizer(name, model)``
MakeOptimizer = Callable[[str, nn.Module], torch.optim.Optimizer]


def step_optimizer(name: str, model: nn.Module, make_optimizer: MakeOptimizer | None = None,
                   lr: float = 1e-4) -> torch.optim.Optimizer:
    """``make_optimizer(name, model)`` (e.g. each library's own training optimiser), or torch's default AdamW at
    ``lr`` without one: the one rule every benchmark that steps a model (timing, memory, profiles) follows."""
    return make_optimizer(name, model) if make_optimizer else torch.optim.AdamW(model.parameters(), lr=lr)


def time_train_interleaved(
    models: dict[str, nn.Module], x: torch.Tensor, amp_dtype: torch.dtype | None = None, warmup: int = 1,
    rounds: int = 5, lr: float = 1e-4, clock: str = "wall",
    make_optimizer: MakeOptimizer | None = None,
    fresh_compile_cache: bool = False,
) -> dict[str, dict[str, float]]:
    """Training steps (forward, backward, AdamW) of several models on the same batch, round-robin.

    Each model gets its own AdamW (torch's default path), or what ``make_optimizer(name, model)`` builds (each
    library's own training optimiser). ``first_s`` is the first warm-up step (for a
    compiled model: the compile time); ``seconds`` the median of the timed rounds, ``all`` every round, all by
    ``clock`` (see :data:`CLOCKS`). ``first_wall_s`` is the first step by the wall clock whatever ``clock`` says:
    the process CPU clock misses the compile workers and C++ compiler that Inductor runs in child processes;
    ``first_children_s`` is their CPU time (:func:`children_cpu_time`; the C++ compiler's, and the workers' once
    they exit: with ``TORCHINDUCTOR_COMPILE_THREADS=1`` there are none and the compile is in ``first_s``).
    ``fresh_compile_cache``: each model's warm-up runs with empty Inductor caches (a new cache folder, the
    in-memory kernel caches cleared), so a compiled model's first step reuses no kernel or graph compiled before
    it, by an earlier run or by another model in this process.
    """
    now = CLOCKS[clock]
    device = x.device
    target = torch.zeros(x.shape[0], dtype=torch.long, device=device)
    opts = {k: step_optimizer(k, m, make_optimizer, lr) for k, m in models.items()}
    times: dict[str, list[float]] = {k: [] for k in models}
    first: dict[str, float] = {}
    first_wall: dict[str, float] = {}
    first_children: dict[str, float] = {}
    scratch = tempfile.mkdtemp(prefix="vitkit_inductor_") if fresh_compile_cache else None
    try:
        for name, m in models.items():
            m.train()
            with _fresh_inductor_cache(scratch):
                for i in range(warmup):
                    _sync(device)
                    t, w, c = now(), time.perf_counter(), children_cpu_time()
                    train_step(m, x, target, opts[name], amp_dtype)
                    _sync(device)
                    if i == 0:
                        first[name], first_wall[name] = now() - t, time.perf_counter() - w
                        first_children[name] = children_cpu_time() - c
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    for _ in range(rounds):
        for name, m in models.items():
            _sync(device)
            t = now()
            train_step(m, x, target, opts[name], amp_dtype)
            _sync(device)
            times[name].append(now() - t)
    out = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        out[name] = {"seconds": med, "items_per_s": x.shape[0] / med, "all": ts, "first_s": first.get(name, 0.0),
                     "first_wall_s": first_wall.get(name, 0.0), "first_children_s": first_children.get(name, 0.0)}
    return out


def train_memory(model: nn.Module, x: torch.Tensor, amp_dtype: torch.dtype | None = None,
                 make_optimizer: MakeOptimizer | None = None, name: str = "model") -> int:
    """Peak bytes allocated during one training step (forward, backward, the optimiser's step; its state created
    on the way) above the level before it: ``max_memory_allocated`` on CUDA, the CPU allocator's events on the
    CPU (:class:`AllocatedPeak`), for compiled models too. The optimiser is a fresh :func:`step_optimizer` for
    ``name`` (its state counts)."""
    model.train()
    device = x.device
    target = torch.zeros(x.shape[0], dtype=torch.long, device=device)
    opt = step_optimizer(name, model, make_optimizer)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        train_step(model, x, target, opt, amp_dtype)
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    counter = AllocatedPeak()
    with counter:
        train_step(model, x, target, opt, amp_dtype)
    return counter.peak


def measure_train_interleaved(
    models: dict[str, nn.Module], name: str, x: torch.Tensor, macs_per_item: int, peaks: dict[str, float],
    dtypes: Sequence[str] = ("fp32", "bf16"), rounds: int = 5, warmup: int = 1, compiled: bool | str = False,
    clock: str = "wall",
    make_optimizer: MakeOptimizer | None = None,
) -> list[BenchRow]:
    """Rows of training-step throughput (items/s), % of peak counting 3x the forward FLOPs (forward + backward),
    ``extra``: first-step seconds, peak training memory (of the timed modules, compiled ones included), compiled.
    Compiled models compile with empty Inductor caches (``fresh_compile_cache``), so first steps compare."""
    kinds = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    rows = []
    for d in dtypes:
        res = time_train_interleaved(models, x, kinds[d], warmup=warmup, rounds=rounds, clock=clock,
                                     make_optimizer=make_optimizer, fresh_compile_cache=bool(compiled))
        for impl, r in res.items():
            ips = r["items_per_s"]
            mem = train_memory(models[impl], x, kinds[d], make_optimizer, impl)
            rows.append(BenchRow(impl, name, d, x.shape[0], ips, r["seconds"] * 1e3, macs_per_item,
                                 6 * macs_per_item * ips / peaks[d] if peaks.get(d) else float("nan"),
                                 extra={"first_step_s": r["first_s"], "first_step_wall_s": r["first_wall_s"],
                                        "first_step_children_cpu_s": r["first_children_s"],
                                        "peak_train_mem_mb": mem / 2**20,
                                        "compiled": compiled, "clock": clock},
                                 **_spread(r["all"], interleaved=True)))
    return rows


def build_peer(lib: str, name: str, **kwargs) -> nn.Module:
    """A peer library's model by its own name, random init (no download): ``timm`` names, or torchvision's
    builder path under ``torchvision.models`` (``vit_b_16``, ``video.swin3d_t``)."""
    if lib == "timm":
        import timm

        return timm.create_model(name, pretrained=False, **kwargs)
    if lib != "torchvision":
        raise ValueError(f"peer library must be 'timm' or 'torchvision', got {lib!r}")
    import torchvision

    mod = torchvision.models
    *path, last = name.split(".")
    for p in path:
        mod = getattr(mod, p)
    return getattr(mod, last)(weights=None, **kwargs)


# -- task-level benchmarks (a segmentor, a detector): inference and train step side by side -------------------
def time_kinds_interleaved(
    models: dict[str, nn.Module], steps: dict[str, Callable[[str, nn.Module], None]], rounds: int = 3,
    clock: str = "wall", device: torch.device | str = "cpu",
) -> tuple[dict[tuple[str, str], list[float]], dict[tuple[str, str], int]]:
    """Time every ``steps[kind](name, model)`` (e.g. inference, train step) of every model, round-robin, after one
    warm-up round; then each once more for its peak memory (``max_memory_allocated`` on CUDA, the CPU
    allocator's events on the CPU). Returns ``times[(name, kind)]`` (seconds by ``clock``) and ``peaks[(name, kind)]``."""
    now, device = CLOCKS[clock], torch.device(device)
    times: dict[tuple[str, str], list[float]] = {}
    for r in range(rounds + 1):
        for name, m in models.items():
            for kind, step in steps.items():
                _sync(device)
                t = now()
                step(name, m)
                _sync(device)
                if r:
                    times.setdefault((name, kind), []).append(now() - t)
    peaks = {}
    for name, m in models.items():
        for kind, step in steps.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
                step(name, m)
                peaks[(name, kind)] = torch.cuda.max_memory_allocated(device)
            else:
                counter = AllocatedPeak()
                with counter:
                    step(name, m)
                peaks[(name, kind)] = counter.peak
    return times, peaks


def kind_rows(times: dict[tuple[str, str], list[float]], peaks: dict[tuple[str, str], int], items: int,
              ours: str, peer: str) -> list[dict]:
    """Rows (model, kind, images/s, median / min / max seconds, peak bytes) with ``ratio_to_peer`` on ours."""
    rows = []
    for (name, kind), ts in times.items():
        med = statistics.median(ts)
        rows.append({"model": name, "kind": kind, "images_per_s": items / med, "median_s": med, "min_s": min(ts),
                     "max_s": max(ts), "peak_bytes": peaks[(name, kind)]})
    for r in rows:
        if r["model"] == ours:
            p = next(q for q in rows if q["model"] == peer and q["kind"] == r["kind"])
            r["ratio_to_peer"] = r["images_per_s"] / p["images_per_s"]
    return rows


def format_kind_rows(rows: list[dict]) -> str:
    """The table of :func:`kind_rows`."""
    width = max(len(r["model"]) for r in rows) + 2
    lines = [f"{'model':{width}s}{'kind':11s} {'img/s':>7s} {'median s':>9s} {'min-max s':>15s} {'peak MiB':>9s} ratio"]
    for r in rows:
        lines.append(f"{r['model']:{width}s}{r['kind']:11s} {r['images_per_s']:7.3f} {r['median_s']:9.2f} "
                     f"{r['min_s']:7.2f}-{r['max_s']:<7.2f} {r['peak_bytes'] / 2**20:9.0f} "
                     f"{r.get('ratio_to_peer', float('nan')):.2f}")
    return "\n".join(lines)

