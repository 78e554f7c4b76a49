"""What a dense model built as ``self.backbone`` (a backbone view) + heads shares: the optimiser hooks and the input
normalisation.

The optimiser hooks (:func:`vitkit.engine.optim.build_optimizer`): the backbone's weight-decay exemptions and layer
ids (layer-wise lr decay) under the ``backbone.`` prefix; every other module (neck, heads) trains at the top rate,
as the official LLRD recipes do. The normalisation: the backbone's mean / std as non-persistent buffers ``mean`` /
``std`` shaped for (B, C, H, W) or (B, C, T, H, W) inputs in [0, 1].
"""
from __future__ import annotations

import torch


class BackboneHooks:
    """Mixin for an ``nn.Module`` with a ``backbone`` attribute (a ``features_only`` model)."""

    def no_weight_decay(self) -> set[str]:
        skip = self.backbone.no_weight_decay() if hasattr(self.backbone, "no_weight_decay") else set()
        return {f"backbone.{n}" for n in skip}

    def num_layer_ids(self) -> int:
        return self.backbone.num_layer_ids()

    def layer_id(self, name: str) -> int:
        if name.startswith("backbone."):
            return self.backbone.layer_id(name[len("backbone."):])
        return self.num_layer_ids() - 1

    def set_grad_checkpointing(self, enable: bool = True, stages=None) -> None:
        """Activation checkpointing of the backbone's blocks (``stages``: only those stages' blocks)."""
        self.backbone.set_grad_checkpointing(enable, stages)

    def register_normalisation(self, video: bool = False) -> None:
        """Buffers ``mean`` / ``std`` from the backbone's input spec, for image (or ``video``) batches."""
        spec = getattr(self.backbone, "input_spec", None) or self.backbone.info
        shape = (1, -1, 1, 1, 1) if video else (1, -1, 1, 1)
        self.register_buffer("mean", torch.tensor(spec.mean).view(shape), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(shape), persistent=False)
