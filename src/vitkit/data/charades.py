"""Charades: multi-label videos from the official CSV files.

``Charades_v1_train.csv`` / ``Charades_v1_test.csv`` have a column ``id`` (the video ``{id}.mp4`` under
``data.root``, default ``Charades_v1_480/`` beside the CSVs, else their folder) and a column ``actions``:
``c092 11.90 21.20;c147 0.00 12.60`` (class, start and end in seconds). A video's labels are the set of its
classes (the video-level classification task of the official evaluation); ``Charades_v1_classes.txt``
(``c000 Holding some clothes``) names the 157 classes, else they are named ``c000`` ... ``c156``.
``train`` reads the train file, ``val`` and ``test`` the test file. A video without actions (an empty label set)
or with an unknown class code is a counted skip.

The protocol (recipes in ``configs/charades/``): sigmoid outputs and binary cross-entropy, dense ``T x tau``
clips, several clips at test time whose scores are max-pooled, mean average precision over classes.
"""
from __future__ import annotations

import csv
import os

from .sources import SampleList

__all__ = ["read_charades", "find_charades", "CHARADES_FILES", "CHARADES_NUM_CLASSES"]

CHARADES_FILES = {"train": "Charades_v1_train.csv", "val": "Charades_v1_test.csv", "test": "Charades_v1_test.csv",
                  "classes": "Charades_v1_classes.txt"}
CHARADES_NUM_CLASSES = 157
VIDEO_FOLDERS = ("Charades_v1_480", "Charades_v1")


def find_charades(spec: str) -> str | None:
    """The Charades CSV for ``spec``: the folder holding the official CSVs, or a CSV with an 'actions' column."""
    if os.path.isdir(spec):
        return spec if any(os.path.isfile(os.path.join(spec, CHARADES_FILES[s])) for s in ("train", "val")) else None
    if spec.lower().endswith(".csv") and os.path.isfile(spec):
        with open(spec, encoding="utf-8", newline="") as f:
            header = next(csv.reader(f), [])
        return spec if "actions" in header and "id" in header else None
    return None


def _classes(folder: str) -> list[str]:
    path = os.path.join(folder, CHARADES_FILES["classes"])
    if not os.path.isfile(path):
        return [f"c{i:03d}" for i in range(CHARADES_NUM_CLASSES)]
    names = []
    with open(path, encoding="utf-8") as f:
        for k, line in enumerate(line for line in f if line.strip()):
            code, _, name = line.strip().partition(" ")
            if code != f"c{k:03d}":
                raise ValueError(f"{path}: line {k + 1} should start with c{k:03d}, got {code!r}")
            names.append(name or code)
    return names


def read_charades(spec: str, split: str, root: str | None = None) -> SampleList:
    """Multi-label samples ``({root}/{id}.mp4, (classes...))`` of ``split``."""
    if os.path.isdir(spec):
        folder, csv_path = spec, os.path.join(spec, CHARADES_FILES[split])
    else:
        folder, csv_path = os.path.dirname(os.path.abspath(spec)), spec
    if not os.path.isfile(csv_path):
        raise FileNotFoundError(f"{folder}: no {os.path.basename(csv_path)} for split {split!r}")
    classes = _classes(folder)
    if root is None:
        root = next((os.path.join(folder, v) for v in VIDEO_FOLDERS if os.path.isdir(os.path.join(folder, v))), folder)
    samples, rejected = [], {}
    with open(csv_path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "id" not in reader.fieldnames or "actions" not in reader.fieldnames:
            raise ValueError(f"{csv_path}: expected the Charades columns 'id' and 'actions', got {reader.fieldnames}")
        for row in reader:
            path = os.path.join(root, f"{row['id']}.mp4")
            labels, bad = set(), None
            for action in filter(None, (a.strip() for a in (row["actions"] or "").split(";"))):
                code = action.split()[0]
                if not (code.startswith("c") and code[1:].isdigit() and int(code[1:]) < len(classes)):
                    bad = f"unknown class {code!r} (expected c000..c{len(classes) - 1:03d})"
                    break
                labels.add(int(code[1:]))
            if bad or not labels:
                rejected[path] = bad or "empty label set (no actions)"
                continue
            samples.append((path, tuple(sorted(labels))))
    return SampleList(samples, classes, rejected, origin=csv_path, multi_label=True)
