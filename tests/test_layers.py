import gc
import math
import importlib
import pytest
import torch
import torch.nn.functional as F

from vitkit.layers import (
    Attention,
    DropPath,
    PatchEmbed,
    attention,
    drop_path_rates,
    explicit_attention,
    record_attention,
    resample_pos_embed,
    resample_rel_pos_table,
)
from vitkit.layers.attention import masked_softmax, softmax_over_scores
from op_calls import OpCalls


def test_resample_same_size_is_bit_exact_identity():
    pe = torch.randn(1, 1 + 14 * 14, 32)
    assert resample_pos_embed(pe, (14, 14), num_prefix_tokens=1) is pe
    table = torch.randn(13 * 13, 4)
    assert resample_rel_pos_table(table, (7, 7), (7, 7)) is table


def test_resample_keeps_prefix_tokens_and_round_trips():
    torch.manual_seed(0)
    # a smooth embedding survives a -> b -> a almost unchanged
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 14), torch.linspace(0, 1, 14), indexing="ij")
    grid = torch.stack([torch.sin(3 * yy), torch.cos(2 * xx), yy * xx], -1).reshape(1, 196, 3)
    prefix = torch.randn(1, 2, 3)
    pe = torch.cat([prefix, grid], 1)
    up = resample_pos_embed(pe, (24, 24), num_prefix_tokens=2)
    assert up.shape == (1, 2 + 576, 3)
    torch.testing.assert_close(up[:, :2], prefix)
    back = resample_pos_embed(up, (14, 14), num_prefix_tokens=2)
    assert (back - pe).abs().max() < 0.02


def test_resample_non_square_grid_needs_and_uses_the_old_grid():
    pe = torch.randn(1, 1 + 12 * 20, 8)
    with pytest.raises(ValueError, match="grid"):
        resample_pos_embed(pe, (24, 40), num_prefix_tokens=1)
    out = resample_pos_embed(pe, (24, 40), old_grid=(12, 20), num_prefix_tokens=1)
    assert out.shape == (1, 1 + 960, 8)


def test_rel_pos_table_resample_shape_7_to_12():
    t = torch.randn(13 * 13, 3)
    assert resample_rel_pos_table(t, (7, 7), (12, 12)).shape == (23 * 23, 3)


@pytest.mark.parametrize("with_bias", [False, True, "per batch"])
@pytest.mark.parametrize("with_mask", [False, True])
def test_fused_attention_equals_explicit_softmax(with_bias, with_mask):
    """Fused and explicit attention equal softmax(q k^T * scale + bias + mask) v; a (M, Nq, Nk) mask goes to
    batch entry g * M + m as mask[m] (Swin's windows of each image), for every head."""
    q, k, v = (torch.randn(6, 3, 10, 8) for _ in range(3))
    bias = {False: None, True: torch.randn(1, 3, 10, 10), "per batch": torch.randn(6, 3, 10, 10)}[with_bias]
    mask = torch.where(torch.rand(3, 10, 10) < 0.3, -100.0, 0.0) if with_mask else None
    full = (0 if bias is None else bias) + (0 if mask is None else mask.repeat(2, 1, 1).unsqueeze(1))
    ref = F.softmax(q @ k.transpose(-2, -1) * 8**-0.5 + full, -1) @ v
    torch.testing.assert_close(attention(q, k, v, bias, mask=mask), ref, atol=1e-5, rtol=1e-5)
    with explicit_attention():
        torch.testing.assert_close(attention(q, k, v, bias, mask=mask), ref, atol=1e-5, rtol=1e-5)


