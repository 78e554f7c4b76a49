"""What every vitkit model provides, whatever its family.

``forward(x) == forward_head(forward_features(x))``; ``forward_intermediates`` returns maps (B, C, [T,] H, W);
``reset_classifier`` swaps the head; ``no_weight_decay`` names parameters that take no weight decay;
``layer_id`` orders parameters by depth for layer-wise learning-rate decay; ``set_grad_checkpointing``
trades compute for memory in training.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Sequence

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from vitkit.layers import to_tuple

from .input_spec import InputSpec
from .variants import input_spec


class VitkitModel(nn.Module):
    """Base class: input validation, checkpointed block runs and the optimiser hooks shared by the families."""

    family: str = ""
    config: object
    num_classes: int
    num_features: int
    in_chans: int = 3
    spatial_rank: int = 2  # 2 for images (B, C, H, W), 3 for video (B, C, T, H, W)
    grad_checkpointing: bool = False

    # -- input -----------------------------------------------------------------------------------------------
    @classmethod
    def input_geometry(cls, cfg) -> tuple[int, int | None, tuple[int, int]]:
        """(channels, frames or None, (H, W)) of an input to a model built with ``cfg``.

        The family's rule; the default reads the config fields ``in_chans``, ``num_frames`` and ``img_size``.
        """
        return int(cfg.in_chans), getattr(cfg, "num_frames", None), to_tuple(cfg.img_size, 2)

    @classmethod
    def input_defaults(cls, cfg) -> dict:
        """The family's preprocessing for a variant built with ``cfg`` (mean, std, interpolation, crop_pct,
        and the registry-wide tests' small ``test_input_size``); a variant's own statements take precedence."""
        return {}

    @classmethod
    def config_for_input(cls, cfg, size: Sequence[int] | None = None, num_frames: int | None = None) -> dict:
        """Config overrides that build the family at (H, W) ``size`` and/or ``num_frames`` (only what changes).

        A geometry the config cannot express raises, naming its fields.
        """
        fields = {f.name for f in dataclasses.fields(cfg)}
        _, frames, hw = cls.input_geometry(cfg)
        out: dict = {}
        if size is not None and tuple(size) != tuple(hw):
            if "img_size" not in fields:
                raise ValueError(f"{cls.__name__}: cannot build for H, W = {tuple(size)}: its config has no img_size "
                                 f"(fields: {sorted(fields)})")
            h, w = (int(s) for s in size)
            out["img_size"] = h if h == w else (h, w)
        if num_frames is not None and num_frames != frames:
            if "num_frames" not in fields:
                raise ValueError(f"{cls.__name__}: cannot build for T = {num_frames}: its config has no num_frames "
                                 f"(fields: {sorted(fields)})")
            out["num_frames"] = int(num_frames)
        return out

    @property
    def input_spec(self) -> InputSpec:
        """The input this model expects (set by ``create_model`` from the variant; else the family's defaults)."""
        spec = self.__dict__.get("_input_spec")
        return spec if spec is not None else input_spec(type(self), self.config)

    @input_spec.setter
    def input_spec(self, spec: InputSpec) -> None:
        self.__dict__["_input_spec"] = spec

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error for a wrong rank, channel count or dtype, or an empty batch."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{type(self).__name__} expects a torch.Tensor, got {type(x).__name__}")
        want = self.spatial_rank + 2
        layout = "(B, C, H, W)" if self.spatial_rank == 2 else "(B, C, T, H, W)"
        if x.ndim != want:
            raise ValueError(
                f"{type(self).__name__} expects a {want}-D input {layout}, got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_chans:
            raise ValueError(
                f"{type(self).__name__} expects {self.in_chans} channels in dim 1 {layout}, "
                f"got shape {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise TypeError(f"{type(self).__name__} expects a floating-point input (normalised pixels), got "
                            f"{x.dtype}; convert images first, e.g. x.float() / 255 then normalise")
        if not torch.compiler.is_compiling() and x.shape[0] == 0:
            raise ValueError(f"{type(self).__name__} got an empty batch (shape {tuple(x.shape)}); give at least one "
                             "sample")

    # -- forward ---------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def forward_intermediates(
        self, x: torch.Tensor, indices: int | Sequence[int] | None = None
    ) -> list[torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def run_block(self, block: nn.Module, *args):
        """Call ``block``; with gradient checkpointing on for its stage (and grads enabled), recompute it in
        backward."""
        if (self.grad_checkpointing and self.training and torch.is_grad_enabled()
                and getattr(block, "grad_checkpointing", True)):
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    def stage_blocks(self) -> list[list[nn.Module]]:
        """The blocks :meth:`run_block` runs, grouped by stage (ViT: one stage); per-stage checkpointing picks
        from these."""
        raise NotImplementedError(f"{type(self).__name__} does not group its blocks by stage")

    def set_grad_checkpointing(self, enable: bool = True, stages: Sequence[int] | None = None) -> "VitkitModel":
        """Activation checkpointing (timm's name): recompute each block's activations in backward to save memory.

        ``stages`` (0-based, see :meth:`stage_blocks`) limits it to those stages: the early, high-resolution
        stages hold most of the activations of Swin, MViT and UniFormer, so checkpointing only them buys most of
        the saving for part of the recompute (``benchmarks/bench_train.py --checkpointing`` measures both).
        Not weights (:mod:`vitkit.checkpoints`) nor training state (:mod:`vitkit.engine.checkpoint`)."""
        self.grad_checkpointing = bool(enable)
        for m in self.modules():  # forget an earlier stage choice
            if m is not self:
                m.__dict__.pop("grad_checkpointing", None)
        if stages is None:
            return self
        groups = self.stage_blocks()
        chosen = set(stages)
        if any(not isinstance(s, int) or isinstance(s, bool) or not 0 <= s < len(groups) for s in chosen):
            raise ValueError(f"checkpointing stages of {type(self).__name__} are 0..{len(groups) - 1}, "
                             f"got {list(stages)}")
        for i, blocks in enumerate(groups):
            for b in blocks:
                b.grad_checkpointing = i in chosen
        return self

    # -- head ------------------------------------------------------------------------------------------------
    #: top-level module names of the classifier: the keys a weights loader replaces or resizes by name
    classifier_names: tuple[str, ...] = ("head",)

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a zero-initialised one with ``num_classes`` outputs (0 gives features).

        Zero initialisation follows the ViT paper's fine-tuning head (§3.2).
        """
        self.num_classes = num_classes
        in_features = self._head_in_features()
        if num_classes > 0:
            head = nn.Linear(in_features, num_classes)
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        else:
            head = nn.Identity()
        device = next(self.parameters()).device
        self.head = head.to(device)

    def _head_in_features(self) -> int:
        return self.num_features

    # -- optimiser hooks -------------------------------------------------------------------------------------
    def no_weight_decay(self) -> set[str]:
        """Names of parameters excluded from weight decay beyond norms and biases (position tables, tokens)."""
        return set()

    def layer_id(self, name: str) -> int:
        """Depth of a parameter: 0 for the stem, 1..N for blocks in forward order, N+1 for the head."""
        blocks = self.block_names()
        for i, prefix in enumerate(blocks):
            if name.startswith(prefix + "."):
                return i + 1
        if re.match(self.stem_pattern(), name):
            return 0
        return len(blocks) + 1

    def num_layer_ids(self) -> int:
        return len(self.block_names()) + 2

    def block_names(self) -> list[str]:
        """Module names of the residual blocks in forward order (each one LLRD layer)."""
        return [n for n, m in self.named_modules() if re.fullmatch(r"(.*\.)?blocks\d*\.\d+", n)]

    def stem_pattern(self) -> str:
        return r"(patch_embed|cls_token|pos_embed|stem)"


def select_indices(n: int, indices: int | Sequence[int] | None) -> list[int]:
    """Which of ``n`` outputs to return: None = all, int k = the last k, a sequence = those (negatives allowed)."""
    if indices is None:
        return list(range(n))
    if isinstance(indices, int):
        if not 0 < indices <= n:
            raise ValueError(f"indices must be in 1..{n}, got {indices}")
        return list(range(n - indices, n))
    out = [i % n if -n <= i < n else None for i in indices]
    if None in out:
        raise IndexError(f"indices {list(indices)} out of range for {n} outputs")
    return sorted(out)
