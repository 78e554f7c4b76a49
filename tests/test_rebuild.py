"""Saved tensors rebuilt in the backward instead of kept (vitkit.layers.rebuild): same values and gradients bit for
bit, less kept, and left alone where another mechanism decides what is kept."""
from __future__ import annotations

import contextlib
import gc
import weakref

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import vitkit
from vitkit.analysis.benchmark import AllocatedPeak
from vitkit.layers.attention import explicit_attention
from vitkit.layers.rebuild import normed, rebuild_saved_inputs, rebuilt_when_saved


def _grads(model: nn.Module, x: torch.Tensor, amp: bool, rebuild: bool) -> list[torch.Tensor]:
    model.zero_grad(set_to_none=True)
    with rebuild_saved_inputs(rebuild), torch.autocast("cpu", torch.bfloat16, enabled=amp):
        loss = F.cross_entropy(model(x), torch.arange(x.shape[0]) % 10)
    loss.backward()
    return [p.grad.clone() for p in model.parameters()]


SMALL_SWIN = {"embed_dim": 24, "depths": (2, 2), "num_heads": (1, 2)}

#: (model, kwargs, input): ViT at an odd size and batch; MViT v1, and v2-shaped (the shortcut's projection inside
#: attention reads the same normalised tokens, relative positions, residual pooling)
MODELS = {
    "vit": ("vit_demo_patch4_32", {"img_size": 36}, (3, 3, 36, 36)),
    "mvit-v1": ("mvit_demo_8x32", {}, (2, 3, 8, 32, 32)),
    "mvit-v2": ("mvit_demo_8x32", {"dim_mul_in_att": True, "rel_pos_spatial": True, "rel_pos_temporal": True,
                                   "residual_pooling": True}, (2, 3, 8, 32, 32)),
    # Swin: the windows qkv keeps are rebuilt (norm, pad, gather): a 14x14 map (a permutation, then a clipped
    # window) and a 15x15 one (padded to 21, shifted), and Video Swin
    "swin": ("swin_tiny_patch4_window7_224", {"img_size": 56, **SMALL_SWIN}, (2, 3, 56, 56)),
    "swin-padded": ("swin_tiny_patch4_window7_224", {"img_size": 60, **SMALL_SWIN}, (2, 3, 60, 60)),
    "video-swin": ("swin3d_tiny", {"num_frames": 4, "img_size": 32, "embed_dim": 24, "depths": (2, 2),
                                   "num_heads": (1, 2), "window_size": (2, 4, 4)}, (1, 3, 4, 32, 32)),
}


@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "bf16-autocast"])
@pytest.mark.parametrize("family", list(MODELS))
def test_training_gradients_are_bitwise_the_same_with_the_attention_input_rebuilt(family, amp):
    """Every parameter's gradient equal bit for bit with and without the rebuild, the drop-path branch too."""
    name, kwargs, shape = MODELS[family]
    torch.manual_seed(0)
    x = torch.randn(*shape)
    for drop_path in (0.0, 0.1):
        model = vitkit.create_model(name, num_classes=10, drop_path_rate=drop_path, **kwargs).train()
        torch.manual_seed(1)
        kept = _grads(model, x, amp, rebuild=False)
        torch.manual_seed(1)  # the same drop-path draws
        rebuilt = _grads(model, x, amp, rebuild=True)
        assert all(torch.equal(a, b) for a, b in zip(kept, rebuilt))


def _peaks(model: nn.Module, x: torch.Tensor) -> dict[bool, int]:
    """Peak of forward + backward (no optimiser: it lies at the start of the backward), without and with."""
    peaks = {}
    for rebuild in (False, True, False, True):
        with rebuild_saved_inputs(rebuild), AllocatedPeak() as counter:
            F.cross_entropy(model(x), torch.zeros(x.shape[0], dtype=torch.long)).backward()
        peaks[rebuild] = counter.peak
        model.zero_grad(set_to_none=True)
    return peaks


