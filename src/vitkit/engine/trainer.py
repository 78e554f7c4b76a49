"""The training loop: one for image and video, one process or many (DDP).

``train(recipe)`` builds the model and data from a :class:`~vitkit.engine.recipe.Recipe` through its task
(:mod:`vitkit.tasks`: data, model, loss and metric; classification by default), trains with AdamW,
warm-up + cosine per step, layer-wise lr decay, drop path (model config), EMA, mixed precision, clipping,
accumulation and activation checkpointing, evaluates every ``eval.every`` epochs, and keeps the run directory:
``recipe.yaml``, ``metrics.jsonl``, ``checkpoints/``, ``loss.png``/``lr.png``/``accuracy.png``, final
``model.safetensors`` (and ``ema.safetensors``), ``results.json``.

Reproducibility: the RNGs are reseeded from ``(seed, step, micro-step, rank)`` before every forward pass and
each sample from ``(seed, epoch, index)`` (see :mod:`vitkit.engine.data`), so ``--resume`` continues exactly.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from vitkit.checkpoints import load_weights, save_weights
from vitkit.models.compile import maybe_compile
from vitkit.registry import create_model
from vitkit.tasks import get_task

from . import distributed as D
from .allocator import reuse_freed_memory
from .amp import autocast, check_amp, grad_scaler
from .checkpoint import check_weights_finite, last_good, load_checkpoint_dir, rng_state, save_checkpoint, set_rng_state
from .data import SeededDataset, mix_seed, resolve_input, seed_all, train_sampler
from .ema import ModelEma
from .finetune import pretrained_model, tune
from .metrics import MetricsLog, plot_metrics, truncate_after
from .multilabel import is_multi_label
from .optim import build_optimizer
from .progress import EtaMeter, format_eta, on_terminal, progress_bar
from .recipe import Recipe, RecipeError, default_run_name
from .rundir import checkpoint_bytes, claim, write_guard
from .schedule import build_schedule
from .signals import GracefulStop, Interrupted, any_rank, ignore_all_in_worker, shutdown_workers


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    epochs_done: float
    final: dict = field(default_factory=dict)  # last evaluation: top1, top5, loss (+ ema_top1 ...)
    seconds: float = 0.0


def _log(dist: D.DistInfo, msg: str) -> None:
    if dist.is_main:
        print(msg, flush=True)


def build_model(recipe: Recipe, num_classes: int, log=print) -> nn.Module:
    """The recipe's classifier with ``num_classes`` outputs, built at the run's input (:func:`resolve_input`;
    ``model.input_spec`` is set to it): published weights (``model.pretrained``), or ``model.weights`` loaded
    through the one loading policy with the checkpoint's head kept where it fits and replaced otherwise
    (``head="match"``); then the fine-tuning mode (``model.finetune``)."""
    cfg, spec = resolve_input(recipe)
    if "num_classes" in cfg and cfg["num_classes"] != num_classes:
        raise RecipeError(f"model.num_classes={cfg['num_classes']} but the dataset has {num_classes} classes")
    if recipe.model.pretrained:  # published weights (vitkit.weights): head replaced when the class count differs
        model = pretrained_model(recipe, cfg, num_classes, log)
        model.input_spec = spec
        return model
    cfg["num_classes"] = num_classes
    model = create_model(recipe.model.name, **cfg)
    model.input_spec = spec
    if recipe.model.weights is not None:
        report = load_weights(model, recipe.model.weights, head="match")
        log(f"loaded {recipe.model.weights} ({report.source} layout); head: {report.head}")
    return tune(recipe, model, log)


def resumed_run_dir(resume: str) -> Path | None:
    """The run directory holding ``resume`` (itself, or a parent with recipe.yaml and checkpoints/)."""
    p = Path(resume)
    for cand in (p, *p.parents):
        if (cand / "recipe.yaml").is_file() and (cand / "checkpoints").is_dir():
            return cand
    return None


def _run_dir(recipe: Recipe, resume: str | None, explicit: str | None = None) -> Path:
    """Where a run writes: ``explicit`` if given; a resumed run, where it was resumed from (a copied run
    writes into the copy even when its recipe.yaml names another run.dir); else run.dir; else a new folder."""
    if explicit:
        return Path(explicit)
    if resume and (found := resumed_run_dir(resume)) is not None:
        return found
    if recipe.run.dir:
        return Path(recipe.run.dir)
    return Path(recipe.run.output_dir) / f"{default_run_name(recipe)}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def _batch(batch) -> tuple[Any, Any]:
    if len(batch) != 2:
        raise ValueError(f"a training item must be (input, label), got a tuple of {len(batch)}")
    x, y = batch
    return x, (y if isinstance(y, (list, dict)) else torch.as_tensor(y))


def to_device(obj: Any, dev: torch.device) -> Any:
    """Tensors, and the lists / dicts of tensors dense tasks batch (detection targets), on ``dev``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(dev, non_blocking=True)
    if isinstance(obj, dict):
        return {k: to_device(v, dev) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, dev) for v in obj)
    return obj