def _masked_scores(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    torch.manual_seed(0)
    logits = torch.randn(4, 3, 10, 10) + torch.where(torch.rand(4, 1, 10, 10) < 0.3, -100.0, 0.0)
    logits[..., 0] = 0.0  # no row fully masked
    return logits.to(dtype)


def test_masked_softmax_makes_no_subnormal_probabilities(threads):
    """Masked float32 scores: no probability is subnormal where plain softmax makes some, and values and gradient
    agree with softmax to float32 rounding, in training and without autograd, with one thread and with two."""
    logits = _masked_scores()
    tiny = torch.finfo(torch.float32).tiny
    leaf = logits.clone().requires_grad_()
    plain = leaf.softmax(-1)
    assert ((plain != 0) & (plain < tiny)).any()  # the case this is for
    flushed = masked_softmax(logits.clone().requires_grad_())
    assert not ((flushed != 0) & (flushed < tiny)).any()
    torch.testing.assert_close(flushed, plain, rtol=1e-6, atol=1e-30)
    grad = torch.randn_like(plain)
    mine = logits.clone().requires_grad_()
    masked_softmax(mine).backward(grad)
    plain.backward(grad)
    torch.testing.assert_close(mine.grad, leaf.grad, rtol=1e-6, atol=1e-30)
    with torch.no_grad():
        torch.testing.assert_close(masked_softmax(logits), plain.detach(), rtol=1e-6, atol=1e-30)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_masked_softmax_under_torch_compile_makes_no_subnormal_numbers(dtype):
    """Compiled (Inductor, CPU), masked float32 scores take the floor as fused ops: no probability and no gradient
    of the scores is subnormal, where plain softmax, which the traced model ran before, makes them (and runs its
    exponentials and products on them through the processor's slow path). bf16 takes no floor compiled (it did not
    pay there): plain softmax, whose bf16 outputs round such terms to 0, or with one thread in training eager's
    flushed kernel (the next test). Values and gradients agree with plain softmax to the dtype's rounding, with
    and without autograd."""
    logits = _masked_scores(dtype)
    tiny = torch.finfo(torch.float32).tiny
    subnormal = lambda t: ((t != 0) & (t.float().abs() < tiny)).any().item()  # noqa: E731
    leaf = logits.float().clone().requires_grad_()
    plain = leaf.softmax(-1)
    assert subnormal(plain)  # the case this is for
    grad = torch.randn_like(plain)
    plain.backward(grad)
    torch._dynamo.reset()
    compiled = torch.compile(masked_softmax, fullgraph=True)
    mine = logits.clone().requires_grad_()
    probs = compiled(mine)
    probs.backward(grad.to(dtype))
    assert probs.dtype == dtype and not subnormal(probs) and not subnormal(mine.grad)
    tol = dict(rtol=1e-6, atol=1e-30) if dtype == torch.float32 else dict(rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(probs.float(), plain.detach(), **tol)
    # the gradient p (g - sum(g p)) cancels: float32 rounding of its O(1) terms, summed in Inductor's order
    torch.testing.assert_close(mine.grad.float(), leaf.grad, **(dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32
                                                                else tol))
    with torch.no_grad():
        torch.testing.assert_close(compiled(logits).float(), plain.detach(), **tol)


@pytest.mark.usefixtures("one_thread")
def test_compiled_bf16_masked_softmax_runs_the_eager_flushed_kernel():
    """Compiled for CPU training with one thread, a masked bf16 softmax is vitkit::masked_softmax and its backward
    vitkit::masked_softmax_backward (eager's kernels with the processor flushing subnormals, where Inductor's fused
    softmax made subnormal exponentials): outputs and gradients are eager's bit for bit; with the switch off, or
    without autograd, the graph keeps plain softmax. Both operators pass opcheck."""
    from vitkit.layers.attention import compiled_softmax_flush

    logits = _masked_scores(torch.bfloat16)
    grad = torch.randn(logits.shape).bfloat16()

    def run(f):
        leaf = logits.clone().requires_grad_()
        probs = f(leaf)
        probs.backward(grad)
        return probs.detach(), leaf.grad

    eager = run(masked_softmax)
    for enabled in (True, False):
        torch._dynamo.reset()
        graphs = []
        with compiled_softmax_flush(enabled):
            compiled = run(torch.compile(masked_softmax, backend=_graph_keeping_backend(graphs), fullgraph=True))
        forward, backward = graphs
        assert ("vitkit.masked_softmax.default" in forward) == enabled
        assert ("vitkit.masked_softmax_backward.default" in backward) == enabled
        if enabled:
            assert all(torch.equal(a, b) for a, b in zip(compiled, eager))
    torch._dynamo.reset()
    graphs = []
    with torch.no_grad():
        torch.compile(masked_softmax, backend=_graph_keeping_backend(graphs), fullgraph=True)(logits)
    assert "vitkit.masked_softmax" not in graphs[0]
    probs = torch.ops.vitkit.masked_softmax(logits)
    torch.library.opcheck(torch.ops.vitkit.masked_softmax.default, (logits.clone().requires_grad_(),))
    torch.library.opcheck(torch.ops.vitkit.masked_softmax_backward.default, (grad, probs))


def test_masked_softmax_keeps_its_exponentials_normal_by_flushing_or_by_the_floor(threads):
    """With one thread the softmax kernel (forward and backward) runs with the processor flushing subnormals to
    zero, and the thread's own mode is as before afterwards; with two, float32 scores reach the kernel raised to
    within -(log(tiny) + log(n) + 1) of their row's maximum (plain softmax gets the -100 scores as they are) and
    nothing flushes."""
    from vitkit.layers.subnormals import flushing

    logits = _masked_scores()
    ops = [torch.ops.aten._softmax.default, torch.ops.aten._softmax.out, torch.ops.aten._softmax_backward_data.default]
    calls = OpCalls(lambda func, args, out: (str(func), flushing(), args[0].clone()), ops)
    with calls:
        masked_softmax(logits.clone().requires_grad_()).backward(torch.randn_like(logits))
    kinds = {name.split(".")[1]: (flush, arg) for name, flush, arg in calls.seen}
    assert set(kinds) == {"_softmax", "_softmax_backward_data"}
    assert not flushing()
    depth = -(math.log(torch.finfo(torch.float32).tiny) + math.log(logits.shape[-1]) + 1.0)
    flush, scores = kinds["_softmax"]
    if threads == 1:
        assert flush and kinds["_softmax_backward_data"][0]
        assert torch.equal(scores, logits)
    else:
        assert not flush and not kinds["_softmax_backward_data"][0]
        assert (scores - scores.amax(-1, keepdim=True)).min() >= -depth - 1e-4
        assert (logits - logits.amax(-1, keepdim=True)).min() < -depth


@pytest.mark.parametrize("why", ["turned off", "the CPU cannot flush"])
def test_masked_softmax_floors_float32_where_it_does_not_flush(one_thread, monkeypatch, why):
    """``subnormal_flushing(False)``, or a CPU that cannot flush: one thread runs the float32 floor (its raised
    scores reach the kernel), not the flushing kernel; with values as the flushed softmax's."""
    import contextlib
    import importlib

    subnormals = importlib.import_module("vitkit.layers.subnormals")
    logits = _masked_scores()
    flushed = masked_softmax(logits.clone())
    if why == "turned off":
        off = subnormals.subnormal_flushing(False)
    else:
        off = contextlib.nullcontext()
        monkeypatch.setattr(subnormals, "can_flush", lambda: False)
    calls = OpCalls(lambda func, args, out: (subnormals.flushing(), args[0].clone()),
                    [torch.ops.aten._softmax.default, torch.ops.aten._softmax.out])
    with off, calls:
        probs = masked_softmax(logits.clone())
    ((flush, scores),) = calls.seen
    assert not flush and not torch.equal(scores, logits)  # the floor raised them
    torch.testing.assert_close(probs, flushed, rtol=1e-6, atol=1e-30)
    assert subnormals._FLUSH.on


def test_masked_softmax_leaves_a_thread_that_already_flushes_flushing():
    from vitkit.layers.subnormals import flush_subnormals, flushing

    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush subnormals")
    try:
        with flush_subnormals() as on:
            assert on and flushing()
        assert flushing()
    finally:
        torch.set_flush_denormal(False)
    assert not flushing()


def test_masked_softmax_in_bf16_is_plain_softmax_with_subnormal_terms_at_zero(threads):
    """bf16 scores: one thread flushes (probabilities bitwise plain softmax's, except those plain softmax leaves
    below float32's smallest normal: 0), two threads run plain softmax."""
    half = _masked_scores(torch.bfloat16)
    plain = half.softmax(-1)
    tiny = torch.finfo(torch.float32).tiny
    want = plain.masked_fill(plain.float() < tiny, 0.0) if threads == 1 else plain
    assert torch.equal(masked_softmax(half), want)
    leaf = half.clone().requires_grad_()
    grad = torch.randn_like(plain)
    masked_softmax(leaf).backward(grad)
    ref = half.clone().requires_grad_()
    ref.softmax(-1).backward(grad)
    torch.testing.assert_close(leaf.grad, ref.grad, rtol=0, atol=tiny)


@pytest.mark.parametrize("dtype,masked", [(torch.float32, False), (torch.float32, True), (torch.bfloat16, False),
                                          (torch.bfloat16, True)])
def test_softmax_over_scores_overwrites_them_with_softmax_values_and_gradients(dtype, masked):
    """Attention's own scores: the probabilities are written over them (no second scores-sized tensor), and the
    scores' gradient over the probabilities' in the backward; values and gradients through the products before
    and after are bitwise plain softmax's (masked float32: :func:`masked_softmax`'s), in training, under no_grad
    and under inference_mode; odd sizes, 49- and 392-wide rows; the caller's tensors are left as they were."""
    torch.manual_seed(0)
    for rows, width in ((7, 9), (5, 49), (3, 392)):
        a, b = torch.randn(2, 3, rows, 5, dtype=dtype), torch.randn(2, 3, 5, width, dtype=dtype)
        v, grad = torch.randn(2, 3, width, 4, dtype=dtype), torch.randn(2, 3, rows, 4, dtype=dtype)
        kept = [t.clone() for t in (a, b, v, grad)]
        mask = torch.where(torch.rand(rows, width) < 0.3, -100.0, 0.0).to(dtype)
        reference = masked_softmax if masked else (lambda t: t.softmax(-1))

        def run(fn):
            la, lb, lv = (t.clone().requires_grad_() for t in (a, b, v))
            scores = (la @ lb).add_(mask) if masked else la @ lb
            address = scores.data_ptr()
            probs = fn(scores)
            (probs @ lv).backward(grad)
            return probs.detach(), la.grad, lb.grad, lv.grad, probs.data_ptr() == address

        *want, want_shared = run(reference)
        *got, shared = run(lambda t: softmax_over_scores(t, masked))
        assert shared and not want_shared
        for g, w in zip(got, want):
            assert torch.equal(g, w)
        assert all(torch.equal(t, k) for t, k in zip((a, b, v, grad), kept))
        for mode in (torch.no_grad, torch.inference_mode):
            with mode():
                scores = (a @ b).add_(mask) if masked else a @ b
                address = scores.data_ptr()
                probs = softmax_over_scores(scores, masked)
            assert probs.data_ptr() == address and torch.equal(probs, want[0])


def test_softmax_over_scores_writes_the_gradient_over_the_incoming_one_only_when_it_may():
    """The backward reuses the probabilities' gradient for the scores' only when it is a dense tensor of their
    shape, and not while a graph of the backward is built (second derivatives stay right)."""
    torch.manual_seed(0)
    grads = OpCalls(lambda func, args, out: str(func), [torch.ops.aten._softmax_backward_data.default,
                                                        torch.ops.aten._softmax_backward_data.out])
    with grads:
        a = torch.randn(2, 4, 6, requires_grad=True)
        probs = softmax_over_scores(a * 1.0, False)
        probs.sum().backward()  # an expanded gradient of ones: not written over
    assert grads.seen == ["aten._softmax_backward_data.default"]
    torch.testing.assert_close(a.grad, torch.zeros_like(a), atol=1e-7, rtol=0)
    a2 = torch.randn(2, 4, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda t: softmax_over_scores(t * 1.0, False) @ torch.ones(6, 3, dtype=t.dtype),
                                        (a2,))


def test_explicit_attention_training_takes_the_in_place_softmax():
    """The explicit attention path (a trainable bias: Swin, MViT) runs its softmax over its own scores in place,
    with and without a shift mask, and its gradients match the textbook formula."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(4, 2, 6, 8, requires_grad=True) for _ in range(3))
    bias = torch.randn(1, 2, 6, 6, requires_grad=True)
    mask = torch.where(torch.rand(2, 6, 6) < 0.3, -100.0, 0.0)
    for m in (None, mask):
        with OpCalls(lambda func, args, out: str(func), [torch.ops.aten._softmax.default,
                                                         torch.ops.aten._softmax.out]) as calls:
            out = attention(q, k, v, bias, mask=m)
        assert calls.seen == ["aten._softmax.out"], calls.seen
        full = bias if m is None else bias + m.repeat(2, 1, 1).unsqueeze(1)
        ref = F.softmax(q @ k.transpose(-2, -1) * 8**-0.5 + full, -1) @ v
        grad = torch.randn_like(out)
        got = torch.autograd.grad(out, (q, k, v, bias), grad)
        want = torch.autograd.grad(ref, (q, k, v, bias), grad)
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)


def test_record_attention_returns_probabilities():
    attn = Attention(16, num_heads=4).eval()
    x = torch.randn(2, 5, 16)
    plain = attn(x)
    with record_attention() as rec:
        recorded = attn(x)
    torch.testing.assert_close(plain, recorded, atol=1e-5, rtol=1e-5)
    assert len(rec) == 1 and rec[0]["probs"].shape == (2, 4, 5, 5)
    torch.testing.assert_close(rec[0]["probs"].sum(-1), torch.ones(2, 4, 5))


def test_patch_embed_rank_follows_patch_size_and_checks_input():
    pe2 = PatchEmbed(16, 3, 8)
    assert pe2(torch.randn(1, 3, 32, 48)).shape == (1, 8, 2, 3)
    pe3 = PatchEmbed((2, 16, 16), 3, 8)
    assert pe3(torch.randn(1, 3, 4, 32, 32)).shape == (1, 8, 2, 2, 2)
    with pytest.raises(ValueError, match="not divisible by the patch size"):
        pe2(torch.randn(1, 3, 30, 32))
    with pytest.raises(ValueError, match="3 input channels"):
        pe2(torch.randn(1, 1, 32, 32))


@pytest.mark.parametrize("patch,shape,amp", [(16, (2, 3, 48, 80), True), ((2, 16, 16), (1, 3, 4, 32, 48), True),
                                             (14, (2, 3, 28, 42), True), (4, (2, 3, 8, 12), True),
                                             (16, (2, 3, 48, 80), False)])
def test_patch_embed_trains_as_a_matrix_product_with_the_convolutions_values(patch, shape, amp):
    """A CPU bf16 training step embeds large patches (ViT's, >= 64 pixels) as one matrix product over the unfolded
    patches: the convolution's output and gradients to rounding, and tokens that flatten without a copy; Swin's
    4x4 patches, float32 (it would keep the patches for the backward) and inference keep the convolution."""
    from vitkit.layers.patch_embed import GEMM_MIN_PATCH

    torch.manual_seed(0)
    pe = PatchEmbed(patch, 3, 24)
    x = torch.randn(shape)
    gemm = math.prod(pe.patch_size) >= GEMM_MIN_PATCH and amp and _native_bf16()
    results = []
    for ours in (True, False):
        pe.zero_grad(set_to_none=True)
        xg = x.clone().requires_grad_()
        ops = _OpNames()
        with torch.autocast("cpu", torch.bfloat16, enabled=amp), ops:
            y = pe(xg) if ours else pe.proj(xg)
        assert any("convolution" in n for n in ops.names) == (not ours or not gemm)
        if ours and gemm:
            assert y.flatten(2).transpose(1, 2).is_contiguous()  # the tokens ViT takes: a view
        y.float().square().sum().backward()
        results.append((y.float(), xg.grad, pe.proj.weight.grad, pe.proj.bias.grad))
    tol = dict(rtol=2e-2, atol=5e-2) if amp else dict(rtol=1e-4, atol=1e-4)
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, **tol)
    with torch.no_grad():
        ops = _OpNames()
        with ops:
            pe(x)
        assert any("convolution" in n for n in ops.names)


def test_drop_path_schedule_and_behaviour():
    assert drop_path_rates(0.2, 5) == pytest.approx([0, 0.05, 0.1, 0.15, 0.2])
    dp = DropPath(0.5)
    x = torch.ones(1000, 4)
    dp.train()
    y = dp(x)
    kept = (y[:, 0] != 0).float().mean()
    assert 0.4 < kept < 0.6 and torch.allclose(y[y != 0], torch.full_like(y[y != 0], 2.0))
    dp.eval()
    assert dp(x) is x


def test_fused_cpu_linear_path_matches_plain_ops():
    from vitkit.layers import Mlp
    from vitkit.layers.fused import fused_linear_enabled
    from vitkit.analysis.profile import MacCounter

    mlp, attn = Mlp(32, 64).eval(), Attention(32, 4).eval()
    x = torch.randn(2, 7, 32)
    with torch.no_grad():
        with fused_linear_enabled(False):
            ref_mlp, ref_attn = mlp(x, residual=x), attn(x, residual=x)
        counter = MacCounter()
        with counter:
            out_mlp = mlp(x, residual=x)
        out_attn = attn(x, residual=x)
    torch.testing.assert_close(out_mlp, ref_mlp, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_attn, ref_attn, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ref_mlp, x + mlp.fc2(F.gelu(mlp.fc1(x))), atol=1e-6, rtol=1e-6)
    assert counter.total == 2 * 7 * (32 * 64 + 64 * 32)  # the fused ops are counted like Linear


class _OpNames(torch.utils._python_dispatch.TorchDispatchMode):
    """Records the name of every aten / mkldnn op run inside it, and the dtype of its first argument."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []
        self.dtypes: list[torch.dtype | None] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func))
        self.dtypes.append(args[0].dtype if args and isinstance(args[0], torch.Tensor) else None)
        return func(*args, **(kwargs or {}))


def _first_contiguous(func, args, out) -> bool:
    """For :class:`OpCalls`: whether the op's first argument was a contiguous tensor."""
    return args[0].is_contiguous()


def _native_bf16() -> bool:
    from vitkit.layers.cpu_features import native_bf16

    return native_bf16()


@pytest.mark.skipif(not _native_bf16(), reason="the bf16 fused path runs only on CPUs with bf16 units")
def test_fused_bf16_autocast_linear_matches_plain_autocast_to_bf16_rounding():
    from vitkit.layers import Mlp
    from vitkit.layers.fused import fused_linear_enabled

    torch.manual_seed(0)
    mlp, attn = Mlp(64, 128).eval(), Attention(64, 4).eval()
    x = torch.randn(2, 9, 64)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        with fused_linear_enabled(False):
            refs = [mlp(x), mlp(x, residual=x), attn(x, residual=x), mlp(x.bfloat16(), residual=x.bfloat16())]
        ops = _OpNames()
        with ops:
            outs = [mlp(x), mlp(x, residual=x), attn(x, residual=x), mlp(x.bfloat16(), residual=x.bfloat16())]
    assert sum("_linear_pointwise" in n for n in ops.names) == 2 + 2 + 2 + 2
    assert not any("addmm" in n or "gelu" in n for n in ops.names)  # bias, GELU and bf16 add in the GEMM
    for out, ref in zip(outs, refs):
        assert out.dtype == ref.dtype  # bf16 alone, float32 where a float32 residual is added (as autocast)
        torch.testing.assert_close(out.float(), ref.float(), atol=2e-2, rtol=2e-2)  # bf16: 8 bits of mantissa
    exact = x + mlp.fc2(F.gelu(mlp.fc1(x)))
    assert (outs[1] - exact).abs().max() < 4 * (refs[1] - exact).abs().max() + 1e-3  # no worse than autocast


@pytest.mark.skipif(not _native_bf16(), reason="the bf16 fused path runs only on CPUs with bf16 units")
def test_fused_bf16_weights_are_cast_once_and_follow_changes():
    import vitkit.layers.fused as fused
    from vitkit.layers.fused import bf16_params

    lin = torch.nn.Linear(8, 4)
    w1, b1 = bf16_params(lin)
    assert bf16_params(lin)[0] is w1 and w1.dtype == b1.dtype == torch.bfloat16
    assert torch.equal(w1, lin.weight.detach().bfloat16())
    with torch.no_grad():
        lin.weight.mul_(2)  # in place: the version counter moves, the copy is rebuilt
    assert torch.equal(bf16_params(lin)[0], 2 * w1)
    lin.load_state_dict({"weight": torch.zeros(4, 8), "bias": torch.ones(4)})
    w3, b3 = bf16_params(lin)
    assert not w3.any() and torch.equal(b3, torch.ones(4, dtype=torch.bfloat16))
    lin.weight = torch.nn.Parameter(torch.ones(4, 8))  # a new tensor (version 0 again): rebuilt too
    assert torch.equal(bf16_params(lin)[0], torch.ones(4, 8, dtype=torch.bfloat16))
    w3 = bf16_params(lin)[0]
    assert lin in fused._BF16
    fused.release_bf16_weights()
    assert lin not in fused._BF16 and bf16_params(lin)[0] is not w3 and len(fused._BF16) == 1
    del lin
    gc.collect()
    assert len(fused._BF16) == 0  # the copy dies with its layer


def test_fused_bf16_path_is_skipped_where_it_should_be(monkeypatch):
    """fp16 autocast, CPUs without bf16 units and tracing keep autocast's own ops; training (autograd on) runs
    the bias-only kernel (:func:`vitkit.layers.fused.projection`), GELU and residual outside it."""
    import vitkit.layers.fused as fused
    from vitkit.layers import Mlp

    mlp, x = Mlp(16, 32).eval(), torch.randn(2, 5, 16)

    def fused_calls(grad: bool = False, dtype: torch.dtype = torch.bfloat16) -> int:
        ops = _OpNames()
        with torch.set_grad_enabled(grad), torch.autocast("cpu", dtype=dtype), ops:
            mlp(x, residual=x)
        return sum("_linear_pointwise" in n for n in ops.names)

    monkeypatch.setattr(fused, "native_bf16", lambda: True)
    assert fused_calls() == 2
    assert fused_calls(grad=True) == 2
    assert fused_calls(dtype=torch.float16) == fused_calls(grad=True, dtype=torch.float16) == 0
    monkeypatch.setattr(fused, "is_tracing", lambda: True)
    assert fused_calls() == fused_calls(grad=True) == 0
    monkeypatch.undo()
    monkeypatch.setattr(fused, "native_bf16", lambda: False)
    assert fused_calls() == fused_calls(grad=True) == 0


@pytest.mark.skipif(not _native_bf16(), reason="the bf16 training linear runs only on CPUs with bf16 units")
@pytest.mark.parametrize("kind", ["linear", "no bias", "rows", "pointwise conv3d"])
def test_bf16_training_linear_matches_autocast_bit_for_bit(kind):
    """A CPU bf16 autocast training step's Linear through oneDNN: the same output and the same input, weight and
    bias gradients as autocast's ``F.linear`` (at shapes with rows not a multiple of any tile: 3 x 37 tokens)."""
    from vitkit.layers.conv_blocks import PointwiseConv3d
    from vitkit.layers.fused import linear

    torch.manual_seed(0)
    if kind == "pointwise conv3d":
        layer = PointwiseConv3d(24, 40, 1)
        x = torch.randn(3, 24, 2, 5, 7).to(memory_format=torch.channels_last_3d)
        ours = layer
        ref = lambda t: F.linear(t.movedim(1, -1), layer.weight.flatten(1), layer.bias).movedim(-1, 1)  # noqa: E731
    else:
        layer = torch.nn.Linear(24, 72, bias=kind != "no bias")
        x = torch.randn(3, 37, 24)
        rows = slice(24, None) if kind == "rows" else None
        ours = lambda t: linear(t, layer, rows=rows)  # noqa: E731
        ref = lambda t: F.linear(t, layer.weight[rows or slice(None)],  # noqa: E731
                                 None if layer.bias is None else layer.bias[rows or slice(None)])
    results = []
    for f in (ours, ref):
        xg = x.clone().requires_grad_()
        layer.zero_grad(set_to_none=True)
        ops = _OpNames()
        with torch.autocast("cpu", dtype=torch.bfloat16), ops:
            y = f(xg)
        y.backward(torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).to(y.dtype))
        grads = [xg.grad, layer.weight.grad] + ([layer.bias.grad] if layer.bias is not None else [])
        results.append((y, grads, sum("_linear_pointwise" in n for n in ops.names)))
    (y, grads, calls), (y_ref, grads_ref, calls_ref) = results
    assert (calls, calls_ref) == (1, 0)
    assert y.dtype == y_ref.dtype == torch.bfloat16 and torch.equal(y, y_ref)
    for g, g_ref in zip(grads, grads_ref):
        assert g.dtype == g_ref.dtype == torch.float32 and torch.equal(g, g_ref)
    assert grads[1].is_contiguous()


