"""Caches of size-derived tensors (window orders, masks, bias indices, Swin's evaluation bias, MViTv2 distance
tables): one bounded helper, safe to train after a forward under ``torch.inference_mode()``, empty in copies."""
from __future__ import annotations

import copy
import pickle

import pytest
import torch

import vitkit
from vitkit.layers.cache import TensorCache

_TINY_SWIN = dict(embed_dim=24, depths=(2, 2, 2, 2), num_heads=(1, 2, 3, 6))
# one small model per family and rank; each exercises its family's caches (Swin: shifted windows with masks in
# stages 1-2 and clipped windows after; MViT: decomposed relative positions over space and time)
_SLOW = {"vit_demo_video_8x32", "mvitv2_tiny", "uniformer_demo_32"}  # same caches as a faster case of the family
FAMILIES = [
    pytest.param(name, overrides, size, id=name, marks=[pytest.mark.slow] if name in _SLOW else [])
    for name, overrides, size in [
        ("vit_demo_patch4_32", {}, (3, 32, 32)),
        ("vit_demo_video_8x32", {}, (3, 8, 32, 32)),
        ("swin_tiny_patch4_window7_224", _TINY_SWIN, (3, 64, 64)),
        ("swin3d_tiny", _TINY_SWIN, (3, 4, 64, 64)),
        ("mvitv2_tiny", {}, (3, 32, 32)),
        ("mvit_demo_8x32", dict(rel_pos_spatial=True, rel_pos_temporal=True, residual_pooling=True), (3, 8, 32, 32)),
        ("uniformer_demo_32", {}, (3, 32, 32)),
        ("uniformer_demo_video_8x32", {}, (3, 8, 32, 32)),
    ]
]


@pytest.mark.parametrize("name,overrides,size", FAMILIES)
def test_training_after_an_inference_mode_forward(name, overrides, size):
    """Evaluation and benchmarks run under inference mode; training the same model afterwards must work."""
    model = vitkit.create_model(name, num_classes=5, **overrides).eval()
    x = torch.randn(2, *size)
    with torch.inference_mode():
        ref = model(x)
    out = model(x)  # autograd on, reusing whatever the inference-mode forward cached
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    out.pow(2).mean().backward()
    model.train()
    model.zero_grad()
    model(x).pow(2).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_values_built_in_inference_mode_are_ordinary_tensors():
    cache = TensorCache(4)
    w = torch.ones(3, requires_grad=True)
    with torch.inference_mode():
        t = cache.get("k", lambda: torch.arange(3) * 2.0)
        u = cache.get("w", lambda: w * 2)  # built from a parameter: no graph kept either
    assert not t.is_inference() and not u.is_inference() and not u.requires_grad
    assert cache.get("k", lambda: None) is t


def test_bounded_least_recently_used():
    cache = TensorCache(2)
    a = cache.get("a", lambda: torch.zeros(1))
    cache.get("b", lambda: torch.zeros(1))
    assert cache.get("a", lambda: None) is a  # a is now the most recent
    cache.get("c", lambda: torch.zeros(1))  # evicts b
    assert len(cache) == 2 and cache.get("b", lambda: "rebuilt") == "rebuilt"

    by_bytes = TensorCache(100, max_bytes=1000)
    for i in range(5):
        by_bytes.get(i, lambda: torch.zeros(100))  # 400 bytes each
    assert len(by_bytes) == 2 and by_bytes.nbytes == 800
    by_bytes.get("big", lambda: torch.zeros(1000))  # larger than the bound alone: kept, the rest dropped
    assert len(by_bytes) == 1
    assert TensorCache(4, max_bytes=0).get("m", lambda: torch.zeros(10, device="meta")).is_meta


def test_stale_entries_are_rebuilt():
    cache, version = TensorCache(4), [0]
    first = cache.get("k", lambda: (version[0], torch.zeros(1)), stale=lambda v: v[0] != version[0])
    assert cache.get("k", lambda: None, stale=lambda v: v[0] != version[0]) is first
    version[0] = 1
    assert cache.get("k", lambda: (1, torch.ones(1)), stale=lambda v: v[0] != version[0])[0] == 1
    assert len(cache) == 1


def test_copies_start_empty():
    cache = TensorCache(3, max_bytes=10_000)
    cache.get("a", lambda: torch.zeros(2))
    for twin in (copy.deepcopy(cache), pickle.loads(pickle.dumps(cache))):
        assert len(twin) == 0 and twin.maxsize == 3 and twin.max_bytes == 10_000


def test_package_caches_are_bounded_helpers():
    from vitkit.layers import windows
    from vitkit.models import mvit, swin

    assert isinstance(windows._CACHE, TensorCache) and windows._CACHE.max_bytes
    assert isinstance(mvit._DIST, TensorCache)
    block = vitkit.create_model("swin_tiny_patch4_window7_224", **_TINY_SWIN).layers[0].blocks[1]
    assert isinstance(block.attn._bias_cache, TensorCache)
    assert isinstance(swin.WindowAttention(8, 2, (7, 7))._bias_cache, TensorCache)