def wants_cudnn_benchmark(train: Any, task: Any) -> bool:
    """Whether a CUDA run turns on ``cudnn.benchmark``: ``train.cudnn_benchmark`` where set, else on when the
    task's training batches share one shape (:attr:`vitkit.tasks.base.Task.fixed_input_shapes`) and the run is
    not ``train.deterministic``. cuDNN then picks the fastest convolution algorithm per input shape (patch
    embeddings, UniFormer's local blocks, MViT's pooling), at a search cost per new shape. On an H200 the first
    eager training step of MViTv2-T took 22.7 s and UniFormer-S's 14.9 s against timm's 0.1 s
    (``benchmarks/results/gpu_h200.json``; most likely that search over their channels-last depthwise
    convolutions, which go to cuDNN: not profiled), a cost detection's shape per batch would pay again and again.
    A deterministic run keeps it off: the choice could differ between runs."""
    if train.cudnn_benchmark is not None:
        return bool(train.cudnn_benchmark)
    return task.fixed_input_shapes and not train.deterministic


class Trainer:
    """Holds the state of one run; :meth:`fit` trains it to the end (or ``train.max_steps``)."""

    def __init__(self, recipe: Recipe, *, resume: str | None = None, device: str | None = None,
                 train_set: Dataset | None = None, test_set: Dataset | None = None, quiet: bool = False,
                 overwrite: bool = False, run_dir: str | None = None) -> None:
        """``run_dir``: write there (e.g. a ``run.dir=`` given on the command line); by default a resumed run
        writes into the run directory it resumes from, whatever its recipe's ``run.dir`` says."""
        self.recipe = r = recipe
        self.dist = D.init_distributed(device)
        self.quiet = quiet
        dev = self.dist.device
        check_amp(r.train.amp, dev)
        world, accum = self.dist.world_size, r.train.accum_steps
        if r.train.batch_size % (world * accum):
            raise RecipeError(
                f"train.batch_size ({r.train.batch_size}) is the global batch and must be divisible by "
                f"world_size x accum_steps ({world} x {accum})"
            )
        self.micro_batch = r.train.batch_size // (world * accum)
        self._was_deterministic = torch.are_deterministic_algorithms_enabled()
        self._was_cudnn_benchmark = torch.backends.cudnn.benchmark
        if r.train.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        seed_all(r.train.seed)

        self.log = lambda msg: _log(self.dist, msg)
        self.task = get_task(r.task.name).bind(r)  # data, model, loss and metric of the task (vitkit.tasks)
        if dev.type == "cuda":
            torch.backends.cudnn.benchmark = wants_cudnn_benchmark(r.train, self.task)
        # one geometry for model and data (logs a resize); dense tasks crop the data at their own size
        self.input_spec = resolve_input(r, self.log, data_follows_model=self.task.input_follows_model)[1]
        if train_set is None or test_set is None:
            built = self.task.build_datasets(r, self.input_spec)
            train_set = built[0] if train_set is None else train_set
            test_set = built[1] if test_set is None else test_set
        self.train_set, self.test_set = train_set, test_set
        self.num_classes = int(getattr(self.train_set, "num_classes", 0) or len(self.train_set.classes))
        from vitkit.data.sources import same_source

        if (same := same_source(getattr(self.train_set, "origin", ""), getattr(self.test_set, "origin", ""))):
            _log(self.dist, f"warning: {same}")
        self.class_names = list(getattr(self.train_set, "classes", range(self.num_classes)))
        self.multi_label = is_multi_label(self.train_set)  # sigmoid + BCE, max-pooled views, mAP
        if self.multi_label and (r.train.mixup > 0 or r.train.cutmix > 0 or r.train.label_smoothing):
            raise RecipeError("multi-label data (sigmoid + BCE) does not take train.mixup, train.cutmix or "
                              "train.label_smoothing; set them to 0")

        self.run_dir = Path(D.broadcast_object(str(_run_dir(r, resume, run_dir)) if self.dist.is_main else None))
        model = self.task.build_model(r, self.num_classes, log=self.log)
        if r.train.grad_checkpointing is not False:  # true: every block; a list: the blocks of those stages
            stages = None if r.train.grad_checkpointing is True else r.train.grad_checkpointing
            model.set_grad_checkpointing(True, stages=stages)
        self.model = model.to(dev)
        self.ema = ModelEma(self.model, r.train.ema_decay) if r.train.ema_decay else None
        self.ddp = (nn.parallel.DistributedDataParallel(self.model, device_ids=[dev.index] if dev.type == "cuda"
                                                        else None) if self.dist.distributed else self.model)
        # forward only; self.model is what is saved. true: torch's automatic dynamic shapes; "dynamic": symbolic
        self.ddp = maybe_compile(self.ddp, r.train.compile)
        lr = r.optim.lr * (r.train.batch_size / r.optim.base_batch_size if r.optim.base_batch_size else 1.0)
        self.optimizer = build_optimizer(self.model, lr, r.optim.weight_decay, r.optim.betas, r.optim.eps,
                                         r.optim.layer_decay, r.optim.name, r.optim.momentum, r.optim.fused)
        self.scaler = grad_scaler(r.train.amp, dev)

        self.sampler = train_sampler(self.train_set, r, self.dist.rank, world)
        self.steps_per_epoch = self.sampler.full_length() // (self.micro_batch * accum)
        if self.steps_per_epoch < 1:
            raise RecipeError(
                f"the training split has {len(self.train_set)} samples ({self.sampler.full_length()} per process), "
                f"fewer than one batch of {r.train.batch_size}; lower train.batch_size"
            )
        self.schedule = build_schedule(r.schedule, lr, self.steps_per_epoch)
        total = self.schedule.total_steps
        self.num_epochs = -(-total // self.steps_per_epoch)  # schedule.iters set: the epochs that cover them
        self.total_steps = total if r.train.max_steps is None else min(total, r.train.max_steps)
        self.loader = DataLoader(
            SeededDataset(self.train_set, r.train.seed), batch_size=self.micro_batch, sampler=self.sampler,
            num_workers=r.train.workers, drop_last=True, pin_memory=dev.type == "cuda",
            persistent_workers=r.train.workers > 0, worker_init_fn=ignore_all_in_worker,
            collate_fn=getattr(self.train_set, "collate_fn", None),
        )
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl", enabled=self.dist.is_main)
        self.resumed = bool(resume)
        self._last_plot = time.perf_counter()
        self._stop: GracefulStop | None = None
        # the run directory: lock, refuse a finished run unless resuming/overwriting, room checked (engine/rundir)
        self._lock = claim(self.run_dir, self.dist, resume=bool(resume), overwrite=overwrite, keep=r.run.keep,
                           needed=checkpoint_bytes(self.model, self.ema is not None), log=self.log)
        if resume:
            try:
                self._resume(resume)
            except BaseException:
                self.close()
                raise

    def close(self) -> None:
        """Release the run directory (done by :meth:`fit` on any exit)."""
        if self._lock is not None:
            self._lock.release()

    # -- state -----------------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
            "micro_batch": self.micro_batch, "world_size": self.dist.world_size,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "schedule": dataclasses.asdict(self.schedule),  # a function of the step; kept for inspection
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "rng": rng_state(), "recipe": self.recipe.to_yaml(),
        }

    def save(self) -> None:
        check_weights_finite(self.run_dir / "checkpoints", self.step, self.model,
                             self.ema.module if self.ema is not None else None)  # every rank raises alike
        if self.dist.is_main:
            save_checkpoint(self.run_dir / "checkpoints", self.step, self.model, self.state(),
                            ema=self.ema.module if self.ema is not None else None, keep=self.recipe.run.keep)
        D.barrier()

    def _resume(self, path: str) -> None:
        ck = load_checkpoint_dir(path)
        for d, why in ck["skipped"]:
            self.log(f"warning: skipped damaged checkpoint {d}: {why}")
        st = ck["state"]
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(st["optimizer"])
        if self.scaler is not None and st.get("scaler"):
            self.scaler.load_state_dict(st["scaler"])
        if self.ema is not None:
            if ck["ema"] is None:
                raise RecipeError(f"{ck['dir']} has no EMA weights but train.ema_decay is set")
            self.ema.module.load_state_dict(ck["ema"])
            self.ema.load_state_dict(st["ema"])
        set_rng_state(st["rng"])
        self.step, self.epoch, self.batch_in_epoch = st["step"], st["epoch"], st["batch_in_epoch"]
        if st["micro_batch"] * st["world_size"] != self.micro_batch * self.dist.world_size:
            self.log("warning: resuming with a different per-step sample layout; the data order differs")
        if self.dist.is_main:
            truncate_after(self.metrics.path, self.step)
        self.log(f"resumed from {ck['dir']} at step {self.step} (epoch {self.epoch}, batch {self.batch_in_epoch})")

    # -- steps -----------------------------------------------------------------------------------------------
    def train_step(self, micro_batches: list, mixup) -> dict[str, float]:
        r, dev = self.recipe.train, self.dist.device
        lr = self.schedule.apply(self.optimizer, self.step)
        total_loss, correct, seen = 0.0, 0, 0
        accum = len(micro_batches)
        for m, batch in enumerate(micro_batches):
            seed_all(mix_seed(r.seed, self.step, m, self.dist.rank, 1))
            x, y = _batch(batch)
            x, y = to_device(x, dev), to_device(y, dev)
            if mixup is not None:
                x, target = mixup(x, y)
            else:
                target = None
            sync = m == accum - 1 or not self.dist.distributed
            ctx = self.ddp.no_sync() if not sync else _null()
            with ctx:
                with autocast(r.amp, dev):
                    logits = self.ddp(x)
                loss = self.task.loss(logits, y, target, label_smoothing=r.label_smoothing)
                if not torch.isfinite(loss):
                    from .diagnose import nonfinite_loss_message

                    raise FloatingPointError(nonfinite_loss_message(
                        self.recipe, self.step, loss.item(), x, self.model, lr, last_good(self.run_dir / "checkpoints")))
                scaled = loss / accum
                (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            total_loss += loss.item()
            c, n = self.task.batch_stats(logits, y)
            correct += c
            seen += n
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        grad_norm = float("nan")
        if r.clip_grad:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), r.clip_grad))
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)
        self.step += 1
        self.batch_in_epoch += 1
        return {"loss": total_loss / accum, "lr": lr, "grad_norm": grad_norm, "correct": correct, "seen": seen}

    # -- evaluation ------------------------------------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        r = self.recipe
        kw = dict(batch_size=r.eval.batch_size, workers=min(r.train.workers, 2), device=self.dist.device,
                  amp=r.train.amp, dist=self.dist, progress=self.dist.is_main and not self.quiet)
        out = self.task.evaluate(self.model, self.test_set, **kw)
        if self.ema is not None and r.eval.ema:
            e = self.task.evaluate(self.ema.module, self.test_set, **kw)
            out.update({f"ema_{k}": v for k, v in e.items() if k != "num_samples"})
        return out

    def _bad_samples(self, kind: str = "bad_samples") -> dict[str, str]:
        """The training set's ``bad_samples()`` (or ``sample_notes()``) merged over every rank."""
        fn = getattr(self.train_set, kind, None)
        local = dict(fn()) if callable(fn) else {}
        merged: dict[str, str] = {}
        for part in D.all_gather_objects(local):
            merged.update(part)
        return merged

    # -- the loop --------------------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        """Train to the end; bad files are reported once for the run, extra metric sinks closed on any exit.

        On SIGINT/SIGTERM: finish the step, checkpoint and raise :class:`Interrupted` (engine/signals.py).
        """
        from vitkit.data.badlog import run_scope

        shared = D.broadcast_object(tempfile.mkdtemp(prefix="vitkit-badrun-") if self.dist.is_main else None)
        os.makedirs(shared, exist_ok=True)  # another node of a multi-node run: its own
        self._eta = EtaMeter()
        reuse = self.dist.device.type == "cpu" and self.recipe.train.reuse_freed_memory  # engine/allocator.py
        with run_scope(shared, owner=self.dist.is_main), reuse_freed_memory(reuse):
            try:
                with GracefulStop(self.log) as self._stop:
                    return self._fit()
            finally:
                self._stop = None
                shutdown_workers(self.loader)
                self.metrics.close()
                self.close()

    def _stop_requested(self) -> bool:
        return any_rank(self._stop is not None and self._stop.requested, self.dist.device)

    def _interrupt(self, saved: bool) -> None:
        if not saved:
            self.save()
        signum = self._stop.signum if self._stop is not None and self._stop.signum else 15
        import signal as _signal

        msg = (f"stopped by {_signal.Signals(signum).name} at step {self.step}/{self.total_steps}; checkpoint "
               f"{last_good(self.run_dir / 'checkpoints')}; continue with: vitkit train --resume {self.run_dir}")
        self.log(msg)
        raise Interrupted(msg, signum)

    def _fit(self) -> TrainResult:
        r = self.recipe
        accum = r.train.accum_steps
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "recipe.yaml").write_text(r.to_yaml())
        D.barrier()
        if self.dist.is_main:
            from .loggers import build_sinks

            self.metrics.sinks = build_sinks(r, self.run_dir, resume_step=self.step if self.resumed else None,
                                             log=self.log)
        for note in r.notes:
            self.log(note)
        n_params = sum(p.numel() for p in self.model.parameters())
        self.log(f"run directory: {self.run_dir}")
        self.log(f"model {r.model.name}: {n_params / 1e6:.2f}M parameters, {self.num_classes} classes; "
                 f"train {len(self.train_set)} / test {len(self.test_set)} samples; {self.dist.world_size} "
                 f"process(es) on {self.dist.device}; global batch {r.train.batch_size} = {self.dist.world_size} x "
                 f"{accum} x {self.micro_batch}; {self.steps_per_epoch} steps/epoch")
        mixup = self.task.mixup(r, self.num_classes)
        t0 = time.perf_counter()
        final: dict = {}
        final_step = -1
        bad_seen = 0
        window = {"loss": 0.0, "n": 0, "correct": 0, "seen": 0, "t": time.perf_counter(), "steps": 0}
        last_saved = self.step if self.resumed else -1
        while self.epoch < self.num_epochs and self.step < self.total_steps:
            start = self.batch_in_epoch * accum * self.micro_batch
            self.sampler.set_epoch(self.epoch, start)
            self.model.train()
            remaining = self.steps_per_epoch - self.batch_in_epoch
            it = iter(self.loader)
            bar = progress_bar(range(remaining), enabled=self.dist.is_main and not self.quiet,
                               desc=f"epoch {self.epoch + 1}/{self.num_epochs}", unit="sample",
                               unit_scale=r.train.batch_size)  # throughput in samples/s, and the ETA
            for _ in bar:
                if self._stop_requested():
                    self._interrupt(saved=last_saved == self.step)
                micro = [next(it) for _ in range(accum)]
                s = self.train_step(micro, mixup)
                window["loss"] += s["loss"]
                window["n"] += 1
                window["correct"] += s["correct"]
                window["seen"] += s["seen"]
                if hasattr(bar, "set_postfix"):
                    bar.set_postfix(loss=f"{s['loss']:.3f}", lr=f"{s['lr']:.2e}")
                if self.step % r.train.log_every == 0 or self.step == self.total_steps:
                    self._log_train(window, s)
                if r.run.save_every and self.step % r.run.save_every == 0:
                    self.save()
                    last_saved = self.step
                if self.step >= self.total_steps:
                    break
            del it
            if self.batch_in_epoch >= self.steps_per_epoch:
                self.epoch += 1
                self.batch_in_epoch = 0
                bad = self._bad_samples()
                if len(bad) > bad_seen:  # said only when there are new ones
                    self.log(f"epoch {self.epoch}: {len(bad)} bad samples replaced so far ({len(bad) - bad_seen} new)"
                             f"; e.g. {next(iter(bad.items()))[0]}: {next(iter(bad.items()))[1]}")
                notes = self._bad_samples("sample_notes")  # short videos padded / looped, images given as videos
                if notes:
                    p, n = next(iter(notes.items()))
                    self.log(f"epoch {self.epoch}: {len(notes)} videos shorter than a clip (data.short_video="
                             f"{r.data.short_video}); e.g. {p}: {n}")
                self.metrics.write("epoch", epoch=self.epoch, step=self.step, bad_samples=len(bad),
                                   short_videos=len(notes))
                bad_seen = len(bad)
                last = self.epoch == self.num_epochs or self.step >= self.total_steps
                if self.epoch % r.eval.every == 0 or last:
                    final, final_step = self._eval_and_log(), self.step
                if not r.run.save_every or last:
                    self.save()
                    last_saved = self.step
        if last_saved != self.step:
            self.save()
        if final_step != self.step:  # results.json describes the weights saved beside it (max_steps mid-epoch)
            final = self._eval_and_log()
        seconds = time.perf_counter() - t0
        if self.dist.is_main:
            with write_guard(self.run_dir, checkpoint_bytes(self.model, self.ema is not None, 0)):
                save_weights(self.model, self.run_dir / "model.safetensors", {"classes": json.dumps(self.class_names)})
                if self.ema is not None:
                    save_weights(self.ema.module, self.run_dir / "ema.safetensors",
                                 {"classes": json.dumps(self.class_names)})
            result = {"model": r.model.name, "steps": self.step, "epochs": self.epoch, "seconds": seconds,
                      "classes": self.class_names, **final}
            (self.run_dir / "results.json").write_text(json.dumps(result, indent=2) + "\n")
            plot_metrics(self.run_dir)
        D.barrier()
        torch.use_deterministic_algorithms(self._was_deterministic)
        torch.backends.cudnn.benchmark = self._was_cudnn_benchmark
        self.log(f"done: {self.step} steps in {seconds:.0f}s; test {self.task.describe(final)}"
                 + (f"; EMA {self.task.describe(_unprefixed(final, 'ema_'))}" if f"ema_{self.task.headline}" in final
                    else "")
                 + f"; run directory {self.run_dir}")
        return TrainResult(self.run_dir, self.step, self.epoch + self.batch_in_epoch / self.steps_per_epoch,
                           final, seconds)

    def _log_train(self, window: dict, s: dict) -> None:
        now = time.perf_counter()
        loss = torch.tensor([window["loss"], window["n"], window["correct"], window["seen"]], dtype=torch.float64)
        loss = D.all_reduce_sum(loss)
        mean_loss = float(loss[0] / loss[1])
        # samples, not the task's counting units (pixels for segmentation)
        rate = window["n"] * self.recipe.train.batch_size / max(now - window["t"], 1e-9)
        row = dict(step=self.step, epoch=round(self.epoch + self.batch_in_epoch / self.steps_per_epoch, 4),
                   loss=mean_loss, lr=s["lr"], samples_per_s=rate,
                   **({self.task.train_metric: 100.0 * float(loss[2] / loss[3])} if self.task.train_metric else {}))
        if not math.isnan(s["grad_norm"]):
            row["grad_norm"] = s["grad_norm"]
        self.metrics.write("train", **row)
        self._eta.update(window["n"], now - window["t"])
        if not on_terminal() and not self.quiet:
            eta = format_eta(self._eta.eta(self.total_steps - self.step))
            self.log(f"step {self.step}/{self.total_steps} epoch {row['epoch']:.2f} loss {mean_loss:.4f} "
                     f"lr {s['lr']:.2e} {rate:.0f} samples/s eta {eta}")
        window.update(loss=0.0, n=0, correct=0, seen=0, t=now)

    def _eval_and_log(self) -> dict:
        res = self.evaluate()
        self.metrics.write("eval", step=self.step, epoch=self.epoch, **res)
        msg = f"epoch {self.epoch} test: {self.task.describe(res)}"
        if f"ema_{self.task.headline}" in res:
            msg += f"; EMA {self.task.describe(_unprefixed(res, 'ema_'))}"
        self.log(msg)
        if self.dist.is_main and time.perf_counter() - self._last_plot > 60:  # the final plots are always drawn
            plot_metrics(self.run_dir)
            self._last_plot = time.perf_counter()
        return res


def _unprefixed(result: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in result.items() if k.startswith(prefix)}


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def train(recipe: Recipe, **kwargs) -> TrainResult:
    """Train ``recipe`` to the end; see :class:`Trainer` for the keywords."""
    trainer = Trainer(recipe, **kwargs)
    return trainer.fit()