def test_rebuilding_lowers_the_training_peak_by_the_normalised_tokens():
    """The first product's input (the normalised tokens) is not kept: the peak falls by about one float32 token
    tensor per block (ViT: 65 tokens throughout; MViT: at least the last block's 17 tokens each; Swin: at least its
    first stage's windows), and ViT's by
    about a bf16 one under autocast; MViT's tokens feed two products there and stay (module doc)."""
    torch.manual_seed(0)
    vit = vitkit.create_model("vit_demo_patch4_32", num_classes=10).train()
    peaks = _peaks(vit, torch.randn(16, 3, 32, 32))
    assert peaks[True] <= peaks[False] - 0.9 * len(vit.blocks) * 16 * 65 * vit.embed_dim * 4
    name, kwargs, shape = MODELS["mvit-v2"]
    mvit = vitkit.create_model(name, num_classes=10, **kwargs).train()
    peaks = _peaks(mvit, torch.randn(8, *shape[1:]))
    assert peaks[True] <= peaks[False] - len(mvit.blocks) * 8 * 17 * 48 * 4
    swin_name, swin_kwargs, swin_shape = MODELS["swin"]  # first stage's two blocks: 14x14 tokens of 24 channels
    swin = vitkit.create_model(swin_name, num_classes=10, drop_path_rate=0.0, **swin_kwargs).train()
    peaks = _peaks(swin, torch.randn(8, *swin_shape[1:]))
    assert peaks[True] <= peaks[False] - 0.9 * 2 * 8 * 196 * 24 * 4
    with torch.autocast("cpu", torch.bfloat16):
        vit_bf16 = _peaks(vit, torch.randn(16, 3, 32, 32))
        mvit_bf16 = _peaks(mvit, torch.randn(8, *shape[1:]))
    assert vit_bf16[True] <= vit_bf16[False] - 0.9 * len(vit.blocks) * 16 * 65 * vit.embed_dim * 2
    assert mvit_bf16[True] == mvit_bf16[False]


def test_a_saved_tensor_is_rebuilt_once_in_the_backward_and_not_kept():
    """Only the named tensor is replaced by its recipe: it is freed after the forward, rebuilt when its op's
    backward runs (once), and the gradients are those of the plain graph."""
    torch.manual_seed(0)
    x = torch.randn(64, 32, requires_grad=True)
    w = torch.randn(16, 32, requires_grad=True)
    calls = []

    def rebuild():
        calls.append(1)
        return x.detach().sin()

    def run(rebuilt: bool):
        y = x.sin()
        ref = weakref.ref(y)
        if rebuilt:
            with rebuilt_when_saved(y, rebuild):
                out = F.linear(y, w).tanh()
        else:
            out = F.linear(y, w).tanh()
        del y
        gc.collect()
        alive = ref() is not None
        out.sum().backward()
        return alive, x.grad.clone(), w.grad.clone()

    kept_alive, gx, gw = run(False)
    x.grad = w.grad = None
    rebuilt_alive, rx, rw = run(True)
    assert kept_alive and not rebuilt_alive and calls == [1]
    assert torch.equal(gx, rx) and torch.equal(gw, rw)


def test_second_derivatives_through_a_rebuilt_input_are_the_plain_ones():
    """A gradient penalty (create_graph) through ViT with the input rebuilt: the rebuild runs differentiably, so
    the penalty's gradients equal those of the kept graph (explicit attention: SDPA has no double backward)."""
    torch.manual_seed(0)
    model = vitkit.create_model("vit_demo_patch4_32", num_classes=10).train()
    x = torch.randn(2, 3, 32, 32)

    def penalty_grads(rebuild: bool) -> list[torch.Tensor]:
        model.zero_grad(set_to_none=True)
        inp = x.clone().requires_grad_(True)
        with rebuild_saved_inputs(rebuild), explicit_attention():
            out = model(inp).logsumexp(-1).sum()
            g, = torch.autograd.grad(out, inp, create_graph=True)
            g.square().sum().backward()
        return [p.grad.clone() for p in model.parameters()]

    kept, rebuilt = penalty_grads(False), penalty_grads(True)
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(kept, rebuilt))


