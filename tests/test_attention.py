"""Attention analysis: layouts, maps in image coordinates, rollout and mean attention distance.

Known answers come from constructed cases: attention fixed by hand on a small grid, and models whose query and
key projections are zeroed so that every query attends uniformly (the photos are then real inputs whose
content must not change the answer).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vitkit
from vitkit.analysis import attention as A

skimage_data = pytest.importorskip("skimage.data")
PHOTOS = ("astronaut", "chelsea", "coffee")


def photo_batch(size: int, names=PHOTOS) -> torch.Tensor:
    """The scikit-image sample photos, centre-cropped square and resized to ``size``, ImageNet-normalised."""
    out = []
    for n in names:
        img = torch.from_numpy(getattr(skimage_data, n)()).permute(2, 0, 1).float() / 255
        s = min(img.shape[1:])
        top, left = (img.shape[1] - s) // 2, (img.shape[2] - s) // 2
        img = img[:, top:top + s, left:left + s]
        img = F.interpolate(img[None], size=(size, size), mode="bilinear", antialias=True)[0]
        out.append((img - 0.45) / 0.225)
    return torch.stack(out)


def uniform_attention(model: torch.nn.Module) -> torch.nn.Module:
    """Zero the query and key projections of every fused ``qkv`` and every relative-position table: all
    logits 0 (up to masks), so attention is uniform over the keys a query may see."""
    with torch.no_grad():
        for name, mod in model.named_modules():
            if name.endswith("qkv") and isinstance(mod, torch.nn.Linear):
                two_thirds = 2 * mod.out_features // 3
                mod.weight[:two_thirds] = 0
                if mod.bias is not None:
                    mod.bias[:two_thirds] = 0
        for name, p in model.named_parameters():
            if "relative_position_bias_table" in name or "rel_pos" in name:
                p.zero_()
    return model


def _centres(grid: tuple[int, int], cell: float) -> np.ndarray:
    ys, xs = np.meshgrid(np.arange(grid[0]), np.arange(grid[1]), indexing="ij")
    return (np.stack([ys.ravel(), xs.ravel()], 1) + 0.5) * cell


def mean_pairwise_distance(grid: tuple[int, int], cell: float, key_grid=None, key_cell=None) -> float:
    """Brute force: mean distance between a query cell centre and a key cell centre, both drawn uniformly."""
    q = _centres(grid, cell)
    k = _centres(key_grid or grid, key_cell or cell)
    total = 0.0
    for p in q:
        total += np.sqrt(((k - p) ** 2).sum(1)).sum()
    return total / (len(q) * len(k))


# -- layouts ------------------------------------------------------------------------------------------------
def test_window_layout_hand_checked():
    # grid 5x6, windows 2x3, shift (1,1): padded to 6x6, rolled by -1 on both axes
    lay = A.window_layout((5, 6), (4, 4), (2, 3), (1, 1))
    assert lay.index.shape == (6, 6)
    assert lay.index[0].tolist() == [7, 8, 9, 13, 14, 15]  # window 0 starts at original (1, 1)
    assert lay.index[1].tolist() == [10, 11, 6, 16, 17, 12]  # wraps from column 5 to column 0
    assert lay.index[4].tolist() == [-1, -1, -1, 1, 2, 3]  # padded row 5, then row 0 rolled in
    # every real token appears exactly once
    real = lay.index[lay.index >= 0]
    assert sorted(real.tolist()) == list(range(30))


def test_window_layout_without_shift_is_a_plain_partition():
    lay = A.window_layout((4, 4), (8, 8), (2, 2))
    assert lay.index.tolist() == [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]
    pos = lay.positions()
    assert torch.equal(pos[0, 0], torch.tensor([4.0, 4.0]))  # centre of cell (0, 0) with 8-pixel cells
    assert torch.equal(pos[3, 3], torch.tensor([28.0, 28.0]))


def test_window_layout_3d_covers_every_token_once():
    lay = A.window_layout((3, 5, 5), (2, 4, 4), (2, 3, 3), (1, 1, 1))
    real = lay.index[lay.index >= 0]
    assert sorted(real.tolist()) == list(range(75))


# -- mean attention distance: constructed cases ---------------------------------------------------------------
def _layer(probs: torch.Tensor, grid, stride, prefix=0) -> A.AttentionLayer:
    lay = A.global_layout(grid, stride, prefix)
    return A.AttentionLayer("test", probs, lay, lay, prefix)


def test_mean_distance_of_hand_made_attention():
    n, stride = 5, 16.0
    eye = torch.eye(2 * n)
    shifted = eye.roll(n, dims=1)  # each query attends only to the key n cells away (along x)
    probs = torch.stack([eye, shifted])[None, None]  # (B=1, G=1, heads=2, 2n, 2n)
    d = A.mean_attention_distance([_layer(probs, (1, 2 * n), (stride, stride))])[0]
    assert d[0].item() == pytest.approx(0.0, abs=1e-6)
    assert d[1].item() == pytest.approx(n * stride, rel=1e-6)


def test_mean_distance_ignores_prefix_tokens_and_renormalises():
    # query rows: [cls, a, b]; spatial keys a, b one 10-pixel cell apart; half the mass on the class token
    probs = torch.tensor([[1 / 3, 1 / 3, 1 / 3], [0.5, 0.25, 0.25], [0.5, 0.5, 0.0]])[None, None, None]
    d = A.mean_attention_distance([_layer(probs, (1, 2), (10, 10), prefix=1)])[0]
    # a: renormalised (0.5, 0.5) -> 5 px; b: (1, 0) -> 10 px; mean over the two spatial queries = 7.5
    assert d.item() == pytest.approx(7.5, rel=1e-6)


def test_mean_distance_uniform_vit_on_photos_matches_closed_form():
    # ViT-demo (4-pixel patches) on 8x8 crops of the photos: a 2x2 token grid. With q = k = 0 the attention is
    # uniform over the class token and the 4 patches; renormalised over the patches, the mean distance is
    # (0 + 4 + 4 + 4*sqrt(2)) / 4 = 2 + sqrt(2) pixels, whatever the image.
    model = uniform_attention(vitkit.create_model("vit_demo_patch4_32"))
    layers = A.collect_attention(model, photo_batch(8))
    assert len(layers) == model.config.depth
    for d in A.mean_attention_distance(layers):
        assert torch.allclose(d, torch.full_like(d, 2 + math.sqrt(2)), atol=1e-5)


def test_mean_distance_uniform_vit_full_grid_matches_brute_force():
    model = uniform_attention(vitkit.create_model("vit_demo_patch4_32"))
    layers = A.collect_attention(model, photo_batch(32, ("coffee",)))
    want = mean_pairwise_distance((8, 8), 4.0)
    for d in A.mean_attention_distance(layers):
        assert torch.allclose(d, torch.full_like(d, want), rtol=1e-5)


def test_mean_distance_is_local_when_attention_is_local():
    # attention to the own token only (a sharply peaked softmax) must give distance ~0, and the random model's
    # nearly uniform attention something near the uniform figure: the measure separates local from global
    model = vitkit.create_model("vit_demo_patch4_32")
    x = photo_batch(32, ("astronaut",))
    with torch.no_grad():
        d_rand = A.mean_attention_distance(A.collect_attention(model, x))
    assert all(0.5 * 16.55 < d.mean() < 1.5 * 16.55 for d in d_rand)
    eye = torch.eye(65)[None, None, None].repeat(1, 1, 4, 1, 1)
    lay = A.global_layout((8, 8), (4, 4), 1)
    assert A.mean_attention_distance([A.AttentionLayer("x", eye, lay, lay, 1)])[0].abs().max() < 1e-6


def test_mean_distance_uniform_swin_windows_on_photo():
    # Swin-T at 224 on a photo with q = k = 0 and zero bias tables: unshifted blocks attend uniformly inside
    # 7x7 windows, so the distance is the 7x7 brute-force figure times the stage's cell size (4, 8, 16, 32 px);
    # stage 4 (a 7x7 map, one window) is global attention over the whole map
    model = uniform_attention(vitkit.create_model("swin_tiny_patch4_window7_224"))
    layers = A.collect_attention(model, photo_batch(224, ("chelsea",)))
    dist = A.mean_attention_distance(layers)
    cells = {"layers.0": 4, "layers.1": 8, "layers.2": 16, "layers.3": 32}
    unshifted = [i for i, l in enumerate(layers) if l.name.endswith("blocks.0")]
    assert len(unshifted) == 4
    for i in unshifted:
        want = mean_pairwise_distance((7, 7), cells[layers[i].name.rsplit(".blocks", 1)[0]])
        assert torch.allclose(dist[i], torch.full_like(dist[i], want), rtol=1e-5), layers[i].name
    # shifted blocks: the mask splits edge windows into regions, so the mean distance is smaller
    assert dist[1].mean() < dist[0].mean()


def test_mean_distance_uniform_pooled_mvit_matches_brute_force():
    # MViT (demo) first block: queries on the 8x8 token grid (4-px cells), keys pooled to 4x4 (8-px cells)
    model = uniform_attention(vitkit.create_model("mvit_demo_8x32"))
    x = photo_batch(32, ("coffee",)).unsqueeze(2).expand(-1, -1, 8, -1, -1).contiguous()  # a still clip
    layers = A.collect_attention(model, x)
    first = layers[0]
    assert first.q.grid[1:] == (8, 8) and first.k.grid[1:] == (4, 4) and first.num_prefix == 1
    want = mean_pairwise_distance((8, 8), 4.0, (4, 4), 8.0)
    d = A.mean_attention_distance([first])[0]
    assert torch.allclose(d, torch.full_like(d, want), rtol=1e-5)


def test_swin_shifted_window_maps_match_token_adjacency_on_photo():
    # Which keys a query may attend to in a shifted block, from first principles: roll by -3, 7x7 windows,
    # and the shift mask's regions ([0, 49), [49, 53), [53, 56) on the rolled axis). The map in image
    # coordinates must be non-zero exactly there (checks the layout and the model's mask together).
    model = vitkit.create_model("swin_tiny_patch4_window7_224")
    layers = A.collect_attention(model, photo_batch(224, ("astronaut",)))
    shifted = layers[1]
    assert shifted.name == "layers.0.blocks.1" and shifted.q.grid == (56, 56)

    def cell(p):  # window and region of an original coordinate along one axis
        r = (p - 3) % 56
        return r // 7, 0 if r < 49 else (1 if r < 53 else 2)

    for qy, qx in [(0, 0), (0, 30), (27, 55), (52, 52), (55, 1), (20, 20)]:
        m = A.attention_map(shifted, qy * 56 + qx)  # (heads, 56, 56)
        support = (m[0] > 1e-30).numpy()
        want = np.zeros((56, 56), bool)
        for ky in range(56):
            for kx in range(56):
                want[ky, kx] = cell(ky) == cell(qy) and cell(kx) == cell(qx)
        assert (support == want).all(), (qy, qx)
        assert m[0].sum().item() == pytest.approx(1.0, abs=1e-5)
        # painted onto the image, the support covers 4x4-pixel blocks of those tokens
        img = A.to_input(m, shifted.k, (224, 224))
        assert ((img[0] > 1e-30).numpy() == np.kron(want, np.ones((4, 4), bool))).all()


def test_every_family_maps_to_input_coordinates():
    # one small variant per family: every attention call gets a layout whose grid x stride covers the input
    for name, size in [("uniformer_demo_32", (3, 32, 32)), ("uniformer_demo_video_8x32", (3, 4, 32, 32)),
                       ("mvit_demo_8x32", (3, 8, 32, 32)), ("swin3d_tiny", (3, 4, 64, 64))]:
        if name not in vitkit.list_models():
            continue
        model = vitkit.create_model(name)
        x = torch.randn(1, *size)
        for layer in A.collect_attention(model, x):
            for lay in (layer.q, layer.k):
                covered = tuple(g * s for g, s in zip(lay.grid, lay.stride))
                assert all(c >= s for c, s in zip(covered, size[1:])), (name, layer.name, lay.grid, lay.stride)
            q = None if layer.num_prefix else A.centre_query(layer)
            m = A.attention_map(layer, q)
            # the map holds the query's attention to real tokens: all of it but the part on the class token
            # and on padding (Swin pads maps to whole windows and attends to the zero tokens, as official)
            g, row = (0, 0) if q is None else (layer.q.index == q).nonzero()[0].tolist()
            on_real = layer.probs[0, g, :, row][:, layer.k.index[g] >= 0].sum(-1)
            assert torch.allclose(m.sum(tuple(range(1, m.ndim))), on_real, atol=1e-5), (name, layer.name)


# -- maps and rollout -----------------------------------------------------------------------------------------
def test_vit_maps_on_photos_are_distributions_in_image_coordinates():
    model = vitkit.create_model("vit_demo_patch4_32")
    x = photo_batch(32)
    layers = A.collect_attention(model, x)
    for layer in layers:
        assert layer.probs.shape == (3, 1, 4, 65, 65)
        for b in range(3):
            m = A.attention_map(layer, "cls", batch=b)  # (heads, 8, 8): the class token's attention to patches
            assert m.shape == (4, 8, 8)
            cls_to_self = layer.probs[b, 0, :, 0, 0]
            assert torch.allclose(m.sum((1, 2)) + cls_to_self, torch.ones(4), atol=1e-5)
        img = A.to_input(m, layer.k, (32, 32))
        assert img.shape == (4, 32, 32)
        # each 4x4 pixel block carries its token's value
        assert torch.equal(img[:, 4:8, 8:12], m[:, 1:2, 2:3].expand(4, 4, 4))
    # different photos give different maps (the recorded attention depends on the input)
    assert not torch.allclose(layers[0].probs[0], layers[0].probs[1])


def test_rollout_of_uniform_attention_has_closed_form():
    # uniform A over N+1 tokens: r_L = 0.5^L e_cls + (1 - 0.5^L) / (N + 1) on every token
    model = uniform_attention(vitkit.create_model("vit_demo_patch4_32"))
    layers = A.collect_attention(model, photo_batch(32, ("chelsea",)))
    r, lay = A.attention_rollout(layers)
    L, n = len(layers), 65
    assert lay.grid == (8, 8)
    assert r[0].item() == pytest.approx(0.5**L + (1 - 0.5**L) / n, rel=1e-5)
    assert torch.allclose(r[1:], torch.full((64,), (1 - 0.5**L) / n), rtol=1e-5)


def test_rollout_through_pooled_queries_conserves_mass():
    # a pooled (MViT-like) stack: 4x4 tokens with 4-px cells, then queries pooled to 2x2 with 8-px cells
    fine = A.global_layout((4, 4), (4, 4), 1)
    coarse = A.global_layout((2, 2), (8, 8), 1)
    g = torch.Generator().manual_seed(0)
    p1 = torch.rand(1, 1, 2, 17, 17, generator=g).softmax(-1)
    p2 = torch.rand(1, 1, 2, 5, 17, generator=g).softmax(-1)  # pooled queries, full keys
    p3 = torch.rand(1, 1, 2, 5, 5, generator=g).softmax(-1)
    layers = [A.AttentionLayer("a", p1, fine, fine, 1), A.AttentionLayer("b", p2, coarse, fine, 1),
              A.AttentionLayer("c", p3, coarse, coarse, 1)]
    r, lay = A.attention_rollout(layers)
    assert lay.grid == (4, 4) and r.shape == (17,)
    assert r.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert (r >= 0).all()
    # with uniform attention the 16 fine tokens share the non-class mass equally (each pooled cell spreads evenly)
    u = [A.AttentionLayer(l.name, torch.ones_like(l.probs) / l.probs.shape[-1], l.q, l.k, 1) for l in layers]
    r, _ = A.attention_rollout(u)
    assert torch.allclose(r[1:], r[1:].mean().expand(16), atol=1e-6)


def test_errors_name_what_is_expected():
    layer = _layer(torch.ones(1, 1, 1, 4, 4) / 4, (2, 2), (1, 1))
    with pytest.raises(ValueError, match="no class token"):
        A.attention_map(layer, "cls")
    with pytest.raises(ValueError, match="not a token"):
        A.attention_map(layer, 99)
    with pytest.raises(ValueError, match="class token"):
        A.attention_rollout([layer])
    with pytest.raises(ValueError, match="no attention call"):
        A.collect_attention(torch.nn.Linear(3, 3), torch.randn(1, 3))


# -- command line ---------------------------------------------------------------------------------------------
def test_cli_writes_overlays_rollout_and_distances(tmp_path):
    from PIL import Image

    from vitkit.cli import main

    photo = tmp_path / "coffee.png"
    Image.fromarray(skimage_data.coffee()).save(photo)  # a real file on disk, non-square (400 x 600)
    out = tmp_path / "att"
    rc = main(["attention", "vit_demo_patch4_32", str(photo), "sample:astronaut", "--out", str(out),
               "--layers", "0,-1"])
    assert rc == 0
    for name in ("layer_00.png", "layer_05.png", "rollout.png", "mean_distance.png"):
        with Image.open(out / name) as im:
            assert im.size[0] > 50 and im.size[1] > 50
    import json

    dist = json.loads((out / "mean_distance.json").read_text())
    assert dist["unit"] == "input pixels" and len(dist["layers"]) == 6
    assert main(["attention", "vit_demo_patch4_32", str(tmp_path / "missing.png"), "--out", str(out)]) == 2


def _encode_pan(path, n: int, hw: tuple[int, int], top: int, step: int, rate: int, gop: int | None = None):
    """A real clip encoded with PyAV: the chelsea photo (300 x 451) panning right by ``step`` pixels a frame."""
    import av

    photo = skimage_data.chelsea()
    h, w = hw
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if gop:
            stream.codec_context.gop_size = gop
        for i in range(n):
            crop = np.ascontiguousarray(photo[top:top + h, step * i:step * i + w])
            for packet in stream.encode(av.VideoFrame.from_ndarray(crop, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def test_cli_on_a_video_file_with_pooled_attention(tmp_path):
    # a real encoded clip (the photo panning right, 12 frames) through MViT: rollout over pooled layers and
    # per-layer maps averaged over time onto the middle frame
    from PIL import Image

    from vitkit.cli import main

    path = _encode_pan(tmp_path / "clip.mp4", 12, (240, 320), top=30, step=10, rate=12)
    out_dir = tmp_path / "att"
    assert main(["attention", "mvit_demo_8x32", str(path), "--out", str(out_dir), "--layers", "0"]) == 0
    for name in ("layer_00.png", "rollout.png", "mean_distance.png"):
        with Image.open(out_dir / name) as im:
            assert im.size[0] > 50


def test_cli_on_a_long_video_decodes_only_the_clip(tmp_path, monkeypatch):
    """A 120-frame file: the 8 x 2 centre clip (15 frames) is decoded, with at most a key-frame interval before
    it, not the whole video (a one-minute 720p clip decoded whole is 9 GB)."""
    import av

    from vitkit.cli import main

    path = _encode_pan(tmp_path / "long.mp4", 120, (64, 96), top=100, step=2, rate=24, gop=8)

    decoded = []
    real_open = av.open

    class Counting:  # a container that counts the frames it decodes
        def __init__(self, c):
            self._c = c

        def __getattr__(self, name):
            return getattr(self._c, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._c.close()

        def decode(self, *a, **k):
            for frame in self._c.decode(*a, **k):
                decoded.append(frame.pts)
                yield frame

    monkeypatch.setattr(av, "open", lambda *a, **k: Counting(real_open(*a, **k)))
    assert main(["attention", "mvit_demo_8x32", str(path), "--sampling-rate", "2", "--layers", "0",
                 "--out", str(tmp_path / "att")]) == 0
    assert 15 <= len(decoded) <= 15 + 8, f"{len(decoded)} frames decoded for a 15-frame clip"
    assert (tmp_path / "att" / "layer_00.png").is_file()
