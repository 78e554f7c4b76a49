"""Every registered model: forward shape, backward, finite, deterministic in eval, forward_intermediates,
reset_classifier, clear input errors - at each variant's small test input (timm's test_models, for all families)."""
from __future__ import annotations

import pytest
import torch

import vitkit
from vitkit.registry import model_info

BIG = 120e6  # full-width models above this many parameters are slow to build: run them with -m slow


def _params(name: str) -> int:
    info = model_info(name)
    if info.paper_params:
        return int(info.paper_params * 1e6)
    return 0


def _cases() -> list:
    return [
        pytest.param(name, marks=[pytest.mark.slow] if _params(name) > BIG else [], id=name)
        for name in vitkit.list_models()
    ]


def _small_input(name: str, batch: int = 2) -> torch.Tensor:
    info = model_info(name)
    size = info.test_input_size or ((3, 4, 64, 64) if info.is_video else (3, 64, 64))
    return torch.randn(batch, *size)


@pytest.mark.parametrize("name", _cases())
def test_model_contract(name):
    model = vitkit.create_model(name, num_classes=7)
    x = _small_input(name)

    # forward + backward, finite
    model.train()
    out = model(x)
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    out.float().pow(2).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads), "some parameters got no gradient"
    assert all(torch.isfinite(g).all() for g in grads)

    # deterministic in eval
    model.eval()
    with torch.no_grad():
        a, b = model(x), model(x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)

    # features / head split
    with torch.no_grad():
        feats = model.forward_features(x)
        torch.testing.assert_close(model.forward_head(feats), a)
        pre = model.forward_head(feats, pre_logits=True)
        assert pre.shape == (2, model._head_in_features())

        maps = model.forward_intermediates(x)
    assert len(maps) >= 1
    rank = model.spatial_rank
    for m in maps:
        assert m.ndim == rank + 2 and m.shape[0] == 2, f"intermediate map of shape {tuple(m.shape)}"

    # reset_classifier
    model.reset_classifier(3)
    with torch.no_grad():
        assert model(x).shape == (2, 3)
    model.reset_classifier(0)
    with torch.no_grad():
        assert model(x).shape == (2, model._head_in_features())


@pytest.mark.parametrize("name", _cases())
def test_wrong_input_is_a_clear_error(name):
    with torch.device("meta"):
        model = vitkit.create_model(name)
    x = _small_input(name, batch=1).to("meta")
    with pytest.raises(ValueError, match="channels"):
        model(x[:, :1])
    with pytest.raises(ValueError, match=r"\d-D input"):
        model(x[0])
    with pytest.raises(TypeError, match="floating-point input.*torch.uint8"):
        model(x.to(torch.uint8))
    with pytest.raises(ValueError, match="empty batch"):
        model(x[:0])


def test_every_variant_has_metadata():
    for name in vitkit.list_models(include_demo=False):
        info = model_info(name)
        assert info.paper, f"{name} cites no paper"
        assert info.paper_params and info.paper_macs, f"{name} has no paper figures"
        assert len(info.mean) == len(info.std) == info.input_size[0]


# -- activation checkpointing by stage ---------------------------------------------------------------------------
_CKPT_MODELS = {  # a small model per family, with more than one stage where the family has stages
    "swin": ("swin_tiny_patch4_window7_224", dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1),
                                                   window_size=4, img_size=64), (2, 3, 64, 64)),
    "uniformer": ("uniformer_demo_32", {}, (2, 3, 32, 32)),
    "mvit": ("mvit_demo_8x32", {}, (1, 3, 8, 32, 32)),
    "vit": ("vit_demo_patch8_32", {}, (2, 3, 32, 32)),
}


@pytest.mark.parametrize("family", sorted(_CKPT_MODELS))
def test_grad_checkpointing_by_stage_recomputes_only_those_stages(family):
    """Blocks of the chosen stage start twice (forward, then the recompute in backward), all others once, and the
    gradients are those of the plain model."""
    name, kw, shape = _CKPT_MODELS[family]
    torch.manual_seed(0)
    model = vitkit.create_model(name, drop_path_rate=0.0, **kw).train()
    x = torch.randn(*shape)
    model(x).square().mean().backward()
    ref = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    groups = model.stage_blocks()
    stage = len(groups) - 1 if family == "vit" else 1
    calls: dict[int, int] = {}
    for i, blocks in enumerate(groups):
        for b in blocks:
            b.register_forward_pre_hook(lambda m, a, i=i: calls.__setitem__(i, calls.get(i, 0) + 1))
    model.zero_grad()
    model.set_grad_checkpointing(True, stages=[stage])
    model(x).square().mean().backward()
    for i, blocks in enumerate(groups):
        assert calls[i] == len(blocks) * (2 if i == stage else 1), (i, calls)
    for n, p in model.named_parameters():
        if n in ref:
            torch.testing.assert_close(p.grad, ref[n], rtol=1e-4, atol=1e-6)
    model.set_grad_checkpointing(True)  # all stages again: the earlier choice is forgotten
    assert all(getattr(b, "grad_checkpointing", True) for blocks in groups for b in blocks)


def test_grad_checkpointing_rejects_unknown_stages():
    model = vitkit.create_model("uniformer_demo_32")
    with pytest.raises(ValueError, match=r"stages of UniFormer are 0\.\.3, got \[4\]"):
        model.set_grad_checkpointing(True, stages=[4])


@pytest.mark.parametrize("name,shape,kw", [
    ("swin_tiny_patch4_window7_224", (2, 3, 61, 75), {"embed_dim": 24, "depths": (2, 2), "num_heads": (1, 2)}),
    ("mvit_demo_8x32", (1, 3, 8, 32, 32), {}),
    ("uniformer_demo_32", (2, 3, 32, 32), {}),
    ("vit_demo_patch4_32", (2, 3, 32, 32), {}),
])
@pytest.mark.parametrize("amp", [False, True])
def test_in_place_softmax_and_gelu_backward_leave_a_training_step_bitwise_unchanged(monkeypatch, name, shape, kw,
                                                                                     amp):
    """Whole models at odd sizes, fp32 and bf16 autocast: the loss and every parameter's gradient with attention's
    in-place softmax, its products on huge pages and the MLP's in-place GELU backward equal, bit for bit, those of
    the functional ops."""
    import importlib

    import torch.nn.functional as F

    attention_module = importlib.import_module("vitkit.layers.attention")  # the package's name is the function
    mlp_module = importlib.import_module("vitkit.layers.mlp")

    torch.manual_seed(0)
    model = vitkit.create_model(name, num_classes=5, **kw).train()
    x = torch.randn(shape)

    def step():
        model.zero_grad(set_to_none=True)
        torch.manual_seed(1)  # the same drop-path draws
        with torch.autocast("cpu", torch.bfloat16, enabled=amp):
            loss = model(x).float().square().mean()
        loss.backward()
        return [loss.detach()] + [p.grad.clone() for p in model.parameters()]

    monkeypatch.setattr(importlib.import_module("vitkit.layers.huge_pages"), "HUGE_PAGE_MIN_BYTES", 0)  # every product
    ours = step()
    monkeypatch.setattr(attention_module, "softmax_over_scores",
                        lambda logits, masked: attention_module.masked_softmax(logits) if masked
                        else logits.softmax(dim=-1))
    monkeypatch.setattr(mlp_module, "gelu_before_product", F.gelu)
    monkeypatch.setattr(attention_module, "batched_product", torch.matmul)
    plain = step()
    assert len(ours) == len(plain) > 10
    for a, b in zip(ours, plain):
        assert torch.equal(a, b)