@pytest.mark.skipif(not _native_bf16(), reason="the bf16 training linear runs only on CPUs with bf16 units")
def test_bf16_training_linear_keeps_no_bf16_weight_copy_for_the_backward():
    """Autocast's ``F.linear`` keeps its bf16 copy of the weight until the backward (every layer's at once at the
    peak); the oneDNN training linear keeps the float32 weight (a parameter, alive anyway) and casts again."""
    from vitkit.layers.fused import linear

    layer = torch.nn.Linear(24, 72)
    x = torch.randn(3, 37, 24, requires_grad=True)

    def saved_by(f) -> set:
        saved = set()
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.add((t.dtype, *sorted(t.shape))) or t,
                                                      lambda t: t):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                f(x)
        return saved

    assert (torch.bfloat16, 24, 72) in saved_by(layer)
    ours = saved_by(lambda t: linear(t, layer))
    assert (torch.float32, 24, 72) in ours and (torch.bfloat16, 24, 72) not in ours


def test_only_wide_bf16_layers_take_the_weight_gradient_from_a_transposed_copy():
    """The rule of :func:`vitkit.layers.fused.transposes_output_grad`: an MLP's second layer (in >= 1024 and at
    least twice out) in bf16; not its first layer, not narrow layers, not float32."""
    from vitkit.layers.fused import transposes_output_grad

    assert transposes_output_grad(3072, 768, torch.bfloat16)  # ViT-B/16 fc2
    assert transposes_output_grad(1024, 512, torch.bfloat16)
    assert not transposes_output_grad(768, 3072, torch.bfloat16)  # fc1
    assert not transposes_output_grad(1024, 513, torch.bfloat16)
    assert not transposes_output_grad(384, 96, torch.bfloat16)  # Swin-T's first fc2: slower with the copy
    assert not transposes_output_grad(3072, 768, torch.float32)


@pytest.mark.skipif(not _native_bf16(), reason="the bf16 training linear runs only on CPUs with bf16 units")
@pytest.mark.parametrize("features, wide", [((1024, 256), True), ((256, 1024), False)])
def test_bf16_training_weight_gradient_of_a_wide_layer_reads_a_transposed_copy(features, wide):
    """A wide layer (1024 -> 256) takes its bf16 weight gradient from a contiguous copy of the output gradient's
    transpose, exactly that product; its output, input and bias gradients stay bit for bit autocast's, and the
    weight gradient is autocast's to one bf16 rounding (the fp32 accumulation runs in another order). The
    1024-wide first layer keeps the transposed view, bit for bit."""
    from vitkit.layers.fused import linear

    torch.manual_seed(0)
    layer = torch.nn.Linear(*features)
    x = torch.randn(3, 37, features[0])
    gy = torch.randn(3, 37, features[1]).to(torch.bfloat16)
    results = []
    for f in (lambda t: linear(t, layer), layer):
        xg = x.clone().requires_grad_()
        layer.zero_grad(set_to_none=True)
        products = OpCalls(_first_contiguous, [torch.ops.aten.mm.out])  # the weight gradient's product
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = f(xg)
        with products:
            y.backward(gy)
        results.append((y, xg.grad, layer.weight.grad, layer.bias.grad, products.seen))
    (y, gx, gw, gb, left), (y_ref, gx_ref, gw_ref, gb_ref, _) = results
    assert left == [wide]
    for ours, ref in ((y, y_ref), (gx, gx_ref), (gb, gb_ref)):
        assert torch.equal(ours, ref)
    g2, x2 = gy.reshape(-1, features[1]), x.reshape(-1, features[0]).to(torch.bfloat16)
    expected = torch.mm(g2.t().contiguous() if wide else g2.t(), x2).float()
    assert gw.dtype == torch.float32 and gw.is_contiguous() and torch.equal(gw, expected)
    torch.testing.assert_close(gw, gw_ref, rtol=2**-7, atol=1e-3)
    if not wide:
        assert torch.equal(gw, gw_ref)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="oneDNN is not built in")
