"""Which reader a dataset spec needs: ``data.format`` (``auto`` by default) picks it.

- ``ssv2``: Something-Something V2 JSON files (:mod:`.ssv2`); auto when the spec is (or holds) them.
- ``charades``: Charades CSV files (:mod:`.charades`); auto for a folder with ``Charades_v1_*.csv`` or a CSV with
  ``id`` and ``actions`` columns.
- ``rawframes``: ``frame_dir total_frames label`` lists (:mod:`.frames`); auto when the list's first entry is a
  folder followed by a frame count.
- ``list`` / ``folder``: ``path label`` lists and class-per-folder trees (:mod:`.sources`), the fallback of ``auto``.
"""
from __future__ import annotations

import os

from .sources import LIST_SUFFIXES, SampleList, read_class_names, resolve_source

__all__ = ["FORMATS", "resolve_dataset"]

FORMATS = ("auto", "list", "folder", "rawframes", "ssv2", "charades")
_SPLIT_FILES = {"train": ("train",), "val": ("val", "validation", "test"), "test": ("test", "val", "validation")}


def _split_list(spec: str, split: str) -> str | None:
    """``spec`` itself when a file, else its ``train.txt`` / ``val.txt`` ... for ``split``."""
    if os.path.isfile(spec):
        return spec
    if not os.path.isdir(spec):
        return None
    for name in _SPLIT_FILES[split]:
        for suf in LIST_SUFFIXES:
            p = os.path.join(spec, name + suf)
            if os.path.isfile(p):
                return p
    return None


def resolve_dataset(spec: str, split: str, video: bool, fmt: str = "auto", root: str | None = None,
                    classes: list[str] | str | None = None, num_classes: int | None = None) -> SampleList:
    """Samples of ``split`` from ``spec`` read as ``fmt``; see the module docstring."""
    from .charades import find_charades, read_charades
    from .frames import looks_like_rawframe_list, read_rawframe_list
    from .ssv2 import find_ssv2, read_ssv2

    if fmt not in FORMATS:
        raise ValueError(f"data.format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt in ("ssv2", "charades", "rawframes") and not video:
        raise ValueError(f"data.format={fmt!r} is a video format: input_size must be (C,T,H,W)")
    if video and fmt in ("auto", "ssv2") and find_ssv2(spec):
        return read_ssv2(spec, split, root)
    if video and fmt in ("auto", "charades") and find_charades(spec):
        return read_charades(spec, split, root)
    lst = _split_list(spec, split) if video and fmt in ("auto", "rawframes") else None
    if lst is not None and (fmt == "rawframes" or looks_like_rawframe_list(lst, root)):
        names = read_class_names(classes) if isinstance(classes, str) else classes
        if names is None:
            near = os.path.join(os.path.dirname(os.path.abspath(lst)), "classes.txt")
            names = read_class_names(near) if os.path.isfile(near) else None
        if num_classes is None and names is None and os.path.isdir(spec):  # one label space for all splits
            lists = {p for s in _SPLIT_FILES for p in [_split_list(spec, s)] if p}
            num_classes = max(max((max(y) if isinstance(y, tuple) else y for _, y in
                                   read_rawframe_list(p, root).samples), default=-1) for p in lists) + 1
        return read_rawframe_list(lst, root, names, num_classes)
    if fmt in ("ssv2", "charades", "rawframes") and os.path.exists(spec):
        raise FileNotFoundError(f"dataset {spec!r} is not in the {fmt!r} format (see vitkit.data.formats)")
    return resolve_source(spec, split, video, root=root, classes=classes, num_classes=num_classes)
