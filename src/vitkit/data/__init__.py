"""Data: image folders and lists, PyAV video clips, transforms, mixup, the repeated-augmentation sampler, built-in data.

Interface used by the engine
----------------------------
``build_dataset(spec, split, *, train, input_size, sampling_rate=1, num_clips=1, num_crops=1,
mean, std, augment=None, root=None, classes=None, num_classes=None, sampling='dense', decoder='pyav',
data_format='auto') -> Dataset``

- Video formats beyond ``path label`` lists (``data_format``, :mod:`.formats`): mmaction2 rawframes lists of frame
  folders (:mod:`.frames`), Something-Something V2 JSON + WebM (:mod:`.ssv2`), Charades multi-label CSV
  (:mod:`.charades`; float multi-hot labels, ``dataset.multi_label``). ``sampling='segment'`` takes one frame from
  each of ``T`` equal segments (:func:`.sampling.segment_indices`); ``decoder`` picks the reader of encoded files
  (:mod:`.decoders`). ``augment['flip_label_map']`` (``'left-right'`` or a mapping) makes ``hflip`` swap the
  labels of mirrored classes (:mod:`.flip`).

- ``spec``: ``'digits'``, ``'motion-digits'``, a class-per-folder directory (with
  ``train/``, ``val/`` [``test/``] subfolders if present, else one tree for every
  split), a folder holding ``train.txt``/``val.txt``/``test.txt`` list files, or
  one list file (``path label`` per line; relative paths against ``root`` or the
  list's folder). A ``classes.txt`` beside the list/folder names the classes.
- ``input_size``: ``(C, H, W)`` gives an image dataset, ``(C, T, H, W)`` a video
  dataset taking ``T`` frames ``sampling_rate`` apart.
- Items: ``(x, label)`` with ``x`` float ``(C, H, W)`` / ``(C, T, H, W)``; for
  ``train=False`` with ``num_clips * num_crops > 1`` views,
  ``(views (V, C, [T,] H, W), label, sample_index)`` so the evaluator can average
  scores per video (V = clips x crops, clip-major). ``sample_index`` is the index
  actually loaded: a bad video yields its replacement's index and label.
- ``augment``: keys of :func:`build_transforms` (``None``/``{}`` = no augmentation,
  test-style resize; flips are off unless ``hflip`` is given). Test time: short
  side ``S / crop_pct`` + centre crop, or short side ``S`` + 3 crops along the long side.
- Video: frames are indexed by demuxing (exact for variable frame rate and
  non-zero start pts), then decoded by seeking; train takes one random clip,
  test ``num_clips`` uniformly spaced ones (a warning when they cannot be distinct).
- Built-in: ``digits`` (1,437 / 360, 32x32), ``motion-digits`` (2,000 / 500,
  8 frames of 32x32, or ``(T-1)*tau+1`` frames when a clip needs more) and its
  direction-sensitive 8-class variant ``motion-digits-lr``; ``val``
  and ``test`` name the same held-out part. See :mod:`.builtin`.
- ``dataset.classes`` (list of names), ``dataset.num_classes``,
  ``dataset.bad_samples()`` -> ``{path: reason}``.

Bad samples: missing, empty, truncated or undecodable files are logged once
(warning on logger ``vitkit.data``) and replaced by another sample; labels out
of range and unparsable list lines are logged and skipped. ``bad_samples()``
includes what DataLoader workers found: each dataset owns a temporary directory
in which the first process to report a path creates one marker file (see
:mod:`vitkit.data.badlog`); with DDP each rank has its own dataset and count.
A dataset in which nothing can be read raises ``RuntimeError`` at construction.

Also: ``build_transforms`` (:mod:`.transforms`), ``MixupCutmix`` (:mod:`.mixup`),
``RepeatAugSampler`` (:mod:`.repeat_aug`), ``class_names('imagenet1k' | 'kinetics400' | 'kinetics600' |
'something_something_v2')`` (shipped lists in the datasets' index order; sources in ``classes/README.md``), and the dataset doctor
``vitkit data check PATH`` (:mod:`.doctor`).
"""
from __future__ import annotations

import logging
from functools import lru_cache
from importlib import resources
from typing import Sequence

from vitkit.models.input_spec import IMAGENET_MEAN, IMAGENET_STD

from .builtin import DIGIT_CLASSES, MOTIONS, MOTIONS_LR, BuiltinDataset, load_digits_split, motion_digits_split
from .datasets import FileDataset
from .flip import FlipLabelSwap, resolve_flip_label_map
from .formats import resolve_dataset
from .mixup import MixupCutmix
from .repeat_aug import RepeatAugSampler
from .sampling import clip_span
from .transforms import build_transforms

log = logging.getLogger("vitkit.data")

__all__ = ["build_dataset", "build_transforms", "MixupCutmix", "RepeatAugSampler", "class_names",
           "IMAGENET_MEAN", "IMAGENET_STD", "BUILTIN", "is_builtin"]

BUILTIN = ("digits", "motion-digits", "motion-digits-lr")
CLASS_LISTS = ("imagenet1k", "kinetics400", "kinetics600", "something_something_v2")


def is_builtin(spec: str) -> bool:
    """Whether ``spec`` names a built-in dataset (generated or shipped, with fixed classes)."""
    return spec in BUILTIN


