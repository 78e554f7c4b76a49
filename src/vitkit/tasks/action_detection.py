"""Video action detection, AVA style, through the one engine (``task: {name: action_detection}``).

Data (:mod:`vitkit.data.ava`): extracted frames (``task.frame_dir``), the AVA annotation CSVs
(``task.train_annotations`` / ``test_annotations``), optional person-detection CSVs (``task.train_proposals`` /
``test_proposals``; testing uses the ground-truth boxes without them), the label map (``task.label_map``) and the
excluded timestamps (``task.exclusions``); or the built-in ``ava-digits`` (``data.dataset: ava-digits``, moving
digits written once in the AVA layout, :mod:`vitkit.data.ava_digits`). The clip is ``data.num_frames`` x
``data.sampling_rate`` (the model's by default) around each keyframe; ``data.input_size`` is the training crop and
the test short side.

Model: :class:`vitkit.tasks.action_detection_model.ActionDetector` on ``model.name``'s last video map (``model.*``
config keys go to the backbone, ``model.weights`` initialises it from a classification checkpoint). A batch is
``({"clips", "boxes"}, target)``; the loss is the binary cross-entropy of every box's action logits against its
multi-hot labels (boxes without actions are negatives), averaged over boxes and classes. The metric is the AVA
frame mAP at IoU 0.5 over the label map's classes (:func:`vitkit.tasks.ava_eval.frame_ap`), the detections of
all ranks gathered.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Subset

from . import register_task
from .base import Task


@dataclasses.dataclass(frozen=True)
class ActionDetectionOptions:
    frame_dir: str = ""                 # frames/VIDEO/VIDEO_000001.jpg
    label_map: str = ""                 # ava_action_list_v2.2_for_activitynet_2019.pbtxt (the evaluated classes)
    train_annotations: str = ""         # ava_train_v2.2.csv
    train_proposals: list = dataclasses.field(default_factory=list)  # extra training boxes (detections)
    test_annotations: str = ""          # ava_val_v2.2.csv: the metric's ground truth
    test_proposals: list = dataclasses.field(default_factory=list)   # boxes evaluated on (default: ground truth)
    exclusions: str = ""                # ava_val_excluded_timestamps_v2.2.csv
    train_frame_list: str = ""          # PySlowFast frame_lists/train.csv (default: the folders' files)
    test_frame_list: str = ""
    num_classes: int = 0                # outputs; 0: the largest id of the label map (AVA: 80)
    score_threshold: float = 0.8        # proposals scoring below are dropped (DETECTION_SCORE_THRESH)
    match_iou: float = 0.9              # unlabelled training proposals take the actions of ground truth at this IoU
    jitter: list = dataclasses.field(default_factory=lambda: [256, 320])  # training short-side range
    flip: float = 0.5
    fps: int = 30                       # frames per second of the extracted frames
    start_second: int = 900             # the second of frame 1 (AVA's frames start at 15 minutes)
    valid_seconds: list = dataclasses.field(default_factory=lambda: [902, 1798])  # keyframes used
    dropout: float = 0.5                # before the head's linear layer
    roi_resolution: int = 7             # RoIAlign grid


def ava_files(recipe: Any, opts: Any, split: str) -> dict[str, Any]:
    """The frame folder, annotation, proposal, label-map and frame-list files of ``split`` ('train' / 'test')."""
    if recipe.data.dataset == "ava-digits":
        from vitkit.data.ava_digits import export_ava_digits

        f = export_ava_digits(split, fps=opts.fps)
        return {"frame_dir": f["frames"], "annotations": f["annotations"], "proposals": [f["proposals"]],
                "label_map": f["label_map"], "frame_list": None}
    ann = getattr(opts, f"{split}_annotations")
    if not opts.frame_dir or not opts.label_map or (split == "train" and not ann):
        from vitkit.engine.recipe import RecipeError

        raise RecipeError(f"action_detection needs task.frame_dir, task.label_map and task.{split}_annotations "
                          "(the AVA frames, label map and CSV), or data.dataset: ava-digits")
    return {"frame_dir": opts.frame_dir, "annotations": ann or None,
            "proposals": list(getattr(opts, f"{split}_proposals")), "label_map": opts.label_map,
            "frame_list": getattr(opts, f"{split}_frame_list") or None}


class ActionDetection(Task):
    """Multi-label data (the trainer refuses mixup, cutmix and label smoothing for it), no running accuracy, and
    ``data.input_size`` is the crop: the backbone runs at any size."""

    name = "action_detection"
    options = ActionDetectionOptions
    headline = "frame_mAP"
    input_follows_model = False
    train_metric = None

    def build_datasets(self, recipe: Any, spec: Any) -> tuple[Any, Any]:
        from vitkit.data.ava import AvaDataset, read_exclusions
        from vitkit.engine.data import resolve_input

        if not hasattr(spec, "num_frames"):  # vitkit evaluate passes no spec
            spec = resolve_input(recipe, None, data_follows_model=False)[1]
        if not spec.num_frames:
            from vitkit.engine.recipe import RecipeError

            raise RecipeError(f"action_detection takes a video model; {recipe.model.name} takes images")
        o = self.opts(recipe)
        common = dict(num_frames=spec.num_frames, sampling_rate=spec.sampling_rate, crop_size=spec.height,
                      score_threshold=o.score_threshold, num_classes=o.num_classes or None, fps=o.fps,
                      start_second=o.start_second, valid_seconds=tuple(o.valid_seconds))
        sets = []
        for split, train in (("train", True), ("test", False)):
            f = ava_files(recipe, o, split)
            ds = AvaDataset(f["frame_dir"], f["annotations"], f["label_map"], train=train,
                            proposals=f["proposals"], frame_list=f["frame_list"], jitter=tuple(o.jitter),
                            flip=o.flip, match_iou=o.match_iou, **common)
            sets.append(ds)
        sets[1].excluded = read_exclusions(o.exclusions or None)
        return sets[0], sets[1]

    def build_model(self, recipe: Any, num_classes: int, log: Callable[[str], None] = print) -> nn.Module:
        from .action_detection_model import ActionDetector

        o = self.opts(recipe)
        model = ActionDetector(recipe.model.name, num_classes, weights=recipe.model.weights, strict=False,
                               dropout=o.dropout, resolution=o.roi_resolution, **recipe.model.config)
        if recipe.model.weights:
            log(f"backbone initialised from {recipe.model.weights}")
        return model

    def default_num_classes(self, recipe: Any) -> int:
        from vitkit.data.ava import read_label_map

        o = self.opts(recipe)
        if o.num_classes:
            return o.num_classes
        return max(read_label_map(ava_files(recipe, o, "test")["label_map"]))

    def loss(self, output: Any, target: Any, soft_target: Any = None, label_smoothing: float = 0.0) -> torch.Tensor:
        from vitkit.engine.multilabel import multilabel_loss

        return multilabel_loss(output.float(), target["labels"])

    def batch_stats(self, output: Any, target: Any) -> tuple[int, int]:
        return 0, len(target["keys"])  # no running accuracy; the count gives clips/s

    def evaluate(self, model: nn.Module, dataset: Any, *, batch_size: int = 8, workers: int = 0,
                 device: torch.device = torch.device("cpu"), amp: str = "none", dist: Any = None,
                 progress: bool = False, **_) -> dict[str, float]:
        """Frame mAP (%) at IoU 0.5 on ``dataset`` (an :class:`~vitkit.data.ava.AvaDataset`, or a ``Subset`` of
        one: then only the ground truth of its keyframes counts)."""
        from vitkit.data.ava import collate_ava
        from vitkit.engine.amp import autocast
        from vitkit.engine.distributed import all_gather_objects
        from vitkit.engine.evaluate import ShardSampler
        from vitkit.engine.trainer import to_device

        from .ava_eval import frame_ap

        ava = dataset.dataset if isinstance(dataset, Subset) else dataset
        classes = sorted(ava.label_map)
        rank, world = (dist.rank, dist.world_size) if dist is not None else (0, 1)
        loader = DataLoader(dataset, batch_size=batch_size, sampler=ShardSampler(len(dataset), rank, world),
                            num_workers=workers, collate_fn=collate_ava)
        was_training = model.training
        model.eval()
        records, keys = [], []
        with torch.no_grad():
            for batch, target in loader:
                with autocast(amp, device):
                    logits = model(to_device(batch, device))
                scores = logits.float().sigmoid().cpu()
                owner = [(i, k) for i, k, n in zip(target["index"], target["keys"], target["counts"])
                         for _ in range(n)]
                for (i, key), box, s in zip(owner, target["norm_boxes"].tolist(), scores.tolist()):
                    records += [(i, key, box, c, s[c - 1]) for c in classes]
                keys += target["keys"]
        model.train(was_training)
        # all ranks' detections in dataset order, as one process makes them (ties sort alike)
        gathered = sorted((r for part in all_gather_objects(records) for r in part), key=lambda r: r[0])
        records = [r[1:] for r in gathered]
        keys = {k for part in all_gather_objects(keys) for k in part}
        gt = [(k, box, a) for (v, s, box, a, _) in ava.ground_truth.rows() for k in [(v, s)]
              if not isinstance(dataset, Subset) or k in keys]
        mean_ap, per_class = frame_ap(gt, records, classes=classes, excluded=getattr(ava, "excluded", set()))
        result = {"frame_mAP": mean_ap, "num_samples": len(keys),
                  "classes_with_truth": sum(1 for v in per_class.values() if v == v)}
        result.update({f"AP_{c}": 100.0 * v for c, v in per_class.items() if v == v})
        return result

    def run_evaluate(self, args: Any, trained: Any, dist: Any) -> None:
        """``vitkit evaluate RUN``: frame mAP on the recipe's test split, written to eval.json."""
        from .detection import run_dense_evaluate

        run_dense_evaluate(self, args, trained, dist)

    def describe(self, result: dict) -> str:
        return (f"frame mAP {result['frame_mAP']:.1f} (IoU 0.5, {result.get('classes_with_truth', 0)} classes "
                f"with ground truth, {result['num_samples']} keyframes)")


register_task(ActionDetection())
