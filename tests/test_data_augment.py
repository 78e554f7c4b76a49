"""Transforms (images and clips alike), Mixup/CutMix and the repeated-augmentation sampler."""
from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2 import functional as F

from vitkit.data import MixupCutmix, RepeatAugSampler, build_transforms
from vitkit.data.mixup import smooth_one_hot
from vitkit.data.transforms import parse_randaugment

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def test_parse_randaugment():
    assert parse_randaugment("rand-m9-mstd0.5-inc1") == {"n": 2, "m": 9.0, "mstd": 0.5}
    assert parse_randaugment("rand-m7-n4-mstd0.5-inc1") == {"n": 4, "m": 7.0, "mstd": 0.5}
    assert parse_randaugment({"n": 1, "m": 3}) == {"n": 1, "m": 3.0, "mstd": 0.0}
    with pytest.raises(ValueError, match="timm-style"):
        parse_randaugment("augmix-m5")
    with pytest.raises(ValueError, match=r"\[0, 10\]"):
        parse_randaugment("rand-m30")
    with pytest.raises(ValueError, match="unknown augment keys"):
        build_transforms(True, (3, 32, 32), augment={"rand_augment": "rand-m9"})


def test_clip_augmentation_is_the_same_for_every_frame():
    torch.manual_seed(0)
    frame = torch.randint(0, 256, (3, 48, 64), dtype=torch.uint8)
    clip = frame.expand(6, -1, -1, -1).contiguous()  # T, C, H, W with identical frames
    t = build_transforms(True, (3, 6, 32, 32), MEAN, STD, {
        "crop": "rrc", "hflip": 0.5, "color_jitter": 0.4, "randaugment": "rand-m9-mstd0.5-inc1",
        "random_erasing": 1.0})
    for _ in range(5):
        out = t(clip)
        assert out.shape == (3, 6, 32, 32)
        assert all(torch.equal(out[:, 0], out[:, k]) for k in range(1, 6))
    jit = build_transforms(True, (3, 6, 32, 32), MEAN, STD, {"crop": "jitter"})
    out = jit(clip)
    assert out.shape == (3, 6, 32, 32) and all(torch.equal(out[:, 0], out[:, k]) for k in range(6))


def test_test_transform_is_short_side_resize_and_centre_crop():
    img = torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8)
    t = build_transforms(False, (3, 32, 32), MEAN, STD)
    ref = F.center_crop(F.resize(img, [36], antialias=True), [32, 32]).float() / 255  # 32 / 0.875 = 36
    ref = (ref - 0.5) / 0.25
    assert torch.allclose(t(img), ref, atol=1e-5)
    flip = build_transforms(True, (3, 32, 32), MEAN, STD, {"crop": "none", "hflip": 1.0})
    assert torch.allclose(flip(img), ref.flip(-1), atol=1e-5)


def test_three_spatial_crops_span_the_long_side():
    ramp = torch.linspace(0, 255, 90).round().to(torch.uint8).expand(4, 3, 40, 90).contiguous()  # T,C,H,W
    t = build_transforms(False, (3, 4, 32, 32), MEAN, STD, num_crops=3)
    views = t(ramp)
    assert views.shape == (3, 3, 4, 32, 32)
    m = views.mean((1, 2, 3, 4))
    assert m[0] < m[1] < m[2]
    # left crop touches the left edge, right crop the right edge (after resizing the short side to 32)
    assert views[0][..., 0].mean() < -1.9 and views[2][..., -1].mean() > 1.9
    tall = build_transforms(False, (3, 16, 16), MEAN, STD, num_crops=3)(
        torch.linspace(0, 255, 50).round().to(torch.uint8)[:, None].expand(3, 50, 20).contiguous())
    assert tall.mean((1, 2, 3)).argsort().tolist() == [0, 1, 2]  # top, centre, bottom


def test_smooth_one_hot():
    t = smooth_one_hot(torch.tensor([0, 3]), 4, 0.1)
    assert torch.allclose(t.sum(1), torch.ones(2))
    assert t[0, 0].item() == pytest.approx(0.925) and t[0, 1].item() == pytest.approx(0.025)


