"""Finding samples: class-per-folder trees and ``path label`` list files.

Class folders named ``0..N`` map numerically (``'2'`` before ``'10'``), not in
string order (torchvision#714); other names sort as strings (ImageNet's wnids).
The list format, one entry per line (lines starting with ``#`` and blank lines are skipped; relative paths are
resolved against ``root`` or else the list file's folder):

- ``.csv`` files are CSV (RFC 4180, Python's ``csv`` module): ``path,label``; a path holding a comma or a quote
  is quoted (``"a, b.jpg",3``); a first line ``path,label`` is a header.
- any other list (``.txt``, ``.lst``, ``.list``): the label is the text after the line's last tab if it has one,
  else after its last run of spaces, so paths may contain spaces and commas (``my clips/a, b.mp4 3``); a line
  with neither (``a.jpg,3``) splits at its last comma.

Labels are integers (class indices) or class names from ``classes``. Without a class file or a class count the
classes are the distinct integer labels seen, in numeric order: contiguous labels ``0..N-1`` map to themselves;
sparse ones (``0..9`` and a stray ``999``) are mapped to ``0..K-1`` (class names keep the original numbers) with a
warning, rather than a 1000-class model. Integer labels against integer class names map by name.
"""
from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass, field

from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

__all__ = ["IMAGE_EXTENSIONS", "VIDEO_EXTENSIONS", "SampleList", "find_classes", "read_list_file",
           "read_class_names", "resolve_source", "infer_classes", "same_source"]

IMAGE_EXTENSIONS = tuple(IMG_EXTENSIONS)
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".ogv", ".3gp")
LIST_SUFFIXES = (".txt", ".csv", ".lst", ".list")
log = logging.getLogger("vitkit.data")
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


def _split_line(line: str, is_csv: bool = False) -> tuple[str, str] | None:
    """``(path, label)`` of one list line by the format in the module docstring, or None when it has no label."""
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    if is_csv:
        try:
            fields = next(csv.reader([line]))
        except csv.Error:
            return None
        if len(fields) >= 2 and fields[0].strip() and fields[-1].strip():
            return ",".join(fields[:-1]).strip(), fields[-1].strip()
        return None
    for sep in ("\t", None, ","):
        if sep == "," and any(c.isspace() for c in line):
            break
        parts = line.rsplit(sep, 1)
        if len(parts) == 2 and parts[0].strip() and parts[1].strip():
            return parts[0].strip(), parts[1].strip()
        if sep == "\t" and "\t" in line:
            break
    return None


def infer_classes(labels: list[int], origin: str) -> list[int]:
    """The distinct integer labels seen, sorted; warns when they are not ``0..N-1``."""
    seen = sorted(set(labels))
    if seen and seen != list(range(len(seen))):
        gaps = seen[-1] + 1 - len(seen)
        log.warning("%s: labels are sparse: %d distinct values in %d..%d (%d missing, e.g. %s); the classes are "
                    "the %d labels seen, mapped in numeric order to 0..%d. Put a classes.txt beside the list "
                    "if that is not what you meant", origin, len(seen), seen[0], seen[-1], gaps,
                    ", ".join(str(v) for v in seen[-3:]), len(seen), len(seen) - 1)
    return seen


def read_list_file(path: str, root: str | None = None, classes: list[str] | None = None,
                   num_classes: int | None = None) -> SampleList:
    """Parse a ``path label`` list; bad lines and out-of-range labels go to ``rejected``."""
    base = root if root is not None else os.path.dirname(os.path.abspath(path))
    name_to_idx = {c: i for i, c in enumerate(classes)} if classes else {}
    by_name = bool(classes) and all(_is_int(c) for c in classes)  # integer class names: labels map by name
    is_csv = path.lower().endswith(".csv")
    raw: list[tuple[str, str, int]] = []
    rejected: dict[str, str] = {}
    with open(path, encoding="utf-8", newline="" if is_csv else None) as f:
        for lineno, line in enumerate(f, 1):
            parts = _split_line(line, is_csv)
            if parts is not None and lineno == 1 and is_csv and parts[1].lower() in ("label", "class", "labels"):
                continue  # a CSV header
            if parts is None:
                if line.strip() and not line.strip().startswith("#"):
                    rejected[f"{path}:{lineno}"] = f"cannot parse line {line.strip()!r}: expected 'path label'"
                continue
            p, lab = parts
            full = p if os.path.isabs(p) else os.path.join(base, p)
            try:
                label = int(lab)
                if by_name:
                    label = name_to_idx.get(str(label), len(name_to_idx))  # unknown: out of range below
            except ValueError:
                if lab not in name_to_idx:
                    rejected[full] = f"label {lab!r} is neither an integer nor a known class name"
                    continue
                label = name_to_idx[lab]
            raw.append((full, lab, label))
    n = num_classes or (len(classes) if classes else None)
    if n is None:  # classes from the labels seen (sparse ones remapped, with a warning)
        seen = infer_classes([lab for _, _, lab in raw], path)
        remap = {v: i for i, v in enumerate(seen)}
        raw = [(full, lab, remap[label]) for full, lab, label in raw]
        classes, n = [str(v) for v in seen], len(seen)
    samples = []
    for full, lab, label in raw:
        if not 0 <= label < n:
            rejected[full] = f"label {lab} out of range [0, {n})"
        else:
            samples.append((full, label))
    names = list(classes) if classes else [str(i) for i in range(n)]
    return SampleList(samples, names, rejected, origin=path)


def _is_int(s: str) -> bool:
    try:
        int(s)
        return True
    except ValueError:
        return False


def _quiet(fn, *args):
    """``fn(*args)`` with the data logger's warnings held back (a first pass whose findings are re-reported)."""
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        return fn(*args)
    finally:
        log.setLevel(level)


def same_source(train_origin: str, test_origin: str) -> str | None:
    """A warning when the training and test samples come from the same list or folder, else None."""
    if train_origin and os.path.abspath(train_origin) == os.path.abspath(test_origin):
        return (f"the test split is the training data itself ({train_origin}): test accuracy measures memorisation; "
                "give separate train/test lists (a folder holding train.txt and val.txt) or folders")
    return None


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
                if classes is None and num_classes is None:  # one label space for all splits: the labels seen
                    seen = [int(c) for p in lists.values() for c in _quiet(read_list_file, p, root).classes]
                    classes = [str(v) for v in infer_classes(seen, spec)]
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
