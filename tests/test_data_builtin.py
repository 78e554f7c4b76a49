"""Built-in data: digits (real scikit-learn digits) and motion-digits (class = motion)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vitkit.data import build_dataset
from vitkit.data.builtin import MOTIONS, _digits, load_digits_split, motion_digits_split


def test_digits_fixed_stratified_split():
    images, target, tr, te = _digits()
    assert len(tr) == 1437 and len(te) == 360 and not set(tr) & set(te)
    assert len(images) == 1797
    # stratified: every class is ~20 % in test
    frac = np.bincount(target[te], minlength=10) / np.bincount(target, minlength=10)
    assert np.all(np.abs(frac - 0.2) < 0.02)
    x, y = load_digits_split("train")
    x2, y2 = load_digits_split("train")
    assert x.shape == (1437, 3, 32, 32) and x.dtype == torch.uint8 and torch.equal(x, x2) and torch.equal(y, y2)
    # the upscaled image is the real digit: 4x4 block means correlate with the 8x8 original
    small = x[:, 0].float().reshape(-1, 8, 4, 8, 4).mean((2, 4)).reshape(-1, 64)
    orig = torch.from_numpy(images[tr]).reshape(-1, 64)
    a, b = small - small.mean(1, keepdim=True), orig - orig.mean(1, keepdim=True)
    corr = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
    assert corr.min() > 0.9 and corr.mean() > 0.97


def test_digits_dataset_items():
    ds = build_dataset("digits", "train", train=True, input_size=(3, 32, 32), mean=(0.5,) * 3, std=(0.5,) * 3)
    assert len(ds) == 1437 and ds.classes == [str(i) for i in range(10)] and ds.num_classes == 10
    x, y = ds[7]
    assert x.shape == (3, 32, 32) and x.min() >= -1 and x.max() <= 1 and isinstance(y, int)
    test = build_dataset("digits", "test", train=False, input_size=(3, 32, 32))
    val = build_dataset("digits", "val", train=False, input_size=(3, 32, 32))
    assert len(test) == len(val) == 360
    # the fast path equals the general transform pipeline
    slow = build_dataset("digits", "test", train=False, input_size=(3, 32, 32))
    slow.fast = False
    assert torch.allclose(test[5][0], slow[5][0], atol=1e-6)
    big = build_dataset("digits", "test", train=False, input_size=(3, 64, 64))
    assert big[0][0].shape == (3, 64, 64)
    aug = build_dataset("digits", "train", train=True, input_size=(1, 32, 32), mean=(0.5,), std=(0.5,),
                        augment={"crop": "rrc", "scale": (0.7, 1.0), "randaugment": "rand-m5-mstd0.5"})
    assert aug[0][0].shape == (1, 32, 32)


def _centroids(clip: torch.Tensor) -> np.ndarray:
    """(T, 1, H, W) -> (T, 2) x, y centroid of the bright sprite."""
    c = clip[:, 0].float().numpy()
    w = np.where(c > 60, c, 0)
    ys, xs = np.mgrid[: c.shape[1], : c.shape[2]]
    return np.stack([(w * xs).sum((1, 2)) / w.sum((1, 2)), (w * ys).sum((1, 2)) / w.sum((1, 2))], 1)


def _motion_of(cent: np.ndarray) -> int:
    v = np.diff(cent, axis=0)
    turn = float(np.sum(v[:-1, 0] * v[1:, 1] - v[:-1, 1] * v[1:, 0]))
    chord = cent[-1] - cent[0]
    path = np.abs(v).sum()
    straight = np.linalg.norm(chord) / max(np.linalg.norm(v, axis=1).sum(), 1e-6)
    if straight < 0.9:
        return 8 if turn > 0 else 9  # image y points down: positive turn = clockwise
    dirs = [(1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (-1, 1), (1, -1)]
    sx = np.sign(np.where(np.abs(chord) > 0.25 * np.abs(chord).max(), chord, 0)).astype(int)
    assert path > 0
    return dirs.index((int(sx[0]), int(sx[1])))


def test_motion_digits_class_is_the_motion_and_order_matters():
    clips, labels = motion_digits_split("test")
    assert clips.shape == (500, 8, 1, 32, 32) and labels.tolist() == [i % 10 for i in range(500)]
    again, _ = motion_digits_split("test")
    assert torch.equal(clips, again)  # deterministic per index
    pred = np.array([_motion_of(_centroids(c)) for c in clips])
    assert (pred == labels.numpy()).mean() > 0.97
    # reversing time turns each motion into its opposite class
    opposite = {0: 1, 1: 0, 2: 3, 3: 2, 4: 5, 5: 4, 6: 7, 7: 6, 8: 9, 9: 8}
    rev = np.array([_motion_of(_centroids(c.flip(0))) for c in clips[:100]])
    assert (rev == np.array([opposite[int(v)] for v in labels[:100]])).mean() > 0.97


def test_motion_digits_dataset():
    tr = build_dataset("motion-digits", "train", train=True, input_size=(3, 8, 32, 32), mean=(0.45,) * 3,
                       std=(0.225,) * 3)
    te = build_dataset("motion-digits", "test", train=False, input_size=(3, 8, 32, 32), num_clips=1)
    assert len(tr) == 2000 and len(te) == 500 and tr.classes == list(MOTIONS)
    x, y = tr[13]
    assert x.shape == (3, 8, 32, 32) and y == 3
    assert torch.equal(x[0], x[1])  # grey: 3 equal channels
    with pytest.raises(ValueError, match="video dataset"):
        build_dataset("motion-digits", "train", train=True, input_size=(3, 32, 32))
    with pytest.raises(ValueError, match="image dataset"):
        build_dataset("digits", "train", train=True, input_size=(3, 8, 32, 32))
    mv = build_dataset("motion-digits", "test", train=False, input_size=(3, 4, 32, 32), sampling_rate=1,
                       num_clips=2, num_crops=3)
    views, label, idx = mv[4]
    assert views.shape == (6, 3, 4, 32, 32) and label == 4 and idx == 4


def test_shipped_class_lists():
    from vitkit.data import class_names

    im = class_names("imagenet1k")
    assert len(im) == 1000 == len(set(im))
    assert (im[0], im[1], im[207], im[281], im[409], im[999]) == (
        "tench", "goldfish", "golden retriever", "tabby", "analog clock", "toilet tissue")
    k = class_names("kinetics400")
    assert len(k) == 400 == len(set(k)) and list(k) == sorted(k)  # Kinetics indices are alphabetical
    assert (k[0], k[1], k[399]) == ("abseiling", "air drumming", "zumba")
    with pytest.raises(ValueError, match="available"):
        class_names("places365")
