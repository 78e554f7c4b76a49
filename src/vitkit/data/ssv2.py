"""Something-Something V2: the official JSON annotation files and ``{id}.webm`` videos.

Layout (as released): ``something-something-v2-labels.json`` (``{"class name": "index"}``), and
``something-something-v2-{train,validation}.json``, each a list of ``{"id", "label", "template", "placeholders"}``;
the class of an entry is its ``template`` with the brackets removed (``"Putting [something] into [something]"`` ->
``"Putting something into something"``), the rule of the official loaders. Videos are ``{id}.webm`` (VP8/VP9)
under ``data.root`` (default: ``20bn-something-something-v2/`` beside the JSON files, else their folder).
``train`` reads the train file; ``val`` and ``test`` read the validation file (the test file has no labels).
Without the labels file the shipped 174-class list (``class_names('something_something_v2')``) names the classes.

The protocol that goes with it (recipes in ``configs/ssv2/``): segment sampling (``data.sampling: segment``), no
horizontal flip - or a flip with the left/right label swap (``augment.flip_label_map: left-right``, see
:mod:`.flip`) - and 1 clip x 3 crops at test time. Entries whose template is not a class, or that have none,
are counted skips.
"""
from __future__ import annotations

import json
import os

from .sources import SampleList

__all__ = ["read_ssv2", "find_ssv2", "SSV2_FILES"]

SSV2_FILES = {"labels": "something-something-v2-labels.json", "train": "something-something-v2-train.json",
              "val": "something-something-v2-validation.json", "test": "something-something-v2-validation.json"}
VIDEO_FOLDER = "20bn-something-something-v2"


def find_ssv2(spec: str) -> str | None:
    """The folder holding the SSv2 annotation files, when ``spec`` is that folder or one of the files."""
    d = spec if os.path.isdir(spec) else os.path.dirname(os.path.abspath(spec))
    if os.path.isfile(os.path.join(d, SSV2_FILES["train"])) or os.path.isfile(os.path.join(d, SSV2_FILES["val"])):
        return d
    if os.path.isdir(os.path.join(d, "labels")) and os.path.isfile(os.path.join(d, "labels", SSV2_FILES["train"])):
        return os.path.join(d, "labels")
    return None


def _label_names(folder: str) -> list[str]:
    path = os.path.join(folder, SSV2_FILES["labels"])
    if not os.path.isfile(path):
        from . import class_names

        return list(class_names("something_something_v2"))
    with open(path, encoding="utf-8") as f:
        mapping = json.load(f)
    if not isinstance(mapping, dict):
        raise ValueError(f"{path}: expected a mapping of class name to index, got {type(mapping).__name__}")
    by_index = sorted((int(v), k) for k, v in mapping.items())
    if [i for i, _ in by_index] != list(range(len(by_index))):
        raise ValueError(f"{path}: class indices are not 0..{len(by_index) - 1}")
    return [k for _, k in by_index]


def read_ssv2(spec: str, split: str, root: str | None = None) -> SampleList:
    """Samples ``({root}/{id}.webm, class)`` of ``split`` from the SSv2 annotation folder (or one of its files)."""
    folder = find_ssv2(spec)
    if folder is None:
        raise FileNotFoundError(f"{spec}: no {SSV2_FILES['train']} / {SSV2_FILES['val']} found")
    ann = spec if os.path.isfile(spec) and spec.endswith(".json") and not spec.endswith(SSV2_FILES["labels"]) \
        else os.path.join(folder, SSV2_FILES[split])
    if not os.path.isfile(ann):
        raise FileNotFoundError(f"{folder}: no annotation file {os.path.basename(ann)} for split {split!r}")
    classes = _label_names(folder)
    index = {c: i for i, c in enumerate(classes)}
    if root is None:
        for cand in (os.path.join(folder, VIDEO_FOLDER), os.path.join(os.path.dirname(folder), VIDEO_FOLDER)):
            if os.path.isdir(cand):
                root = cand
                break
        else:
            root = folder
    with open(ann, encoding="utf-8") as f:
        try:
            entries = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{ann} is not valid JSON: {e}") from None
    if not isinstance(entries, list):
        raise ValueError(f"{ann}: expected a list of {{'id', 'template', ...}} entries")
    samples, rejected = [], {}
    for k, e in enumerate(entries):
        if not isinstance(e, dict) or "id" not in e:
            rejected[f"{ann}[{k}]"] = "entry without an 'id'"
            continue
        path = os.path.join(root, f"{e['id']}.webm")
        template = e.get("template")
        if not template:
            rejected[path] = "empty label set (no 'template')"
            continue
        name = template.replace("[", "").replace("]", "")
        if name not in index:
            rejected[path] = f"template {template!r} is not one of the {len(classes)} classes"
            continue
        samples.append((path, index[name]))
    return SampleList(samples, classes, rejected, origin=ann)
