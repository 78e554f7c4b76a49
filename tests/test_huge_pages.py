"""Attention's large products on transparent huge pages: same values, advised memory, nothing advised elsewhere."""
import importlib

import pytest
import torch

huge_pages = importlib.import_module("vitkit.layers.huge_pages")
from vitkit.layers.huge_pages import HUGE_PAGE_BYTES, advise_huge_pages, batched_product, huge_page_advice  # noqa: E402

on_request = huge_pages.supported()


def _vm_flags(address: int) -> list[str]:
    """The kernel's flags of the mapping that holds ``address`` (/proc/self/smaps)."""
    inside = False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = (int(s, 16) for s in head.split("-"))
                inside = lo <= address < hi
            elif inside and head == "VmFlags:":
                return line.split()[1:]
    raise AssertionError(f"no mapping holds {address:#x}")


@pytest.mark.skipif(not on_request, reason="transparent huge pages are not given on request (madvise mode) here")
def test_a_large_product_is_made_on_memory_advised_for_huge_pages():
    """The kernel marks the output's memory 'hg' (MADV_HUGEPAGE) before the product writes it; a small tensor is
    not advised, nor a large one inside ``huge_page_advice(False)``."""
    a, b = torch.randn(6, 300, 8), torch.randn(6, 8, 1000)  # 7.2 MB of output
    out = huge_pages._product(a, b, (6, 300, 1000))
    inner = -(-out.data_ptr() // HUGE_PAGE_BYTES) * HUGE_PAGE_BYTES
    assert "hg" in _vm_flags(inner)
    assert torch.equal(out, a @ b)
    assert not advise_huge_pages(torch.empty(1000))
    with huge_page_advice(False):
        assert not advise_huge_pages(torch.empty(8 << 20))
        with huge_page_advice(True):
            assert advise_huge_pages(torch.empty(8 << 20))
        assert not advise_huge_pages(torch.empty(8 << 20))
    assert advise_huge_pages(torch.empty(8 << 20))


def test_nothing_is_advised_where_huge_pages_are_always_on_or_never(tmp_path, monkeypatch):
    for mode in ("[always] madvise never", "always madvise [never]"):
        (tmp_path / "enabled").write_text(mode + "\n")
        monkeypatch.setattr(huge_pages, "_THP_MODE", str(tmp_path / "enabled"))
        huge_pages._madvise.cache_clear()
        try:
            assert huge_pages._madvise() is None
            assert not advise_huge_pages(torch.empty(8 << 20))
        finally:
            monkeypatch.undo()
            huge_pages._madvise.cache_clear()


@pytest.mark.parametrize("amp", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_batched_product_equals_matmul_values_and_gradients(amp, masked, monkeypatch):
    """Attention's two products at odd sizes (4-D and Swin's 5-D masked layout, the keys a transposed view), each
    through the huge-page path (threshold lowered) and as ``matmul``: outputs and gradients bit for bit equal,
    fp32 and bf16 autocast; under no_grad too."""
    monkeypatch.setattr(huge_pages, "HUGE_PAGE_MIN_BYTES", 0)
    torch.manual_seed(0)
    shape = (2, 3, 4, 13, 5) if masked else (3, 4, 13, 5)
    q, k, v = (torch.randn(shape, requires_grad=True) for _ in range(3))
    grad = torch.randn(shape)

    def run(product):
        with torch.autocast("cpu", torch.bfloat16, enabled=amp):
            scores = product(q * 0.5, k.transpose(-2, -1))
            out = product(scores.softmax(-1), v)
        return [out, *torch.autograd.grad(out, (q, k, v), grad.to(out.dtype))]

    calls = []
    real = huge_pages._Product.apply
    monkeypatch.setattr(huge_pages._Product, "apply", lambda *t: calls.append(1) or real(*t))
    ours = run(batched_product)
    assert len(calls) == (2 if on_request else 0)
    plain = run(torch.matmul)
    assert ours[0].dtype == (torch.bfloat16 if amp else torch.float32)
    for a, b in zip(ours, plain):
        assert torch.equal(a, b)
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=amp):
        assert torch.equal(batched_product(q, k.transpose(-2, -1)), q @ k.transpose(-2, -1))


def test_second_derivatives_through_the_product_are_matmuls(monkeypatch):
    """A graph of the backward can be built (gradient penalties): ``gradgradcheck`` passes through both products."""
    monkeypatch.setattr(huge_pages, "HUGE_PAGE_MIN_BYTES", 0)
    q, k, v = (torch.randn(2, 3, 5, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))

    def attend(q, k, v):
        return batched_product(batched_product(q, k.transpose(-2, -1)).softmax(-1), v)

    assert torch.autograd.gradgradcheck(attend, (q, k, v))


def test_batched_product_leaves_broadcasting_and_mismatched_dtypes_to_matmul(monkeypatch):
    monkeypatch.setattr(huge_pages, "HUGE_PAGE_MIN_BYTES", 0)
    a, b = torch.randn(3, 4, 5), torch.randn(5, 6)
    assert torch.equal(batched_product(a, b), a @ b)
    with pytest.raises(RuntimeError, match="Float but found Double"):  # matmul's own message
        batched_product(torch.randn(2, 3, 4), torch.randn(2, 4, 3, dtype=torch.float64))


def test_the_backward_keeps_what_matmul_keeps_not_the_tensor_q_k_and_v_are_views_of(monkeypatch):
    """q, k and v as views into one qkv projection: the product keeps flattened copies for the backward, as
    ``matmul`` does, so the whole qkv tensor is not kept alive by it (Swin-T fp32's training peak went up 28 MB
    when the views themselves were kept)."""
    monkeypatch.setattr(huge_pages, "HUGE_PAGE_MIN_BYTES", 0)
    qkv = torch.randn(4, 10, 3, 2, 8, requires_grad=True)

    def kept(product):
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        sizes = []
        with torch.autograd.graph.saved_tensors_hooks(
                lambda t: sizes.append(t.untyped_storage().nbytes()) or t, lambda t: t):
            product(product(q, k.transpose(-2, -1)).softmax(-1), v)
        return sorted(sizes)

    assert kept(batched_product) == kept(torch.matmul)
    assert qkv.untyped_storage().nbytes() not in kept(batched_product)


@pytest.mark.parametrize("name,shape,kw", [
    ("swin_tiny_patch4_window7_224", (2, 3, 61, 75), {"embed_dim": 24, "depths": (2, 2), "num_heads": (1, 2)}),
    ("mvit_demo_8x32", (1, 3, 8, 32, 32), {}),
])
def test_a_training_step_peaks_where_matmuls_does(monkeypatch, name, shape, kw):
    """Whole demo models through every product's huge-page path: the step's peak memory (live tensors) equals the
    peak with ``matmul`` (an output that is a view, modified in place by the bias and softmax, would make autograd
    keep a copy; Video Swin-T fp32 1401 -> 1417 MB)."""
    import vitkit
    from vitkit.analysis.benchmark import train_memory

    attention_module = importlib.import_module("vitkit.layers.attention")
    monkeypatch.setattr(huge_pages, "HUGE_PAGE_MIN_BYTES", 0)
    torch.manual_seed(0)
    model = vitkit.create_model(name, num_classes=5, **kw)
    x = torch.randn(shape)
    train_memory(model, x)  # first-call allocations
    ours = train_memory(model, x)
    monkeypatch.setattr(attention_module, "batched_product", torch.matmul)
    assert ours == train_memory(model, x)
    out = batched_product(torch.randn(2, 3, 4, requires_grad=True), torch.randn(2, 4, 5))
    assert out._base is None