def test_nothing_is_rebuilt_under_checkpointing_torch_func_inference_or_a_hooked_norm():
    """Activation checkpointing's own hooks decide what its blocks keep, torch.func transforms forbid hooks,
    inference keeps nothing, and a LayerNorm with a forward hook (which may change its output) is called as it is:
    no recipe in any of these; a checkpointed ViT trains to the plain gradients."""
    torch.manual_seed(0)
    norm = nn.LayerNorm(8)
    x = torch.randn(4, 8)
    assert not isinstance(normed(norm, x, one_product=True)[1], contextlib.nullcontext)
    with torch.no_grad():
        assert isinstance(normed(norm, x, one_product=True)[1], contextlib.nullcontext)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):
        assert isinstance(normed(norm, x, one_product=True)[1], contextlib.nullcontext)
    torch._C._autograd._saved_tensors_hooks_disable("as torch.func transforms do")
    try:
        assert isinstance(normed(norm, x, one_product=True)[1], contextlib.nullcontext)
    finally:
        torch._C._autograd._saved_tensors_hooks_enable()
    handle = norm.register_forward_hook(lambda m, i, o: o * 2)
    y, context = normed(norm, x, one_product=True)
    handle.remove()
    assert isinstance(context, contextlib.nullcontext)
    assert torch.equal(y, F.layer_norm(x, (8,), norm.weight, norm.bias) * 2)
    model = vitkit.create_model("vit_demo_patch4_32", num_classes=10).train()
    images = torch.randn(2, 3, 32, 32)
    plain = _grads(model, images, amp=False, rebuild=False)
    model.set_grad_checkpointing(True)
    checkpointed = _grads(model, images, amp=False, rebuild=True)
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(plain, checkpointed))


class _Adapted(nn.Module):
    """A low-rank adapter around a Linear, as peft's LoRA wraps ViT's qkv: the tokens feed two products."""

    def __init__(self, base: nn.Linear, rank: int = 4) -> None:
        super().__init__()
        self.base, self.weight, self.bias = base, base.weight, base.bias
        self.down, self.up = nn.Linear(base.in_features, rank, bias=False), nn.Linear(rank, base.out_features, False)
        nn.init.normal_(self.up.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.up(self.down(x))


def test_an_adapted_qkv_keeps_autocast_gradients_bitwise():
    """With ViT's qkv replaced by an adapter module (its own call, in training and at inference, never the fused or
    native kernels that would skip the adapter), the tokens feed two products: under autocast they stay in float32
    so both input gradients meet in float32, as without the rebuild, bit for bit."""
    torch.manual_seed(0)
    model = vitkit.create_model("vit_demo_patch4_32", num_classes=10).train()
    x = torch.randn(3, 3, 32, 32)
    before = model.eval()(x)
    for block in model.blocks:
        block.attn.qkv = _Adapted(block.attn.qkv)
    with torch.no_grad():
        adapted = model(x)
        for block in model.blocks:
            block.attn.qkv.up.weight.zero_()
        assert torch.allclose(model(x), before, atol=1e-5) and not torch.allclose(adapted, before, atol=1e-3)
        for block in model.blocks:
            nn.init.normal_(block.attn.qkv.up.weight)
    model.train()
    kept, rebuilt = _grads(model, x, amp=True, rebuild=False), _grads(model, x, amp=True, rebuild=True)
    assert all(torch.equal(a, b) for a, b in zip(kept, rebuilt))
    assert all(b.attn.qkv.down.weight.grad.abs().sum() > 0 for b in model.blocks)