@pytest.mark.parametrize("features", [(24, 72), (72, 24)])
def test_narrow_fp32_training_linear_runs_onednn_with_linears_values(features):
    """A float32 training Linear with few inputs over many rows (4099 here) runs oneDNN's forward, the bias in the
    GEMM: the output and every gradient are ``F.linear``'s bit for bit, the weight gradient contiguous in either
    orientation of its product (wider out than in: ``(x^T g)^T``)."""
    import vitkit.layers.fused as fused

    torch.manual_seed(0)
    layer = torch.nn.Linear(*features)
    x = torch.randn(4099, features[0])
    gy = torch.randn(4099, features[1])
    results = []
    for ours in (True, False):
        xg = x.clone().requires_grad_()
        layer.zero_grad(set_to_none=True)
        ops = _OpNames()
        with ops:
            y = fused.linear(xg, layer) if ours else F.linear(xg, layer.weight, layer.bias)
        y.backward(gy)
        results.append((y, xg.grad, layer.weight.grad, layer.bias.grad, sum("_linear_pointwise" in n for n in ops.names)))
    *ours, calls = results[0]
    *ref, calls_ref = results[1]
    assert (calls, calls_ref) == (1, 0)
    for a, b in zip(ours, ref):
        assert a.dtype == torch.float32 and torch.equal(a, b)
    assert ours[2].is_contiguous()


@pytest.mark.parametrize("penalty", ["input", "weight"])
@pytest.mark.parametrize("mode", ["fp32 narrow", "fp32 split"])
def test_float32_training_linears_support_double_backward(mode, penalty):
    """A gradient penalty (``create_graph=True``) on the input's or the weight's gradient through vitkit's float32
    training linears gives ``F.linear``'s second-order gradients (their fast backward writes into ``out=``
    products, which autograd cannot differentiate; with a graph recorded they take differentiable ops)."""
    from vitkit.layers.fused import linear, split_linear

    torch.manual_seed(0)
    layer = torch.nn.Linear(24, 72)
    x0 = torch.randn(4099, 24)
    ours = (lambda t: linear(t, layer)) if mode == "fp32 narrow" else (
        lambda t: torch.cat(split_linear(t, layer, (24, 48)), -1))
    results = []
    for f in (ours, lambda t: F.linear(t, layer.weight, layer.bias)):
        x = x0.clone().requires_grad_()
        layer.zero_grad(set_to_none=True)
        y = f(x)
        g, = torch.autograd.grad(y.square().sum(), x if penalty == "input" else layer.weight, create_graph=True)
        g.square().sum().backward()
        results.append((g, x.grad, layer.weight.grad, layer.bias.grad))
    for a, b in zip(*results):  # float32 rounding of sums over 4099 rows taken in another order
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * b.abs().max().item())


@pytest.mark.skipif(not _native_bf16(), reason="the bf16 training path runs only on CPUs with bf16 units")
def test_bf16_training_linear_refuses_double_backward_with_a_clear_error():
    """Its input is saved as a bf16 copy without a graph back to the input, so a second derivative would miss a
    term: it raises, naming the way out (float32, or the fused path off), and that way out works."""
    from vitkit.layers.fused import fused_linear_enabled, linear

    layer = torch.nn.Linear(24, 72)
    x = torch.randn(99, 24, requires_grad=True)

    def penalty() -> None:
        with torch.autocast("cpu", torch.bfloat16):
            y = linear(x, layer)
        g, = torch.autograd.grad(y.float().square().sum(), x, create_graph=True)
        g.float().square().sum().backward()

    with pytest.raises(RuntimeError, match="double backward .* not supported.*fused_linear_enabled"):
        penalty()
    with fused_linear_enabled(False):
        penalty()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="oneDNN is not built in")
def test_only_narrow_fp32_training_linears_over_many_rows_take_onednn():
    """:func:`vitkit.layers.fused.trains_in_fp32`: at most 384 inputs and at least 4096 rows, with autograd, no
    autocast, and the switch on; a wide layer, few rows, inference or autocast keep their own paths."""
    from vitkit.layers.fused import fp32_training_onednn, trains_in_fp32

    w, wide = torch.randn(96, 384), torch.randn(96, 768)
    x = torch.randn(8, 512, 384)
    assert trains_in_fp32(x, w)
    assert not trains_in_fp32(x[:, :511], w)  # 4088 rows
    assert not trains_in_fp32(torch.randn(8, 512, 768), wide)
    assert not trains_in_fp32(x.double(), w.double())
    with torch.no_grad():
        assert not trains_in_fp32(x, w)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not trains_in_fp32(x, w)
    with fp32_training_onednn(False):
        assert not trains_in_fp32(x, w)


@pytest.mark.parametrize("mode", ["fp32", "bf16", "inference"])
@pytest.mark.parametrize("unused", [None, 0, 1])
def test_split_linear_equals_one_linear_per_block(mode, unused):
    """MViT's q and k|v from one qkv Linear: the same values and gradients as ``F.linear`` on each block of rows
    under autocast (bit for bit in training), with the weight gradient built in one buffer (no zero-filled
    float32 gradient per block); a block whose output is unused gets zero gradient."""
    from vitkit.layers.fused import split_linear

    if mode == "bf16" and not _native_bf16():
        pytest.skip("the bf16 training path runs only on CPUs with bf16 units")
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 48)
    x0 = torch.randn(3, 37, 16)
    sizes, starts = (16, 32), (0, 16)
    results = []
    for ours in (True, False):
        x = x0.clone().requires_grad_(mode != "inference")
        layer.zero_grad(set_to_none=True)
        with torch.set_grad_enabled(mode != "inference"), torch.autocast("cpu", torch.bfloat16, enabled=mode == "bf16"):
            h = x + 0  # a non-leaf, as in a model (autocast caches the bf16 cast of a leaf and sums in bf16)
            if ours:
                outs = split_linear(h, layer, sizes)
            else:
                outs = tuple(F.linear(h, layer.weight[a:a + n], layer.bias[a:a + n]) for a, n in zip(starts, sizes))
        assert [o.shape[-1] for o in outs] == list(sizes) and all(o.is_contiguous() for o in outs)
        if mode == "inference":
            results.append(outs)
            continue
        g = torch.Generator().manual_seed(1)
        loss = sum((o.float() * torch.randn(o.shape, generator=g)).sum() for i, o in enumerate(outs) if i != unused)
        loss.backward()
        results.append((*outs, x.grad, layer.weight.grad, layer.bias.grad))
    for a, b in zip(*results):
        assert a.dtype == b.dtype
        if mode == "inference":  # the fused kernel: float32 rounding
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        else:
            assert torch.equal(a, b)
    with pytest.raises(ValueError, match="do not add up to 48"):
        split_linear(x0, layer, (16, 16))


def test_split_linear_off_the_cpu_is_one_product_and_views():
    """Off the CPU (CUDA; the meta device stands in for it here) q and k|v are views of one product, as timm and
    torchvision compute a qkv, and MViT's attention takes such views forward and backward."""
    import vitkit
    from vitkit.layers.fused import split_linear

    layer = torch.nn.Linear(16, 48).to("meta")
    q, kv = split_linear(torch.randn(3, 37, 16, device="meta", requires_grad=True), layer, (16, 32))
    assert q.shape == (3, 37, 16) and kv.shape == (3, 37, 32)
    assert q._base is not None and q._base is kv._base and q.stride() == kv.stride() == (37 * 48, 48, 1)
    for name, shape in (("mvit_demo_8x32", (2, 3, 8, 32, 32)), ("mvitv2_tiny", (2, 3, 64, 64))):
        model = vitkit.create_model(name).to("meta")
        out = model(torch.randn(*shape, device="meta"))
        out.sum().backward()
        assert out.shape == (2, model.num_classes) and model.patch_embed.proj.weight.grad is not None


@pytest.mark.parametrize("rank", [None, 2, 3])
@pytest.mark.parametrize("amp", [False, True])
def test_mlp_gelu_backward_takes_fc2s_input_gradient_in_place(rank, amp):
    """In training the MLP's exact GELU writes its input gradient over fc2's input gradient (no new tensor of
    the hidden width): values and every gradient bitwise the plain ``fc2(gelu(fc1(x)))``'s, on tokens and on
    channels-last maps, fp32 and bf16 autocast, odd sizes; a hook on the activation still runs it as a module."""
    from vitkit.layers import Mlp
    from vitkit.layers.grad_reuse import gelu_before_product

    torch.manual_seed(0)
    mlp = Mlp(8, 24, rank=rank).train()
    shape = {None: (2, 7, 8), 2: (2, 8, 5, 7), 3: (2, 8, 3, 5, 7)}[rank]
    fmt = {None: torch.contiguous_format, 2: torch.channels_last, 3: torch.channels_last_3d}[rank]
    x0 = torch.randn(shape).contiguous(memory_format=fmt)
    grad = torch.randn(mlp.fc2(mlp.fc1(x0)).shape).contiguous(memory_format=fmt)
    kept = grad.clone()
    results = []
    for ours in (True, False):
        x = x0.clone().requires_grad_()
        mlp.zero_grad(set_to_none=True)
        backward_ops = OpCalls(lambda func, args, out: str(func), [torch.ops.aten.gelu_backward.default,
                                                                   torch.ops.aten.gelu_backward.grad_input])
        with torch.autocast("cpu", torch.bfloat16, enabled=amp):
            if ours:
                y = mlp(x)
            elif rank is None:
                y = mlp.fc2(F.gelu(mlp.fc1(x)))
            else:  # GELU on the map's token view, as the module runs it (the last bits differ on the map)
                y = mlp.fc2(F.gelu(mlp.fc1(x).movedim(1, -1)).movedim(-1, 1))
        with backward_ops:
            y.backward(grad)
        if ours:
            assert backward_ops.seen == ["aten.gelu_backward.grad_input"], backward_ops.seen
        results.append((y, x.grad, mlp.fc1.weight.grad, mlp.fc1.bias.grad, mlp.fc2.weight.grad))
    for a, b in zip(*results):
        assert torch.equal(a, b)
    assert torch.equal(grad, kept)
    calls = []
    mlp.act.register_forward_hook(lambda module, args, out: calls.append(out.shape))
    mlp(x0.clone().requires_grad_()).sum().backward()
    assert len(calls) == (0 if rank is None else 1)  # the token path fuses the GELU (it never ran the module)
    # a gradient that is not a dense tensor of the output's shape is not written over
    t = torch.randn(3, 5, requires_grad=True)
    gelu_before_product(t * 1.0).sum().backward()
    assert torch.equal(t.grad, torch.ops.aten.gelu_backward(torch.ones(3, 5), t.detach()))


@pytest.mark.parametrize("rank", [2, 3])
def test_conv_mlp_activation_runs_on_the_token_view_of_channels_last_maps(rank):
    """In training, UniFormer's convolutional FFN applies its GELU to the (B, *grid, C) view of a channels-last
    map (PyTorch's CPU kernels are about 2x faster there): the values and gradients of GELU on the map itself,
    and a channels-last output."""
    from vitkit.layers import Mlp

    torch.manual_seed(0)
    mlp = Mlp(8, 24, rank=rank).train()
    shape = (2, 8, 5, 6) if rank == 2 else (2, 8, 3, 5, 6)
    fmt = torch.channels_last if rank == 2 else torch.channels_last_3d
    x0 = torch.randn(shape).contiguous(memory_format=fmt)
    results = []
    for ours in (True, False):
        x = x0.clone().requires_grad_()
        mlp.zero_grad(set_to_none=True)
        if ours:
            seen = OpCalls(_first_contiguous, [torch.ops.aten.gelu.default])
            with seen:
                y = mlp(x)
            assert y.is_contiguous(memory_format=fmt)
            assert seen.seen == [True]  # GELU ran on the token view, a plain contiguous tensor
        else:
            y = mlp.fc2(F.gelu(mlp.fc1(x)))
        y.square().sum().backward()
        results.append((y, x.grad, mlp.fc1.weight.grad, mlp.fc2.weight.grad))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("amp", [False, True])
