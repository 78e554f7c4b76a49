"""Learning-rate schedules: linear warm-up from ``warmup_lr`` to ``lr``, then half-cosine down to ``min_lr``
(:class:`WarmupCosine`), mmseg's ``poly`` with linear warm-up (:class:`WarmupPoly`), or mmdet's ``step`` (the
detection papers' 1x / 3x schedules, :class:`WarmupStep`).

Evaluated per optimiser step from the step number alone, so resuming needs nothing but the step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class WarmupCosine:
    lr: float
    total_steps: int
    warmup_steps: int = 0
    warmup_lr: float = 1e-6
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        if self.total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {self.total_steps}")
        if not 0 <= self.warmup_steps <= self.total_steps:
            raise ValueError(f"warmup_steps must be in 0..{self.total_steps}, got {self.warmup_steps}")

    def __call__(self, step: int) -> float:
        """The lr of optimiser step ``step`` (0-based)."""
        if step < self.warmup_steps:
            return self.warmup_lr + (self.lr - self.warmup_lr) * step / self.warmup_steps
        span = self.total_steps - self.warmup_steps
        t = min(max(step - self.warmup_steps, 0) / max(span, 1), 1.0)
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * t))

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set every group's lr to ``schedule(step) * group['lr_scale']``; returns the base lr."""
        lr = self(step)
        for g in optimizer.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        return lr


@dataclass(frozen=True)
class WarmupPoly(WarmupCosine):
    """``min_lr + (lr - min_lr) * (1 - step / total) ** power``; during warm-up that value times
    ``1 - (1 - step / warmup) * (1 - warmup_lr / lr)`` - mmcv's ``PolyLrUpdaterHook`` with ``warmup='linear'`` and
    ``warmup_ratio = warmup_lr / lr`` (the Swin/UniFormer ADE20K recipes: power 1, min_lr 0, 1500 steps, 1e-6)."""

    power: float = 1.0

    def __call__(self, step: int) -> float:
        t = min(max(step, 0) / self.total_steps, 1.0)
        lr = self.min_lr + (self.lr - self.min_lr) * (1.0 - t) ** self.power
        if step < self.warmup_steps:
            ratio = self.warmup_lr / self.lr if self.lr else 1.0
            lr *= 1.0 - (1.0 - step / self.warmup_steps) * (1.0 - ratio)
        return lr


@dataclass(frozen=True)
class WarmupStep(WarmupCosine):
    """``lr * gamma ** (milestones passed)``; during warm-up that value times ``1 - (1 - step / warmup) *
    (1 - warmup_lr / lr)`` - mmcv's ``StepLrUpdaterHook`` with ``warmup='linear'`` (mmdet's 1x: milestones at
    epochs 8 and 11 of 12, gamma 0.1, 500 warm-up steps at ratio 0.001)."""

    milestones: tuple = ()  # optimiser steps
    gamma: float = 0.1

    def __call__(self, step: int) -> float:
        lr = self.lr * self.gamma ** sum(step >= m for m in self.milestones)
        if step < self.warmup_steps:
            ratio = self.warmup_lr / self.lr if self.lr else 1.0
            lr *= 1.0 - (1.0 - step / self.warmup_steps) * (1.0 - ratio)
        return lr


def build_schedule(section, lr: float, steps_per_epoch: int) -> WarmupCosine:
    """The recipe's ``schedule`` section as a schedule over its total steps (``iters``, else epochs x steps)."""
    total = section.iters if section.iters is not None else section.epochs * steps_per_epoch
    warmup = section.warmup_iters if section.warmup_iters is not None else round(section.warmup_epochs * steps_per_epoch)
    warmup = min(warmup, total)
    if section.name == "poly":
        return WarmupPoly(lr, total, warmup, section.warmup_lr, section.min_lr, power=section.power)
    if section.name == "step":  # milestones in iterations with ``iters``, else in epochs
        per = 1 if section.iters is not None else steps_per_epoch
        return WarmupStep(lr, total, warmup, section.warmup_lr, section.min_lr,
                          milestones=tuple(round(m * per) for m in section.milestones or ()), gamma=section.gamma)
    return WarmupCosine(lr, total, warmup, section.warmup_lr, section.min_lr)
