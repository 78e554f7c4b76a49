"""PNG figures for the analysis tools: attention overlays, mean attention distance, cost versus resolution.

Matplotlib runs headless (Agg); every function writes one file and returns its path.
"""
from __future__ import annotations

import math
import os
from typing import Mapping, Sequence

import numpy as np
import torch


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _prepare(path: str | os.PathLike) -> str:
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    return path


def as_rgb(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """(H, W, 3) float in [0, 1] from uint8 / float HWC arrays or a (3, H, W) tensor (min-max scaled)."""
    if isinstance(image, torch.Tensor):
        image = image.detach().float().cpu()
        if image.ndim == 3 and image.shape[0] in (1, 3):
            image = image.permute(1, 2, 0)
        image = image.numpy()
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    lo, hi = float(image.min()), float(image.max())
    return ((image - lo) / (hi - lo + 1e-12)).astype(np.float32)


def overlay_rgb(image: np.ndarray, heat: np.ndarray | torch.Tensor, alpha: float = 0.5,
                cmap: str = "jet") -> np.ndarray:
    """Blend a heat map (H, W), min-max scaled, over an RGB image of the same size."""
    plt = _plt()
    heat = heat.detach().float().cpu().numpy() if isinstance(heat, torch.Tensor) else np.asarray(heat, np.float32)
    if heat.shape != image.shape[:2]:
        raise ValueError(f"heat map {heat.shape} and image {image.shape[:2]} differ in size")
    h = (heat - heat.min()) / (heat.max() - heat.min() + 1e-12)
    colour = plt.get_cmap(cmap)(h)[..., :3]
    return (1 - alpha) * image + alpha * colour


def save_overlay(path: str | os.PathLike, image, heat, title: str | None = None, alpha: float = 0.5) -> str:
    """One PNG: ``heat`` over ``image``."""
    plt = _plt()
    path = _prepare(path)
    rgb = as_rgb(image)
    fig, ax = plt.subplots(figsize=(4, 4 * rgb.shape[0] / rgb.shape[1]))
    ax.imshow(overlay_rgb(rgb, heat, alpha))
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def save_overlay_grid(path: str | os.PathLike, image, heats: torch.Tensor | np.ndarray,
                      row_labels: Sequence[str] | None = None, title: str | None = None, alpha: float = 0.5) -> str:
    """A grid of overlays: ``heats`` (rows, cols, H, W), e.g. layers x heads."""
    plt = _plt()
    path = _prepare(path)
    rgb = as_rgb(image)
    heats = heats.detach().cpu().numpy() if isinstance(heats, torch.Tensor) else np.asarray(heats)
    rows, cols = heats.shape[:2]
    size = 1.4
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows * rgb.shape[0] / rgb.shape[1]),
                             squeeze=False)
    for r in range(rows):
        for c in range(cols):
            ax = axes[r][c]
            ax.imshow(overlay_rgb(rgb, heats[r, c], alpha))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"head {c}", fontsize=7)
            if c == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[r], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9, y=1.0 + 0.12 / rows)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_mean_distance(path: str | os.PathLike, distances: Sequence[torch.Tensor], title: str = "",
                       receptive: float | None = None) -> str:
    """The ViT paper's Fig. 7: one dot per head, network depth (layer) against mean attention distance (pixels)."""
    plt = _plt()
    path = _prepare(path)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for i, d in enumerate(distances):
        vals = d.detach().cpu().numpy() if isinstance(d, torch.Tensor) else np.asarray(d)
        ax.scatter(np.full(vals.shape, i + 1), vals, s=12, alpha=0.8)
    if receptive:
        ax.axhline(receptive, color="grey", lw=0.8, ls="--", label="uniform attention")
        ax.legend(fontsize=7)
    ax.set_xlabel("network depth (layer)")
    ax.set_ylabel("mean attention distance (pixels)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of log y against log x (the exponent of a power law y ~ x^k)."""
    lx, ly = np.log(np.asarray(x, np.float64)), np.log(np.asarray(y, np.float64))
    if len(lx) < 2:
        return float("nan")
    return float(np.polyfit(lx, ly, 1)[0])


def plot_resolution_scaling(path: str | os.PathLike, series: Mapping[str, Mapping[str, Sequence[float]]],
                            title: str = "") -> str:
    """Cost against input pixels on log-log axes, one panel per measure, the fitted exponent in the legend.

    ``series`` maps a model label to ``{"pixels": [...], measure: [...], ...}`` (e.g. ``ms``, ``gmacs``,
    ``attn_gmacs``, ``mem_mb``). An exponent of 1 is linear in the number of pixels (tokens), 2 quadratic.
    """
    plt = _plt()
    path = _prepare(path)
    measures = [m for m in ("ms", "gmacs", "attn_gmacs", "mem_mb") if any(m in s for s in series.values())]
    labels = {"ms": "latency (ms)", "gmacs": "GMACs", "attn_gmacs": "attention-matmul GMACs",
              "mem_mb": "peak activation memory (MB)"}
    fig, axes = plt.subplots(1, len(measures), figsize=(4.2 * len(measures), 3.6), squeeze=False)
    for ax, m in zip(axes[0], measures):
        for name, s in series.items():
            if m not in s:
                continue
            px = [p for p, v in zip(s["pixels"], s[m]) if v and v > 0 and math.isfinite(v)]
            vals = [v for v in s[m] if v and v > 0 and math.isfinite(v)]
            if not vals:
                continue
            k = loglog_slope(px, vals)
            ax.plot(px, vals, "o-", label=f"{name} (x^{k:.2f})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("input pixels (H x W)")
        ax.set_ylabel(labels[m])
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
