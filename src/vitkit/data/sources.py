"""Finding samples: class-per-folder trees and ``path label`` list files.

Class folders named ``0..N`` map numerically (``'2'`` before ``'10'``), not in
string order (torchvision#714); other names sort as strings (ImageNet's wnids).
List files hold ``path label`` per line (space, tab or comma separated; the
label is the last field, so paths may contain spaces); relative paths are
resolved against ``root`` or else the list file's folder. Lines starting with
``#`` and blank lines are skipped.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

__all__ = ["IMAGE_EXTENSIONS", "VIDEO_EXTENSIONS", "SampleList", "find_classes", "read_list_file",
           "read_class_names", "resolve_source"]

IMAGE_EXTENSIONS = tuple(IMG_EXTENSIONS)
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".ogv", ".3gp")
LIST_SUFFIXES = (".txt", ".csv", ".lst", ".list")
SPLIT_ALIASES = {"train": ("train",), "val": ("val", "validation", "test"), "test": ("test", "val", "validation")}


@dataclass
class SampleList:
    """What a source yields: samples, class names, and entries rejected while reading it."""

    samples: list[tuple[str, int]]   # (path, label); multi-label: (path, tuple of labels)
    classes: list[str]
    rejected: dict[str, str] = field(default_factory=dict)  # path -> reason
    origin: str = ""
    multi_label: bool = False
    frame_counts: dict[str, int] = field(default_factory=dict)  # frame folders: frames the list gives


def find_classes(directory: str) -> list[str]:
    """Class folder names in index order: numerically if all are integers, else sorted."""
    names = [e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith(".")]
    if names and all(n.isdigit() for n in names):
        return sorted(names, key=int)
    return sorted(names)


def read_class_names(path: str) -> list[str]:
    """One class name per line (blank lines ignored)."""
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def _split_line(line: str) -> tuple[str, str] | None:
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    for sep in ("\t", ",", None):
        parts = line.rsplit(sep, 1)
        if len(parts) == 2 and parts[0].strip() and parts[1].strip():
            return parts[0].strip(), parts[1].strip()
    return None


def read_list_file(path: str, root: str | None = None, classes: list[str] | None = None,
                   num_classes: int | None = None) -> SampleList:
    """Parse a ``path label`` list; bad lines and out-of-range labels go to ``rejected``."""
    base = root if root is not None else os.path.dirname(os.path.abspath(path))
    name_to_idx = {c: i for i, c in enumerate(classes)} if classes else {}
    raw: list[tuple[str, str, int]] = []
    rejected: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = _split_line(line)
            if parts is None:
                if line.strip() and not line.strip().startswith("#"):
                    rejected[f"{path}:{lineno}"] = f"cannot parse line {line.strip()!r}: expected 'path label'"
                continue
            p, lab = parts
            full = p if os.path.isabs(p) else os.path.join(base, p)
            try:
                label = int(lab)
            except ValueError:
                if lab not in name_to_idx:
                    rejected[full] = f"label {lab!r} is neither an integer nor a known class name"
                    continue
                label = name_to_idx[lab]
            raw.append((full, lab, label))
    n = num_classes or (len(classes) if classes else None)
    if n is None:
        n = max((lab for _, _, lab in raw), default=-1) + 1
    samples = []
    for full, lab, label in raw:
        if not 0 <= label < n:
            rejected[full] = f"label {lab} out of range [0, {n})"
        else:
            samples.append((full, label))
    names = list(classes) if classes else [str(i) for i in range(n)]
    return SampleList(samples, names, rejected, origin=path)


def _folder_samples(directory: str, classes: list[str], extensions: tuple[str, ...]) -> SampleList:
    if not classes:
        raise RuntimeError(f"{directory}: no class folders (expected one sub-folder of files per class, "
                           "or a 'path label' list file)")
    present = set(find_classes(directory))
    unknown = present - set(classes)
    if unknown:
        raise ValueError(f"{directory}: class folders {sorted(unknown)[:5]} are not in the training classes")
    class_to_idx = {c: i for i, c in enumerate(classes) if c in present}
    samples = make_dataset(directory, class_to_idx, extensions=extensions, allow_empty=True)
    samples = [(p, y) for p, y in samples if not os.path.basename(p).startswith(".")]
    return SampleList(samples, list(classes), origin=directory)


def _class_file_near(path: str) -> str | None:
    d = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    for name in ("classes.txt", "labels.txt", "classnames.txt"):
        if os.path.isfile(os.path.join(d, name)):
            return os.path.join(d, name)
    return None


def resolve_source(spec: str, split: str, video: bool, root: str | None = None,
                   classes: list[str] | str | None = None, num_classes: int | None = None) -> SampleList:
    """Samples of ``split`` from a folder tree, a folder of list files, or a list file."""
    if split not in SPLIT_ALIASES:
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    if not os.path.exists(spec):
        raise FileNotFoundError(f"dataset {spec!r}: no such file or directory (expected 'digits', "
                                "'motion-digits', a class-per-folder directory or a 'path label' list file)")
    extensions = VIDEO_EXTENSIONS if video else IMAGE_EXTENSIONS
    if isinstance(classes, str):
        classes = read_class_names(classes)
    if classes is None and (cf := _class_file_near(spec)):
        classes = read_class_names(cf)
    if os.path.isfile(spec):
        return read_list_file(spec, root, classes, num_classes)
    # a folder holding train.txt / val.txt ... list files?
    lists = {os.path.splitext(n)[0]: os.path.join(spec, n) for n in os.listdir(spec)
             if n.endswith(LIST_SUFFIXES) and os.path.splitext(n)[0] in ("train", "val", "validation", "test")}
    if lists:
        for name in SPLIT_ALIASES[split]:
            if name in lists:
                if classes is None and num_classes is None:  # one label space for all splits
                    num_classes = max(max((y for _, y in read_list_file(p, root).samples), default=-1)
                                      for p in lists.values()) + 1
                return read_list_file(lists[name], root, classes, num_classes)
        raise FileNotFoundError(f"{spec}: no list file for split {split!r} (found {sorted(lists)})")
    subdirs = set(find_classes(spec))
    split_dirs = [d for d in ("train", "val", "validation", "test") if d in subdirs]
    if split_dirs:
        chosen = next((os.path.join(spec, n) for n in SPLIT_ALIASES[split] if n in subdirs), None)
        if chosen is None:
            raise FileNotFoundError(f"{spec}: no folder for split {split!r} (found {split_dirs})")
        ref = os.path.join(spec, "train") if "train" in subdirs else chosen
        return _folder_samples(chosen, classes or find_classes(ref), extensions)
    return _folder_samples(spec, classes or find_classes(spec), extensions)