def test_mixup_images():
    g = torch.Generator().manual_seed(0)
    mix = MixupCutmix(5, mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=0.1, generator=g)
    x = torch.randn(4, 3, 8, 8)
    y = torch.tensor([0, 1, 2, 3])
    xm, t = mix(x, y)
    lam = mix.last_lam
    assert mix.last_mode == "mixup" and 0 < lam < 1
    assert torch.allclose(xm, lam * x + (1 - lam) * x.flip(0))
    ref = lam * smooth_one_hot(y, 5, 0.1) + (1 - lam) * smooth_one_hot(y.flip(0), 5, 0.1)
    assert torch.allclose(t, ref) and torch.allclose(t.sum(1), torch.ones(4))
    # same generator seed -> same result
    xm2, t2 = MixupCutmix(5, 0.8, 0.0, label_smoothing=0.1, generator=torch.Generator().manual_seed(0))(x, y)
    assert torch.equal(xm, xm2) and torch.equal(t, t2)


def test_cutmix_clips_same_box_every_frame():
    g = torch.Generator().manual_seed(3)
    mix = MixupCutmix(3, mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.0, generator=g)
    x = torch.stack([torch.zeros(3, 5, 16, 16), torch.ones(3, 5, 16, 16)])  # B=2 clips, C, T, H, W
    y = torch.tensor([0, 2])
    for _ in range(10):
        xm, t = mix(x, y)
        if mix.last_lam == 1.0:
            continue
        pasted = xm[0, 0]  # T, H, W: ones where the box is
        area = pasted.mean((1, 2))
        assert torch.allclose(area, area[0].expand(5)) and area[0] > 0
        assert torch.equal(pasted, pasted[0].expand_as(pasted))
        assert area[0].item() == pytest.approx(1 - mix.last_lam)
        assert t[0, 0].item() == pytest.approx(mix.last_lam) and t[0, 2].item() == pytest.approx(1 - mix.last_lam)
        break
    else:
        pytest.fail("cutmix never cut")
    with pytest.raises(ValueError, match="batch"):
        mix(torch.zeros(3, 8, 8), torch.tensor([0, 1, 2]))


def test_mixup_switches_between_modes():
    mix = MixupCutmix(10, 0.8, 1.0, switch_prob=0.5, generator=torch.Generator().manual_seed(1))
    modes = set()
    for _ in range(20):
        mix(torch.randn(4, 3, 8, 8), torch.arange(4))
        modes.add(mix.last_mode)
    assert modes == {"mixup", "cutmix"}


def test_repeat_aug_sampler_distributed():
    data = list(range(10))
    ranks = [RepeatAugSampler(data, num_repeats=3, num_replicas=2, rank=r, seed=0) for r in range(2)]
    out = [list(s) for s in ranks]
    assert [len(o) for o in out] == [5, 5] and all(len(s) == 5 for s in ranks)
    # consecutive copies go to different ranks: position k of both ranks come from one repeated run
    full = [i for pair in zip(*out) for i in pair]
    runs = [full[k:k + 3] for k in range(0, 9, 3)]
    assert all(len(set(r)) == 1 for r in runs)
    for s in ranks:
        s.set_epoch(1)
    assert [list(s) for s in ranks] != out
    for s in ranks:
        s.set_epoch(0)
    assert [list(s) for s in ranks] == out  # deterministic per (seed, epoch)


def test_repeat_aug_sampler_single_process():
    s = RepeatAugSampler(list(range(9)), num_repeats=3, num_replicas=1, rank=0, shuffle=False)
    assert list(s) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    with pytest.raises(ValueError, match="rank"):
        RepeatAugSampler(list(range(9)), num_replicas=2, rank=2)


def test_clear_errors_for_wrong_inputs():
    from vitkit.data import build_dataset

    t = build_transforms(False, (3, 16, 16))
    with pytest.raises(TypeError, match="uint8"):
        t(torch.rand(3, 20, 20))
    with pytest.raises(ValueError, match=r"\(T,C,H,W\)"):
        t(torch.zeros(1, 2, 3, 20, 20, dtype=torch.uint8))
    with pytest.raises(ValueError, match="input_size"):
        build_transforms(False, (16, 16))
    with pytest.raises(ValueError, match="crop must be"):
        build_transforms(True, (3, 16, 16), augment={"crop": "squash"})
    with pytest.raises(ValueError, match="split"):
        build_dataset("digits", "dev", train=True, input_size=(3, 32, 32))
    with pytest.raises(ValueError, match="num_crops"):
        build_dataset("digits", "test", train=False, input_size=(3, 32, 32), num_crops=5)
    with pytest.raises(ValueError, match="num_clips"):
        build_dataset("digits", "test", train=False, input_size=(3, 32, 32), num_clips=4)
    with pytest.raises(ValueError, match="labels"):
        MixupCutmix(4)(torch.zeros(2, 3, 8, 8), torch.zeros(3, dtype=torch.long))