def test_conv_mlp_runs_as_fused_linears_on_channels_last_maps(amp):
    """UniFormer's convolutional FFN (1x1 conv - GELU - 1x1 conv on maps): on a channels-last map at inference
    the 1x1 convolutions run as fused linears over the channels; same numbers as the convolutions."""
    from vitkit.layers import Mlp
    from vitkit.layers.fused import fused_linear_enabled

    if amp and not _native_bf16():
        pytest.skip("the bf16 fused path runs only on CPUs with bf16 units")
    torch.manual_seed(0)
    mlp = Mlp(16, 64, rank=2).eval()
    x = torch.randn(2, 16, 5, 6).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        with fused_linear_enabled(False):
            ref = mlp(x, residual=x)
        ops = _OpNames()
        with ops:
            out = mlp(x, residual=x)
            plain = mlp(x.contiguous(), residual=x.contiguous())  # NCHW: the convolutions run
    assert sum("_linear_pointwise" in n for n in ops.names) == 2
    assert sum("convolution" in n for n in ops.names) == 2
    assert out.shape == ref.shape and out.dtype == ref.dtype
    assert out.movedim(1, -1).is_contiguous()  # handed back channels-last, like the input
    tol = 3e-2 if amp else 1e-5
    torch.testing.assert_close(out.float(), ref.float(), atol=tol, rtol=tol)
    torch.testing.assert_close(plain.float(), ref.float(), atol=tol, rtol=tol)


def test_fused_linear_takes_only_pointwise_convolutions():
    from vitkit.layers.fused import fusable, linear

    t = torch.randn(2, 5, 8)
    with torch.no_grad():
        assert fusable(t, torch.nn.Conv2d(8, 4, 1)) and fusable(t, torch.nn.Linear(8, 4))
        assert not fusable(t, torch.nn.Conv2d(8, 4, 3)) and not fusable(t, torch.nn.Conv2d(8, 8, 1, groups=2))
        assert not fusable(t.transpose(0, 1), torch.nn.Conv2d(8, 4, 1))  # not contiguous tokens
    with pytest.raises(ValueError, match="fusable"):
        linear(t, torch.nn.Conv2d(8, 4, 1))  # autograd on: not fused, and a conv cannot take tokens


@pytest.mark.parametrize("mode", ["grad", "fp32", "bf16"])
def test_fused_linear_rows_compute_a_slice_of_the_outputs(mode):
    """``rows=`` (MViT's q and kv from one qkv Linear) equals F.linear on the weight's rows, on every path."""
    from vitkit.layers.fused import linear

    if mode == "bf16" and not _native_bf16():
        pytest.skip("the bf16 fused path runs only on CPUs with bf16 units")
    torch.manual_seed(0)
    lin, x = torch.nn.Linear(16, 48), torch.randn(2, 5, 16)
    with torch.set_grad_enabled(mode == "grad"), torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16"):
        for rows in (slice(0, 16), slice(16, None)):
            out = linear(x, lin, rows=rows)
            ref = F.linear(x, lin.weight[rows], lin.bias[rows])
            assert out.dtype == ref.dtype and out.shape == ref.shape
            tol = 2e-2 if mode == "bf16" else 1e-5
            torch.testing.assert_close(out.float(), ref.float(), atol=tol, rtol=tol)


def test_depthwise_precision_follows_the_cpu_and_the_mode(monkeypatch):
    """Depthwise convolutions under CPU reduced precision run in float32, except bf16 inference on a CPU with
    bf16 units (faster in bf16 there, vitkit.layers.depthwise doc); training keeps float32 everywhere."""
    from vitkit.layers import depthwise as D

    x = torch.randn(1, 4, 5, 5)
    for native, grad, amp, expect in [(True, False, torch.bfloat16, False), (True, True, torch.bfloat16, True),
                                      (False, False, torch.bfloat16, True), (True, False, torch.float16, True),
                                      (True, False, None, False)]:
        monkeypatch.setattr(D, "native_bf16", lambda: native)
        with torch.set_grad_enabled(grad), torch.autocast("cpu", dtype=amp or torch.bfloat16, enabled=amp is not None):
            assert D.float32_on_this_device(x) is expect, (native, grad, amp)
        with torch.set_grad_enabled(grad):
            assert D.float32_on_this_device(x.bfloat16()) is (not native or grad)


def test_gpu_depthwise_input_is_contiguous_for_channels_last_clips():
    """On CUDA a channels-last 3-D map goes to the depthwise convolution contiguous (PyTorch's depthwise 3-D
    kernel, not cuDNN's grouped direct ones: vitkit.layers.depthwise doc); the CPU and other maps keep theirs."""
    from vitkit.layers.depthwise import gpu_depthwise_input

    clip = torch.randn(2, 6, 4, 5, 5).contiguous(memory_format=torch.channels_last_3d)
    moved = gpu_depthwise_input(clip, "cuda")
    assert moved.is_contiguous() and torch.equal(moved, clip)
    assert gpu_depthwise_input(clip, "cpu") is clip
    image = torch.randn(2, 6, 5, 5).contiguous(memory_format=torch.channels_last)
    assert gpu_depthwise_input(image, "cuda") is image
    dense = torch.randn(2, 6, 4, 5, 5)
    assert gpu_depthwise_input(dense, "cuda") is dense


@pytest.mark.skipif(not _native_bf16(), reason="bf16 depthwise inference runs only on CPUs with bf16 units")
def test_depthwise_module_in_bf16_inference_matches_float32_to_bf16_rounding():
    from vitkit.layers.conv_blocks import depthwise_conv

    torch.manual_seed(0)
    conv = depthwise_conv(2, 8, 5).eval()
    x = torch.randn(2, 8, 9, 9).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ref = conv(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ops = _OpNames()
            with ops:
                out = conv(x)
    convs = [d for n, d in zip(ops.names, ops.dtypes) if "convolution" in n]
    assert convs == [torch.bfloat16] and out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, atol=3e-2 * ref.abs().max().item(), rtol=0)


@pytest.mark.parametrize("grid,stride,kernel", [
    ((4, 9, 7), (1, 1, 1), 3), ((4, 9, 7), (1, 4, 4), 3), ((5, 6, 6), (2, 2, 2), 3), ((3, 9, 8), (1, 2, 2), 3),
    ((4, 7, 10), (2, 1, 2), 3), ((5, 8, 7), (1, 8, 8), 3), ((3, 9, 7), (1, 1, 1), 5), ((4, 9, 11), (1, 2, 2), 5)])
def test_depthwise_conv_backward_equals_torch(grid, stride, kernel, monkeypatch):
    """The channels-last 3-D depthwise backward (weight gradient tap by tap; input gradient by the mirrored
    forward, on the spread output gradient for stride 2, PyTorch's kernel beyond) gives PyTorch's gradients, at
    odd sizes, strides and kernels, in one chunk of frames and in many; and it is the path taken (our node)."""
    import vitkit.layers.depthwise as D

    torch.manual_seed(0)
    C = 6
    base = torch.randn(2, *grid, C)
    w = torch.randn(C, 1, kernel, kernel, kernel)
    pad = (kernel // 2,) * 3
    results = []
    for chunk in (D.WEIGHT_GRAD_CHUNK_ELEMENTS, 1):
        monkeypatch.setattr(D, "WEIGHT_GRAD_CHUNK_ELEMENTS", chunk)
        results.append(_depthwise_grads(base, w, stride, pad))
    for grads in results:
        for a, b in zip(grads["torch"], grads["vitkit"]):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rank,kernel", [(3, 3), (3, 5), (2, 5), (2, 3)])
def test_float32_depthwise_module_on_a_channels_last_map_takes_the_fast_backward(rank, kernel):
    """UniFormer's depthwise convolutions (with bias) in a float32 training step over a channels-last clip, or an
    image map with 5x5 filters, take the faster backward (through conv_float32_grads) with the plain
    convolution's values and gradients; channels-first maps, and 3x3 filters on images (aten's own backward is
    fast there), keep the plain convolution."""
    from vitkit.layers.conv_blocks import depthwise_conv

    torch.manual_seed(0)
    conv = depthwise_conv(rank, 6, kernel)
    base = torch.randn(2, 6, 3, 9, 7) if rank == 3 else torch.randn(2, 6, 9, 7)
    plain_conv = F.conv3d if rank == 3 else F.conv2d
    channels_last = torch.channels_last_3d if rank == 3 else torch.channels_last
    results = []
    for layout, module in (("cl", conv), ("cl", "plain"), ("cf", conv)):
        conv.zero_grad(set_to_none=True)
        x = base.contiguous(memory_format=channels_last) if layout == "cl" else base.clone()
        x.requires_grad_()
        y = (plain_conv(x, conv.weight, conv.bias, 1, kernel // 2, 1, 6) if module == "plain" else module(x))
        y.backward(torch.randn(y.shape, generator=torch.Generator().manual_seed(1)))
        results.append((type(y.grad_fn).__name__, y.detach(), x.grad, conv.weight.grad, conv.bias.grad))
    (fast, *ours), (_, *ref), (plain, *_) = results
    assert ("ConvFloat32Grads" in fast) is (rank == 3 or kernel == 5) and "ConvFloat32Grads" not in plain
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel,padding,grid", [((5, 5), (2, 2), (9, 7)), ((3, 5), (1, 2), (6, 11)),
                                                 ((5, 3), (2, 1), (8, 8)), ((5, 5), (0, 0), (9, 10)),
                                                 ((5, 5), (1, 3), (7, 9))])
def test_depthwise_2d_backward_from_3x3_blocks_equals_torch(kernel, padding, grid, monkeypatch):
    """A channels-last 2-D depthwise backward with 5-wide filters (weight gradient from 3x3 blocks, input gradient
    by the mirrored forward, or aten's for asymmetric padding) gives aten's gradients at odd sizes; the path is
    the one taken."""
    import vitkit.layers.depthwise as D

    torch.manual_seed(0)
    C = 6
    x = torch.randn(2, C, *grid).contiguous(memory_format=torch.channels_last)
    w = torch.randn(C, 1, *kernel)
    y = F.conv2d(x, w, None, 1, padding, 1, C)
    g = torch.randn(y.shape).contiguous(memory_format=torch.channels_last)
    ref = torch.ops.aten.convolution_backward(g, x, w, [C], (1, 1), padding, (1, 1), False, (0, 0), C,
                                              [True, True, True])
    calls = []
    real = D._depthwise_cl2d_grads
    monkeypatch.setattr(D, "_depthwise_cl2d_grads", lambda *a: calls.append(1) or real(*a))
    got = D._conv_grads(g, x, w, True, (1, 1), padding, C, (True, True, True))
    assert calls == [1]
    for a, b in zip(ref, got):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    assert got[0].is_contiguous(memory_format=torch.channels_last)


def _depthwise_grads(base: torch.Tensor, w: torch.Tensor, stride: tuple, pad: tuple) -> dict:
    from vitkit.layers.depthwise import depthwise_conv

    C = w.shape[0]
    out_grad = None
    grads = {}
    for name in ("torch", "vitkit"):
        x = base.clone().requires_grad_()
        wt = w.clone().requires_grad_()
        maps = x.movedim(-1, 1)  # channels-last view, as MViT's pooling builds it
        y = (F.conv3d(maps, wt, None, stride, pad, 1, C) if name == "torch"
             else depthwise_conv(maps, wt, stride, pad))
        if name == "vitkit":
            assert "DepthwiseCL3d" in type(y.grad_fn).__name__
        out_grad = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)) if out_grad is None else out_grad
        y.backward(out_grad)
        grads[name] = (y.detach(), x.grad, wt.grad)
    return grads