@lru_cache(maxsize=None)
def class_names(name: str) -> tuple[str, ...]:
    """Shipped class lists in their standard index order: ``'imagenet1k'``, ``'kinetics400'``, ``'kinetics600'``
    or ``'something_something_v2'`` (see ``classes/README.md`` for their sources)."""
    if name not in CLASS_LISTS:
        raise ValueError(f"no shipped class list {name!r}; available: {', '.join(map(repr, CLASS_LISTS))}")
    text = resources.files(__package__).joinpath("classes", f"{name}.txt").read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


@lru_cache(maxsize=4)
def _motion_digits(split: str, frames: int, motions: int = len(MOTIONS)):
    return motion_digits_split(split, frames=frames, motions=motions)


def _split_flip(augment: dict | None) -> tuple[dict | None, float, object]:
    """Take ``hflip`` out of ``augment`` when ``flip_label_map`` asks for a label-swapping flip."""
    aug = dict(augment) if augment else None
    if not aug or "flip_label_map" not in aug:
        return aug, 0.0, None
    spec = aug.pop("flip_label_map")
    return aug, float(aug.pop("hflip", 0.0) or 0.0), spec


def _with_flip(ds, p: float, spec, train: bool):
    if not train or not p or spec is None:
        return ds
    if getattr(ds, "multi_label", False):
        raise ValueError("augment.flip_label_map is for single-label data")
    label_map = resolve_flip_label_map(spec, ds.classes)
    if not label_map:
        log.warning("%s: augment.flip_label_map found no left/right class pairs; flips keep every label", ds.name)
    return FlipLabelSwap(ds, p, label_map)


def build_dataset(spec: str, split: str, *, train: bool, input_size: Sequence[int], sampling_rate: int = 1,
                  num_clips: int = 1, num_crops: int = 1, mean: Sequence[float] = IMAGENET_MEAN,
                  std: Sequence[float] = IMAGENET_STD, augment: dict | None = None, root: str | None = None,
                  classes: list[str] | str | None = None, num_classes: int | None = None, sampling: str = "dense",
                  decoder: str = "pyav", data_format: str = "auto", short_video: str = "pad"):
    """Dataset for ``spec``/``split`` producing tensors of ``input_size``; see the module docstring.

    ``short_video``: what a video shorter than a clip gets (``pad``, ``loop`` or ``skip``; :mod:`vitkit.data.short`).
    """
    input_size = tuple(int(v) for v in input_size)
    if len(input_size) not in (3, 4):
        raise ValueError(f"input_size must be (C,H,W) or (C,T,H,W), got {input_size}")
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    if num_crops not in (1, 3):
        raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
    video = len(input_size) == 4
    if not video and num_clips != 1:
        raise ValueError("num_clips > 1 needs a video input_size (C,T,H,W)")
    channels = input_size[0]
    if video and channels != 3 and spec not in BUILTIN:
        raise ValueError(f"video decoding gives 3 channels, input_size asks for {channels}")
    frames = input_size[1] if video else 1
    crops = num_crops if not train else 1
    augment, flip_p, flip_map = _split_flip(augment)
    if spec in BUILTIN:
        aug = dict(augment) if augment else None
        if spec == "motion-digits" and (flip_p or (aug and aug.get("hflip"))):
            log.warning("motion-digits: hflip disabled - a flip turns 'left' into 'right' and 'clockwise' into "
                        "'counter-clockwise' (use motion-digits-lr with augment.flip_label_map: left-right)")
            aug = dict(aug or {}, hflip=0.0)
            flip_p = 0.0
        if spec == "motion-digits-lr" and train and aug and aug.get("hflip"):
            log.warning("motion-digits-lr: hflip without augment.flip_label_map mislabels every flipped "
                        "left/right clip (the Something-Something recipes do not flip)")
        test_aug = {"crop_pct": 1.0} if not (train and aug) else aug  # built-in frames fill the image: no crop
        transform = build_transforms(train, input_size, mean, std, test_aug if not (train and aug) else aug,
                                     num_crops=crops)
        if spec == "digits":
            if video:
                raise ValueError("'digits' is an image dataset: input_size must be (C,H,W); "
                                 "use 'motion-digits' for clips")
            data, labels = load_digits_split(split)
            names = DIGIT_CLASSES
        else:
            if not video:
                raise ValueError(f"{spec!r} is a video dataset: input_size must be (C,T,H,W)")
            names = list(MOTIONS if spec == "motion-digits" else MOTIONS_LR)
            data, labels = _motion_digits(split, max(8, clip_span(frames, sampling_rate)), len(names))
        fast = not (train and aug) and crops == 1 and tuple(data.shape[-2:]) == input_size[-2:]
        ds = BuiltinDataset(data, labels, names, transform, fast=fast, mean=mean, std=std, train=train,
                            channels=channels, num_frames=frames if video else None,
                            sampling_rate=sampling_rate, num_clips=num_clips, num_crops=crops, name=spec,
                            sampling=sampling)
        return _with_flip(ds, flip_p, flip_map, train)
    source = resolve_dataset(spec, split, video, data_format, root=root, classes=classes, num_classes=num_classes)
    transform = build_transforms(train, input_size, mean, std, augment, num_crops=crops)
    ds = FileDataset(source, transform, video=video, train=train, num_frames=frames,
                     sampling_rate=sampling_rate, num_clips=num_clips, num_crops=crops,
                     channels=channels, name=spec, sampling=sampling, decoder=decoder,
                     min_side=4 * max(input_size[-2:]),  # large JPEGs: a draft random crops cannot tell apart
                     short_video=short_video)
    return _with_flip(ds, flip_p, flip_map, train)
