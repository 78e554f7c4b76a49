"""q, k, v of a qkv projection as dense tensors, q scaled, in a CPU training step (vitkit.layers.heads): the same
values and gradients bit for bit as the official views and ``q * scale``, taken only where attention runs its
explicit form in training, and differentiable twice."""
from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F

import vitkit
from vitkit.layers import heads
from vitkit.layers.attention import explicit_attention

SMALL_SWIN = {"embed_dim": 24, "depths": (2, 2), "num_heads": (1, 2)}

#: (model, kwargs, input, explicit): ViT at an odd size and batch (attention made explicit: in fp32 it trains on
#: SDPA, and bf16's explicit choice depends on the CPU); Swin and Video Swin, whose trainable bias makes every
#: training step explicit, at a map that is a permutation (14x14) and one padded and shifted (15x15 -> 21);
#: UniFormer's global stages
MODELS = {
    "vit": ("vit_demo_patch4_32", {"img_size": 36}, (3, 3, 36, 36), True),
    "swin": ("swin_tiny_patch4_window7_224", {"img_size": 56, **SMALL_SWIN}, (2, 3, 56, 56), False),
    "swin-padded": ("swin_tiny_patch4_window7_224", {"img_size": 60, **SMALL_SWIN}, (2, 3, 60, 60), False),
    "video-swin": ("swin3d_tiny", {"num_frames": 4, "img_size": 32, "embed_dim": 24, "depths": (2, 2),
                                   "num_heads": (1, 2), "window_size": (2, 4, 4)}, (1, 3, 4, 32, 32), False),
    "uniformer": ("uniformer_small", {"depth": (1, 1, 2, 1), "embed_dim": (32, 64, 128, 256), "head_dim": 32,
                                      "img_size": 64}, (2, 3, 64, 64), True),
}


@pytest.fixture
def calls(monkeypatch) -> list[int]:
    """How many times attention took the dense heads."""
    seen = []
    attention_module = __import__("vitkit.layers.attention", fromlist=["scaled_heads"])
    real = attention_module.scaled_heads

    def counted(*args):
        seen.append(1)
        return real(*args)

    monkeypatch.setattr(attention_module, "scaled_heads", counted)
    return seen


def _step(model, x, amp: bool, dense: bool, explicit: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)  # the same drop-path draws on both sides
    with heads.dense_heads(dense), torch.autocast("cpu", torch.bfloat16, enabled=amp), \
            (explicit_attention() if explicit else contextlib.nullcontext()):
        logits = model(x)
        loss = F.cross_entropy(logits, torch.arange(x.shape[0]) % 10)
    loss.backward()
    return logits.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "bf16-autocast"])
@pytest.mark.parametrize("family", list(MODELS))
def test_training_step_is_bitwise_the_same_with_dense_heads(family, amp, calls):
    """Logits and every parameter's gradient equal bit for bit with and without, drop path on; and the dense
    heads were taken (once per attention block)."""
    name, kwargs, shape, explicit = MODELS[family]
    torch.manual_seed(0)
    x = torch.randn(*shape)
    model = vitkit.create_model(name, num_classes=10, drop_path_rate=0.1, **kwargs).train()
    views = _step(model, x, amp, dense=False, explicit=explicit)
    assert not calls
    dense = _step(model, x, amp, dense=True, explicit=explicit)
    assert calls
    assert torch.equal(views[0], dense[0])
    assert all(torch.equal(a, b) for a, b in zip(views[1], dense[1]))


def test_dense_heads_are_for_training_steps_only(calls):
    """Inference, no-grad forwards and a frozen projection keep the official views."""
    model = vitkit.create_model("vit_demo_patch4_32", num_classes=10)
    x = torch.randn(2, 3, 32, 32)
    with explicit_attention():
        model.eval()(x).sum().backward()  # eval mode still trains the weights: a gradient step takes them
        assert len(calls) == len(model.blocks)
        calls.clear()
        with torch.no_grad():
            model.train()(x)
        for p in model.parameters():
            p.requires_grad_(False)
        model(x.requires_grad_(False))
    assert not calls


def test_dense_heads_gradient_is_differentiable_twice():
    """create_graph=True: the gradient of a gradient (a penalty on it) equals the views' bit for bit."""
    torch.manual_seed(0)
    qkv0 = torch.randn(2, 7, 3 * 3 * 4, dtype=torch.float64)
    results = []
    for dense in (False, True):
        qkv = qkv0.clone().requires_grad_(True)
        if dense:
            q, k, v = heads.scaled_heads(qkv, 3, 4, 0.5)
        else:
            q, k, v = heads.head_views(qkv, 3, 4)
            q = q * 0.5
        out = ((q @ k.transpose(-2, -1)).softmax(-1) @ v).square().sum()
        (grad,) = torch.autograd.grad(out, qkv, create_graph=True)
        grad.square().sum().backward()
        results.append((grad.detach(), qkv.grad))
    assert torch.equal(results[0][0], results[1][0])
    assert torch.equal(results[0][1], results[1][1])