@pytest.mark.parametrize("rank,bias,amp,chunked", [(2, True, False, False), (3, False, False, False),
                                                   (3, False, True, False), (2, False, True, False),
                                                   (2, True, True, True), (3, False, False, True),
                                                   (3, True, True, False), (3, True, False, True)])
def test_conv_float32_grads_keeps_reduced_input_and_equals_the_float32_conv(rank, bias, amp, chunked, monkeypatch):
    """conv_float32_grads gives the float32 convolution's gradients (cast to the inputs' dtypes) and values (on
    a CPU with bf16 units the values of the bf16 convolution autocast runs) while the backward keeps the bf16
    input, not a float32 copy of it (half the memory of the plain cast); chunked: the backward one sample at a
    time gives the same gradients."""
    import vitkit.layers.depthwise as D
    from vitkit.layers.depthwise import conv_float32_grads

    if chunked:
        monkeypatch.setattr(D, "BACKWARD_CHUNK_ELEMENTS", 1)

    torch.manual_seed(0)
    C, grid = 6, ((5, 9, 7) if rank == 3 else (9, 7))
    base = torch.randn(2, *grid, C).bfloat16()
    w = torch.randn(C, 1, *(3,) * rank)
    b = torch.randn(C) if bias else None
    conv = F.conv3d if rank == 3 else F.conv2d
    out_grad = torch.randn(2, C, *grid).bfloat16()
    results = {}
    for name in ("plain", "vitkit"):
        x = base.clone().requires_grad_()
        wt = w.clone().requires_grad_()
        bt = None if b is None else b.clone().requires_grad_()
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t), \
                torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            maps = x.movedim(-1, 1)  # channels-last view, as the models build it
            if name == "plain":
                with torch.autocast("cpu", enabled=False):
                    y = conv(maps.float(), wt, bt, 1, 1, 1, C).bfloat16()
            else:
                y = conv_float32_grads(maps, wt, bt, (1,) * rank, (1,) * rank, C)
        assert y.dtype == torch.bfloat16
        y.backward(out_grad)
        results[name] = (y.detach(), x.grad, wt.grad) + (() if bt is None else (bt.grad,))
        big = [t.dtype for t in saved if t.numel() == base.numel()]
        assert big == ([torch.float32] if name == "plain" else [torch.bfloat16])
    if _native_bf16():  # the forward in bf16 there: the convolution autocast runs (bf16 weights), bit for bit
        with torch.autocast("cpu", enabled=False):
            maps = base.movedim(-1, 1)
            expect = conv(maps, w.bfloat16(), None if b is None else b.bfloat16(), 1, 1, 1, C)
        assert torch.equal(results["vitkit"][0], expect)
        results = {k: v[1:] for k, v in results.items()}
    for a, v in zip(results["plain"], results["vitkit"]):
        assert v.dtype == a.dtype
        torch.testing.assert_close(v, a, rtol=1e-5, atol=1e-5)  # 3-D: our backward sums in another order


@pytest.mark.parametrize("rank,stride,bias", [(3, (1, 2, 2), False), (3, (1, 1, 1), True), (2, (2, 2), True)])
def test_float32_grads_split_a_large_depthwise_sample_over_its_channels(rank, stride, bias, monkeypatch):
    """A depthwise sample larger than CHANNEL_SPLIT_ELEMENTS (a clip in MViT-B's first stages) takes its float32
    gradients a part of its channels at a time, at most MAX_CHANNEL_PARTS parts (14 channels in 4 parts of 4, 4,
    4, 2); the input gradient is the same bit for bit, the weight and bias gradients to float32 rounding."""
    import vitkit.layers.depthwise as D

    torch.manual_seed(0)
    C = 14
    grid = (3, 9, 8) if rank == 3 else (9, 8)
    layout = torch.channels_last_3d if rank == 3 else torch.channels_last
    x = torch.randn(1, C, *grid).bfloat16().contiguous(memory_format=layout)
    w = torch.randn(C, 1, *(3,) * rank)
    out = (F.conv3d if rank == 3 else F.conv2d)(x.float(), w, None, stride, 1, 1, C)
    g = torch.randn(out.shape).bfloat16().contiguous(memory_format=layout)
    calls = []
    real = D._conv_grads
    monkeypatch.setattr(D, "_conv_grads", lambda *a, **k: calls.append(a[1].shape[1]) or real(*a, **k))
    whole = D._float32_grads(g, x, w, bias, stride, (1,) * rank, C, None, (True, True, bias))
    assert calls == [C]
    calls.clear()
    monkeypatch.setattr(D, "BACKWARD_CHUNK_ELEMENTS", 1)  # one sample per chunk, larger than either size
    monkeypatch.setattr(D, "CHANNEL_SPLIT_ELEMENTS", x[0].numel() // 10)
    split = D._float32_grads(g, x, w, bias, stride, (1,) * rank, C, None, (True, True, bias))
    assert calls == [4, 4, 4, 2]
    assert torch.equal(split[0], whole[0]) and split[0].dtype == torch.bfloat16
    for a, b in zip(split[1:], whole[1:]):
        if b is not None:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_pooling_float32_clip_under_autocast_trains():
    """Float32 tokens pooled by a depthwise 3-D convolution under CPU autocast (the convolution runs in bf16):
    the backward once mixed the bf16 gradient with the float32 input and weight and raised."""
    from vitkit.layers.pooling import pool_tokens

    torch.manual_seed(0)
    pool = torch.nn.Conv3d(4, 4, 3, 1, 1, groups=4, bias=False)
    tokens = torch.randn(2, 1 + 3 * 5 * 5, 4, requires_grad=True)
    with torch.autocast("cpu", torch.bfloat16):
        out, grid = pool_tokens(tokens, pool, (3, 5, 5))
        ref = F.conv3d(tokens[:, 1:].reshape(2, 3, 5, 5, 4).movedim(-1, 1), pool.weight, None, 1, 1, 1, 4)
    assert grid == (3, 5, 5)
    torch.testing.assert_close(out[:, 1:].float(), ref.movedim(1, -1).reshape(2, 75, 4).float())
    out.float().sum().backward()
    assert tokens.grad is not None and pool.weight.grad is not None and torch.isfinite(pool.weight.grad).all()


@pytest.mark.parametrize("rank", [2, 3])
def test_uniformer_depthwise_backward_takes_large_chunks_unless_switched_off(rank, monkeypatch):
    """UniFormer's depthwise modules run their float32 backward in chunks of BLOCK_CHUNK_ELEMENTS (their peak does
    not depend on it: vitkit.layers.conv_blocks); large_backward_chunks(False) and MViT's pooling keep
    BACKWARD_CHUNK_ELEMENTS; the gradients are the same either way."""
    import vitkit.layers.conv_blocks as CB
    import vitkit.layers.depthwise as D
    from vitkit.layers.pooling import pool_tokens

    per_sample = 4 * 5 ** rank
    monkeypatch.setattr(D, "BACKWARD_CHUNK_ELEMENTS", 1)  # one sample per chunk
    monkeypatch.setattr(CB, "BLOCK_CHUNK_ELEMENTS", 2 * per_sample)  # two samples per chunk
    calls = []
    real = D._conv_grads
    monkeypatch.setattr(D, "_conv_grads", lambda *a, **k: calls.append(a[1].shape[0]) or real(*a, **k))
    torch.manual_seed(0)
    conv = CB.depthwise_conv(rank, 4, 3)
    x0 = torch.randn(3, 4, *(5,) * rank).contiguous(
        memory_format=torch.channels_last_3d if rank == 3 else torch.channels_last)
    grads = {}
    for large in (True, False):
        calls.clear()
        x = x0.clone().requires_grad_()
        with CB.large_backward_chunks(large), torch.autocast("cpu", torch.bfloat16):
            y = conv(x)
        y.float().sum().backward()
        assert calls == ([2, 1] if large else [1, 1, 1])
        grads[large] = (x.grad, conv.weight.grad.clone())
        conv.zero_grad()
    for a, b in zip(grads[True], grads[False]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # MViT's pooling: the small chunks, whatever the switch says
    calls.clear()
    pool = (torch.nn.Conv2d if rank == 2 else torch.nn.Conv3d)(4, 4, 3, 1, 1, groups=4, bias=False)
    tokens = torch.randn(3, 1 + 5 ** rank, 4).bfloat16().requires_grad_()  # bf16, as a linear under autocast gives
    with torch.autocast("cpu", torch.bfloat16):
        out, _ = pool_tokens(tokens, pool, (5,) * rank)
    out.float().sum().backward()
    assert calls == [1, 1, 1]


@pytest.mark.parametrize("rank", [2, 3])
def test_tiled_filters_are_tiled_again_in_the_backward_not_kept(rank):
    """MViT's per-head pooling filters, tiled over the heads (k's and v's in one call): the bf16 training
    convolution keeps the per-head filters for its backward, not the tiled copy (a new tensor every step), and
    its values and gradients are those of the tiled tensor passed as it is, bit for bit; changing a filter in
    place before the backward is caught as autograd catches it for any saved tensor."""
    from vitkit.layers.depthwise import TiledFilters, conv_float32_grads

    torch.manual_seed(0)
    heads, head_dim, grid = 3, 4, ((3, 5, 6) if rank == 3 else (5, 6))
    C = 2 * heads * head_dim
    x0 = torch.randn(2, *grid, C).bfloat16()
    k0, v0 = torch.randn(head_dim, 1, *(3,) * rank), torch.randn(head_dim, 1, *(3,) * rank)
    out_grad = torch.randn(2, C, *grid).bfloat16()
    results = {}
    for name in ("tensor", "tiled"):
        x, k, v = (t.clone().requires_grad_() for t in (x0, k0, v0))
        filters = TiledFilters((k, v), heads)
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(tuple(t.shape)) or t, lambda t: t):
            y = conv_float32_grads(x.movedim(-1, 1), filters.tensor() if name == "tensor" else filters, None,
                                   (1,) * rank, (1,) * rank, C)
        y.backward(out_grad)
        results[name] = (y.detach(), x.grad, k.grad, v.grad)
        assert ((C, 1, *(3,) * rank) in saved) == (name == "tensor"), saved
        assert ((head_dim, 1, *(3,) * rank) in saved) == (name == "tiled"), saved
    for a, b in zip(results["tensor"], results["tiled"]):
        assert torch.equal(a, b)

    x, k, v = (t.clone().requires_grad_() for t in (x0, k0, v0))
    y = conv_float32_grads(x.movedim(-1, 1), TiledFilters((k, v), heads), None, (1,) * rank, (1,) * rank, C)
    with torch.no_grad():
        k.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.backward(out_grad)


@pytest.mark.parametrize("shape", [(2, 5, 6, 7, 9), (3, 8, 11, 13)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_channels_first_copies_large_samples_one_2d_transpose_each(shape, dtype, monkeypatch):
    """A channels-last map's channels-first copy equals ``contiguous()``; from TRANSPOSE_MIN_BYTES per sample
    it is one 2-D (positions, channels) transpose per sample, below that one general copy; a contiguous map is
    returned as it is."""
    import vitkit.layers.layout as L

    last = torch.channels_last_3d if len(shape) == 5 else torch.channels_last
    x = torch.randn(shape).to(dtype).contiguous(memory_format=last)
    rank = lambda func, args, out: args[0].dim()  # noqa: E731
    for threshold, copies, clones in ((0, [2] * shape[0], []), (1 << 40, [], [len(shape)])):
        monkeypatch.setattr(L, "TRANSPOSE_MIN_BYTES", threshold)
        with OpCalls(rank, [torch.ops.aten.copy_.default]) as copied, \
                OpCalls(rank, [torch.ops.aten.clone.default]) as cloned:
            y = L.channels_first(x)
        assert torch.equal(y, x) and y.is_contiguous() and y.dtype == dtype
        assert (copied.seen, cloned.seen) == (copies, clones)
    plain = x.contiguous()
    assert L.channels_first(plain) is plain


def test_cpu_flags_read_from_cpuinfo(tmp_path):
    from vitkit.layers.cpu_features import cpu_flags

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f amx_bf16 amx_tile\nbogomips\t: 5199.99\n")
    assert cpu_flags(str(info)) == {"fpu", "sse2", "avx512f", "amx_bf16", "amx_tile"}
    assert cpu_flags(str(tmp_path / "missing")) == frozenset()


def test_cpu_bf16_training_runs_attention_explicitly(monkeypatch):
    """With bf16 units, a CPU bf16 training step skips SDPA's slow fused backward (vitkit.layers.attention doc);
    in fp32, without gradients, past the size limit or without bf16 units SDPA runs; gradients agree."""
    A = importlib.import_module("vitkit.layers.attention")  # the package exports a function of that name

    sdpa_calls = []
    real_sdpa = F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        sdpa_calls.append("bf16" if torch.is_autocast_enabled("cpu") or args[0].dtype == torch.bfloat16 else "fp32")
        return real_sdpa(*args, **kwargs)

    monkeypatch.setattr(A.F, "scaled_dot_product_attention", spy)
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 17, 8, requires_grad=True) for _ in range(3))

    def grads(hardware: bool, amp: bool) -> list[torch.Tensor]:
        monkeypatch.setattr(A, "native_bf16", lambda: hardware)
        for t in (q, k, v):
            t.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            out = attention(q, k, v)
        out.float().square().sum().backward()
        return [t.grad.clone() for t in (q, k, v)]

    ref = grads(True, amp=False)  # fp32: SDPA
    assert sdpa_calls == ["fp32"]
    fused_bf16 = grads(False, amp=True)  # no bf16 units: SDPA in bf16
    assert sdpa_calls[1:] == ["bf16"]
    explicit_bf16 = grads(True, amp=True)
    assert len(sdpa_calls) == 2  # explicit: no SDPA call
    for a, b, r in zip(explicit_bf16, fused_bf16, ref):
        assert (a - r).abs().max() <= 2 * (b - r).abs().max() + 1e-3  # as close to fp32 as the fused bf16 kernel

    monkeypatch.setattr(A, "native_bf16", lambda: True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert A.explicit_trains_faster(q, k)
        with torch.no_grad():
            assert not A.explicit_trains_faster(q, k)
        assert not A.explicit_trains_faster(q.detach(), k.detach())
    assert A.explicit_trains_faster(q.bfloat16(), k.bfloat16())  # bf16 tensors without autocast
    assert not A.explicit_trains_faster(q, k)  # fp32
    monkeypatch.setattr(A, "EXPLICIT_MAX_SCORES", 17 * 17 - 1)
    assert not A.explicit_trains_faster(q.bfloat16(), k.bfloat16())


def test_explicit_attention_is_chosen_under_torch_compile(monkeypatch):
    """torch.compile keeps eager's kernel choice for CPU bf16 training: explicit products and softmax, not SDPA,
    whose CPU bf16 backward is slow (a compiled ViT-S/16 bf16 step: 1302 ms with SDPA, 882 ms explicit)."""
    import importlib

    import torch

    A = importlib.import_module("vitkit.layers.attention")
    monkeypatch.setattr(A, "native_bf16", lambda: True)
    traced: list[str] = []

    def backend(gm, inputs):
        traced.extend(str(n.target) for n in gm.graph.nodes if n.op in ("call_function", "call_method"))
        return gm

    q, k, v = (torch.randn(2, 3, 17, 8, requires_grad=True) for _ in range(3))
    torch._dynamo.reset()
    f = torch.compile(lambda q, k, v: A.attention(q, k, v), backend=backend, fullgraph=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        f(q, k, v).float().sum().backward()
    torch._dynamo.reset()
    assert any("softmax" in t for t in traced), traced
    assert not any("scaled_dot_product" in t for t in traced), traced


@pytest.mark.parametrize("rank", [2, 3])
@pytest.mark.parametrize("amp", [False, True])
def test_pointwise_conv_is_the_conv_and_keeps_maps_channels_last(rank, amp):
    """A 1x1(x1) convolution as a matrix product: the values and gradients of ``nn.Conv{rank}d`` with the same
    parameters, a channels-last result for a channels-last input, and the plain convolution for other layouts;
    2-D maps take the product only in float32 training (bf16 keeps oneDNN's convolution)."""
    from vitkit.layers.conv_blocks import PointwiseConv2d, PointwiseConv3d, pointwise_conv

    torch.manual_seed(0)
    ours = pointwise_conv(rank, 6, 10)
    assert isinstance(ours, PointwiseConv3d if rank == 3 else PointwiseConv2d)
    assert type(pointwise_conv(1, 6, 10)) is torch.nn.Conv1d
    ref = (torch.nn.Conv3d if rank == 3 else torch.nn.Conv2d)(6, 10, 1)
    ref.load_state_dict(ours.state_dict())
    grid = (3, 5, 7)[-rank:]
    base = torch.randn(2, *grid, 6)
    tol = dict(rtol=2e-2, atol=2e-2) if amp else dict(rtol=1e-5, atol=1e-5)
    for layout in ("channels_last", "contiguous"):
        outs = []
        for m in (ref, ours):
            x = base.clone().requires_grad_()
            clip = x.movedim(-1, 1) if layout == "channels_last" else x.movedim(-1, 1).contiguous()
            ops = _OpNames()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp), ops:
                y = m(clip)
            y.float().square().sum().backward()
            outs.append((y, x.grad, m.weight.grad.clone(), m.bias.grad.clone()))
            m.zero_grad()
        convolved = any("convolution" in n for n in ops.names)
        assert convolved == (layout == "contiguous" or (rank == 2 and amp))
        (y_ref, *g_ref), (y, *g) = outs
        assert y.shape == y_ref.shape == (2, 10, *grid) and y.dtype == y_ref.dtype
        assert y.movedim(1, -1).is_contiguous() == (layout == "channels_last")
        torch.testing.assert_close(y.float(), y_ref.float(), **tol)
        for a, b in zip(g, g_ref):
            torch.testing.assert_close(a, b, **tol)
    if rank == 2:  # switched off, and off the CPU (the meta device stands in for CUDA), a 2-D map keeps the conv
        from vitkit.layers.conv_blocks import pointwise_products

        for device, on in (("cpu", False), ("meta", True)):
            ops = _OpNames()
            with pointwise_products(on), ops:
                ours.to(device)(torch.randn(2, 6, *grid, device=device).to(memory_format=torch.channels_last))
            assert any("convolution" in n for n in ops.names)


@pytest.mark.parametrize("case", ["pooling clip", "5x5 map", "bf16 map"])
def test_depthwise_fast_backwards_support_double_backward(case):
    """A gradient penalty (``create_graph=True``) through vitkit's depthwise convolutions (MViT's channels-last
    pooling kernel, UniFormer's float32-gradient one in fp32 and bf16) gives the plain convolution's
    second-order gradients; their fast backwards write into ``out=`` tensors, which autograd cannot
    differentiate, so with a graph recorded they take aten's convolution backward."""
    from vitkit.layers.conv_blocks import depthwise_conv as block_conv
    from vitkit.layers.depthwise import depthwise_conv

    if case == "bf16 map" and not _native_bf16():
        pytest.skip("the bf16 forward runs only on CPUs with bf16 units")
    torch.manual_seed(0)
    if case == "pooling clip":
        x0 = torch.randn(2, 6, 3, 8, 8).to(memory_format=torch.channels_last_3d)
        weight = torch.randn(6, 1, 3, 3, 3, requires_grad=True)
        ours = lambda t: depthwise_conv(t, weight, (1, 2, 2), (1, 1, 1))  # noqa: E731
        ref = lambda t: F.conv3d(t, weight, None, (1, 2, 2), (1, 1, 1), 1, 6)  # noqa: E731
    else:
        layer = block_conv(2, 8, 5)
        x0 = torch.randn(2, 8, 14, 14).to(memory_format=torch.channels_last)
        weight = layer.weight
        ours = layer
        ref = lambda t: F.conv2d(t, layer.weight, layer.bias, 1, 2, 1, 8)  # noqa: E731
    results = []
    for f, amp in ((ours, case == "bf16 map"), (ref, False)):  # bf16 against the float32 arithmetic
        x = x0.clone().requires_grad_()
        weight.grad = None
        with torch.autocast("cpu", torch.bfloat16, enabled=amp):
            y = f(x)
        gx, = torch.autograd.grad(y.float().square().sum(), x, create_graph=True)
        gx.float().square().sum().backward()
        results.append((gx.float(), x.grad, weight.grad))
    scale = 3e-2 if case == "bf16 map" else 1e-5  # bf16 rounding of the forward; float32 sums in another order
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=scale, atol=scale * b.abs().max().item())


@pytest.mark.parametrize("name, shape", [("vit_demo_patch8_32", (2, 3, 32, 32)), ("mvit_demo_8x32", (2, 3, 8, 32, 32)),
                                         ("uniformer_demo_video_8x32", (2, 3, 8, 32, 32))])
def test_gradient_penalty_through_a_model_with_explicit_attention(name, shape):
    """The README's recipe for second derivatives: inside ``explicit_attention()`` a gradient penalty on the
    input's gradient runs through the whole model (fused CPU attention has no double backward), the first-order
    gradient is the fused forward's, and every parameter gets a finite second-order gradient."""
    import vitkit
    from vitkit.layers.attention import explicit_attention

    torch.manual_seed(0)
    model = vitkit.create_model(name, num_classes=4).train()
    x = torch.randn(*shape, requires_grad=True)
    plain, = torch.autograd.grad(model(x).square().sum(), x)
    with explicit_attention():
        out = model(x)
    gx, = torch.autograd.grad(out.square().sum(), x, create_graph=True)
    torch.testing.assert_close(gx, plain, rtol=1e-4, atol=1e-5 * plain.abs().max().item())
    gx.square().sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert x.grad is not None and x.grad.abs().sum() > 0


def _graph_keeping_backend(graphs: list):
    """A torch.compile backend that runs AOTAutograd's forward and backward graphs as they are (no Inductor) and
    appends each graph's text to ``graphs``."""
    from torch._dynamo.backends.common import aot_autograd

    def keep(g, _):
        graphs.append(str(g.graph))
        return g
    return aot_autograd(fw_compiler=keep, bw_compiler=keep)


def _depthwise_case(case: str):
    """(module or function taking x, its parameters, input, autocast on?) for the compiled depthwise tests:
    UniFormer's blocks (2-D 5x5 and 3x3, 3-D 3x3x3, with bias) and MViT's pooling (3-D, no bias, tiled filters)."""
    import torch

    from vitkit.layers.conv_blocks import depthwise_conv
    from vitkit.layers.depthwise import TiledFilters, conv_float32_grads, depthwise_conv as pooling_conv

    torch.manual_seed(0)
    cl2, cl3 = torch.channels_last, torch.channels_last_3d
    if case.startswith("block"):
        rank, k, amp = {"block2d_5x5_bf16": (2, 5, True), "block2d_5x5_fp32": (2, 5, False),
                        "block2d_3x3_bf16": (2, 3, True), "block3d_bf16": (3, 3, True),
                        "block3d_fp32": (3, 3, False)}[case]
        m = depthwise_conv(rank, 12, k)
        shape = (3, 12, 11, 9) if rank == 2 else (2, 12, 3, 7, 6)
        return m, list(m.parameters()), torch.randn(shape).contiguous(memory_format=cl2 if rank == 2 else cl3), amp
    base = torch.nn.Parameter(torch.randn(4, 1, 3, 3, 3))
    if case == "pooling_tiled_bf16":  # MViT's per-head filters over 3 heads, stride 1x2x2
        return (lambda x: conv_float32_grads(x, TiledFilters((base,), 3), None, (1, 2, 2), (1, 1, 1), 12), [base],
                torch.randn(2, 12, 3, 9, 8).contiguous(memory_format=cl3), True)
    weight = torch.nn.Parameter(torch.randn(12, 1, 3, 3, 3))  # pooling_fp32: the channels-last 3-D backward
    return (lambda x: pooling_conv(x, weight, (1, 2, 2), (1, 1, 1)), [weight],
            torch.randn(2, 12, 3, 9, 8).contiguous(memory_format=cl3), False)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("case", ["block2d_5x5_bf16", "block2d_5x5_fp32", "block2d_3x3_bf16", "block3d_bf16",
                                  "block3d_fp32", "pooling_tiled_bf16", "pooling_fp32"])
def test_compiled_depthwise_training_runs_the_eager_kernels(case):
    """Under torch.compile in training, the depthwise convolutions that eager runs through conv_float32_grads or
    the channels-last 3-D backward run the same kernels (two opaque operators, vitkit::conv_float32_grads and its
    backward), so outputs and gradients are bit for bit eager's. Traced as plain ops before, the bf16 forward ran
    in float32 (outputs differed) and the gradients came from aten's backward (4e-3 off in bf16 when autocast's
    own convolution was traced, and slower: the 5x5 weight gradient, the 3-D backward)."""
    import torch

    f, params, x, amp = _depthwise_case(case)

    def run(g):
        xx = x.clone().requires_grad_()
        for p in params:
            p.grad = None
        with torch.autocast("cpu", torch.bfloat16, enabled=amp):
            y = g(xx)
        # a channels-last output gradient, as a network's next layer gives
        w = torch.linspace(-1, 1, y.numel()).reshape(y.shape).contiguous(memory_format=x.dim() == 4
                                                                          and torch.channels_last
                                                                          or torch.channels_last_3d)
        (y.float() * w).sum().backward()
        return [y, xx.grad] + [p.grad.clone() for p in params]

    eager = run(f)
    torch._dynamo.reset()
    graphs = []
    compiled = run(torch.compile(f, backend=_graph_keeping_backend(graphs), fullgraph=True))
    assert eager[0].dtype == compiled[0].dtype == (torch.bfloat16 if amp else torch.float32)
    for name, a, b in zip(["output", "input grad"] + [f"param {i} grad" for i in range(len(params))], compiled, eager):
        assert a.dtype == b.dtype and torch.equal(a, b), (name, (a.double() - b.double()).abs().max().item())
    forward, backward = graphs
    assert "vitkit.conv_float32_grads.default" in forward and "convolution" not in forward
    assert "vitkit.conv_float32_grads_backward.default" in backward and "convolution" not in backward


def test_compiled_depthwise_operators_pass_opcheck():
    """The two operators' schemas, fake (shape and stride) functions and autograd registration agree with their
    real results (``torch.library.opcheck``), for a channels-last 2-D map in bf16 with a bias and a channels-last
    clip in float32 without one."""
    import torch

    import vitkit.layers.depthwise  # noqa: F401  (registers the operators)

    torch.manual_seed(0)
    cases = [
        (torch.randn(2, 6, 9, 7, dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last),
         torch.randn(6, 1, 5, 5), torch.randn(6), [1, 1], [2, 2], torch.bfloat16, 1 << 22),
        (torch.randn(2, 6, 3, 7, 6).contiguous(memory_format=torch.channels_last_3d), torch.randn(6, 1, 3, 3, 3),
         None, [1, 2, 2], [1, 1, 1], torch.float32, None),
    ]
    for x, weight, bias, stride, padding, dtype, chunk in cases:
        x.requires_grad_()
        weight.requires_grad_()
        args = (x, weight, bias, stride, padding, 6, dtype, chunk)
        torch.library.opcheck(torch.ops.vitkit.conv_float32_grads.default, args)
        y = torch.ops.vitkit.conv_float32_grads(*args)
        grad = torch.randn_like(y)
        torch.library.opcheck(torch.ops.vitkit.conv_float32_grads_backward.default,
                              (grad, x.detach(), weight.detach(), bias is not None, stride, padding, 6, chunk,
                               [True, True, bias is not None]))


def test_depthwise_traces_keep_plain_ops_outside_compiled_training():
    """torch.export, TorchScript and compiled inference see plain convolutions, not vitkit's operators (which only
    compiled training needs, and an exported graph could not run without vitkit)."""
    import torch

    from vitkit.layers.conv_blocks import depthwise_conv

    m = depthwise_conv(2, 4, 5).eval()
    x = torch.randn(1, 4, 8, 8).contiguous(memory_format=torch.channels_last)
    for training in (False, True):
        m.train(training)
        with torch.autocast("cpu", torch.bfloat16):
            code = torch.export.export(m, (x,)).graph_module.print_readable(print_output=False)
        assert "torch.ops.vitkit" not in code and "aten.conv2d" in code, training
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        code = []
        torch.compile(m, backend=lambda gm, _: code.append(gm.print_readable(print_output=False)) or gm)(x)
    assert code and "ops.vitkit" not in code[0] and "conv2d" in code[0]


def test_compiled_swin_writes_its_bias_and_mask_out_once():
    """Compiled for the CPU, a shifted Swin block passes its (heads, N, N) bias and (windows, N, N) shift mask
    through vitkit::materialize, so Inductor computes each once instead of inside the kernel that adds them to
    every window's scores; the values and gradients are those of the graph without it. torch.export keeps plain
    ops (an exported graph needs no vitkit)."""
    import torch

    import vitkit
    from vitkit.layers.materialize import compiled_materialize

    torch.manual_seed(0)
    model = vitkit.create_model("swin_tiny_patch4_window7_224", num_classes=5, embed_dim=24, depths=(2, 2),
                                num_heads=(1, 2), drop_path_rate=0.0).train()
    x = torch.randn(1, 3, 56, 56)

    def run(enabled):
        torch._dynamo.reset()
        graphs = []
        model.zero_grad(set_to_none=True)
        with compiled_materialize(enabled):
            out = torch.compile(model, backend=_graph_keeping_backend(graphs), fullgraph=True)(x)
        out.square().sum().backward()
        return graphs, out.detach(), [p.grad.clone() for p in model.parameters()]

    graphs, out, grads = run(True)
    plain_graphs, plain_out, plain_grads = run(False)
    # 4 blocks, each with its bias; one shifted block with a mask (stage 2's 7x7 map is one window, unshifted)
    assert graphs[0].count("vitkit.materialize.default") == 5 and "vitkit.materialize" not in plain_graphs[0]
    assert torch.equal(out, plain_out) and all(torch.equal(a, b) for a, b in zip(grads, plain_grads))
    code = torch.export.export(model, (x,)).graph_module.print_readable(print_output=False)
    assert "torch.ops.vitkit" not in code


def test_materialize_operator_passes_opcheck():
    import torch

    import vitkit.layers.materialize  # noqa: F401  (registers the operator)

    torch.library.opcheck(torch.ops.vitkit.materialize.default, (torch.randn(3, 5, 5, requires_grad=True),))


@pytest.mark.parametrize("name,shape,amp", [("vit_demo_patch4_32", (3, 3, 32, 32), False),
                                            ("vit_demo_patch4_32", (3, 3, 32, 32), True),
                                            ("mvit_demo_8x32", (2, 3, 8, 32, 32), False)])
def test_per_sample_gradients_through_torch_func(name, shape, amp):
    """``vmap(grad(...))`` (per-sample gradients, as differential-privacy training computes them) runs through
    vitkit's models: inside torch.func transforms vitkit's own autograd functions, in-place tricks and saved-tensor
    hooks step aside (they raised before), and each sample's gradients equal a backward of that sample alone.
    (UniFormer's BatchNorm needs torch.func's usual patching; MViT under bf16 autocast meets a PyTorch limit of
    conv -> layer_norm inside vmap(grad), plain torch included.)"""
    import vitkit

    torch.manual_seed(0)
    model = vitkit.create_model(name, num_classes=10).train()
    params = {k: v.detach() for k, v in model.named_parameters()}
    x, y = torch.randn(*shape), torch.arange(shape[0])

    def loss(p, xi, yi):
        return F.cross_entropy(torch.func.functional_call(model, p, (xi.unsqueeze(0),)), yi.unsqueeze(0))

    with torch.autocast("cpu", torch.bfloat16, enabled=amp):
        per_sample = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0, 0))(params, x, y)
    tol = dict(rtol=5e-2, atol=1e-2) if amp else dict(rtol=1e-4, atol=1e-6)
    for i in range(shape[0]):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", torch.bfloat16, enabled=amp):
            loss_i = F.cross_entropy(model(x[i:i + 1]), y[i:i + 1])
        loss_i.backward()
        for k, p in model.named_parameters():
            assert torch.allclose(per_sample[k][i], p.grad, **tol), k
