"""Object detection and instance segmentation through the one engine (``task: {name: detection}``).

Data: a COCO-format annotation file and its image folder per split (``task.train_annotations`` /
``train_images``, ``task.test_annotations`` / ``test_images``), or the built-in ``digit-scenes``
(``data.dataset: digit-scenes``, written once as COCO files under the run's cache). The model is
:func:`vitkit.tasks.detection_model.build_detector` on ``model.name``'s backbone view (``model.weights``
initialises the backbone from a classification checkpoint; ``model.*`` config keys go to the backbone).

A batch is ``({"images": [...], "targets": [...]}, targets)``: torchvision's detectors take images of mixed
sizes as a list and compute their losses inside ``forward`` in training, so the model's input carries the targets;
``loss`` sums the loss dict (RPN objectness and box, RoI class, box and mask, as mmdet sums them). Evaluation is
COCO box AP (and mask AP for Mask R-CNN) by pycocotools, gathered over ranks (:mod:`vitkit.tasks.coco_eval`).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from . import register_task
from .base import Task


@dataclasses.dataclass(frozen=True)
class DetectionOptions:
    masks: bool = True                  # Mask R-CNN (True) or Faster R-CNN (False)
    min_size: list = dataclasses.field(default_factory=lambda: [800])  # training short sides (one drawn a batch)
    test_size: int = 800                # test short side
    max_size: int = 1333                # long-side cap
    fpn_norm: str = "none"              # none | gn (GroupNorm in the FPN)
    box_head_dim: int = 1024            # width of the box head's two FC layers
    fpn_channels: int = 256             # FPN width
    rois_per_image: int = 512           # RoIs sampled per image for the box / mask heads in training
    mask_head_dim: int = 256            # width of the mask head's four convolutions
    flip: float = 0.5                   # horizontal flip probability in training
    large_scale_jitter: int = 0         # > 0: ViTDet's LSJ to this square size
    train_annotations: str = ""         # COCO JSON (instances_train2017.json)
    train_images: str = ""
    test_annotations: str = ""
    test_images: str = ""


class DetectionModel(nn.Module):
    """A torchvision detector taking ``{"images", "targets"}``; keeps the optimiser hooks of its backbone."""

    def __init__(self, detector: nn.Module, test_size: int) -> None:
        super().__init__()
        self.detector = detector
        self.train_sizes = detector.transform.min_size
        self.test_size = test_size

    def forward(self, batch: dict[str, Any]):
        images = batch["images"]
        if self.training:
            return self.detector(images, batch["targets"])
        self.detector.transform.min_size = (self.test_size,)
        try:
            return self.detector(images)
        finally:
            self.detector.transform.min_size = self.train_sizes

    def no_weight_decay(self) -> set[str]:
        body = self.detector.backbone.body
        skip = body.no_weight_decay() if hasattr(body, "no_weight_decay") else set()
        return {f"detector.backbone.body.{n}" for n in skip}

    def num_layer_ids(self) -> int:
        return self.detector.backbone.body.num_layer_ids()

    def layer_id(self, name: str) -> int:
        prefix = "detector.backbone.body."
        if name.startswith(prefix):
            return self.detector.backbone.body.layer_id(name[len(prefix):])
        return self.num_layer_ids() - 1  # FPN and heads train at the full rate, as the official LLRD recipes

    def set_grad_checkpointing(self, enable: bool = True, stages=None) -> None:
        self.detector.backbone.body.set_grad_checkpointing(enable, stages)


def collate(batch):
    images, targets = zip(*batch)
    return {"images": list(images), "targets": list(targets)}, list(targets)


class DetectionSet(torch.utils.data.Dataset):
    """A :class:`vitkit.data.coco.CocoDetection` with the engine's conventions (``classes``, ``collate_fn``)."""

    collate_fn = staticmethod(collate)

    def __init__(self, coco) -> None:
        self.coco_set = coco
        self.classes = coco.class_names
        self.num_classes = coco.num_classes

    def __len__(self) -> int:
        return len(self.coco_set)

    def __getitem__(self, i: int):
        return self.coco_set[i]

    def bad_samples(self) -> dict[str, str]:
        return dict(self.coco_set.unreadable)


def coco_files(recipe: Any, opts: Any, split: str, kind: str = "instances") -> tuple[str, str]:
    """The annotation file and image folder of ``split`` ('train' or 'test'): ``task.<split>_annotations`` /
    ``task.<split>_images``, or the built-in digit-scenes written as COCO ``kind`` files (instances, keypoints)."""
    if recipe.data.dataset == "digit-scenes":
        from vitkit.data.digit_scenes_coco import export_coco

        return export_coco(split, kind)
    ann, images = getattr(opts, f"{split}_annotations"), getattr(opts, f"{split}_images")
    if not ann or not images:
        from vitkit.engine.recipe import RecipeError

        raise RecipeError(f"{recipe.task.name} needs task.{split}_annotations and task.{split}_images (a COCO "
                          f"{kind} JSON and its image folder), or data.dataset: digit-scenes")
    return ann, images


class CocoTask(Task):
    """What the COCO-format tasks share: no mixup / cutmix / label smoothing, no running accuracy, crop-sized data,
    and ``vitkit predict`` writing COCO result records."""

    input_follows_model = False  # data.input_size is the crop; the backbone runs at any size
    train_metric = None
    kind = "instances"  # the COCO annotation kind the task reads (instances, keypoints)

    def validate(self, recipe: Any) -> None:
        from vitkit.engine.recipe import RecipeError

        r = recipe.train
        if r.mixup > 0 or r.cutmix > 0 or r.label_smoothing:
            raise RecipeError(f"{self.name} does not take train.mixup, train.cutmix or train.label_smoothing")

    def categories(self, recipe: Any) -> list[dict] | None:
        """The categories of the recipe's test annotation file (None when the file is not at hand)."""
        from vitkit.data.coco import read_categories
        from vitkit.engine.recipe import RecipeError

        try:
            return read_categories(coco_files(recipe, self.opts(recipe), "test", self.kind)[0])
        except (OSError, ValueError, RecipeError):
            return None


def predict_images(args: Any, predict_one: Callable[[int, torch.Tensor, Any], tuple[list[dict], str]]) -> int:
    """The COCO tasks' ``vitkit predict``: each of ``args.files`` (image id = its position, from 1) read and given to
    ``predict_one(image_id, image, overlay_path)``, which writes the overlay and returns the image's COCO result
    records and a one-line summary; all records (with ``file_name`` added) go to ``OUT/predictions.json``. An
    unreadable file is reported and skipped; returns 1 if any was."""
    import json
    from pathlib import Path

    from vitkit.data.datasets import load_image, readable_files

    out = Path(args.out or ".")
    out.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    failed: list[str] = []
    for i, f, image in readable_files(args.files, load_image, failed):
        recs, line = predict_one(i + 1, image, out / f"{Path(f).stem}_overlay.png")
        records += [dict(r, file_name=str(f)) for r in recs]
        print(f"{f}: {line}")
    (out / "predictions.json").write_text(json.dumps(records) + "\n")
    print(f"wrote {out / 'predictions.json'} ({len(records)} COCO result records) and overlay PNGs in {out}")
    return 1 if failed else 0


def predict_device(args: Any) -> torch.device:
    return torch.device(getattr(args, "device", None) or ("cuda" if torch.cuda.is_available() else "cpu"))


class Detection(CocoTask):
    name = "detection"
    options = DetectionOptions
    headline = "box_AP"
    fixed_input_shapes = False  # a short side drawn per batch and any aspect ratio: one shape per batch

    def build_datasets(self, recipe: Any, spec: Any) -> tuple[Any, Any]:
        from vitkit.data.coco import CocoDetection

        o = self.opts(recipe)
        train = CocoDetection(*coco_files(recipe, o, "train"), train=True, masks=o.masks, flip=o.flip,
                              large_scale_jitter=o.large_scale_jitter or None)
        test = CocoDetection(*coco_files(recipe, o, "test"), train=False, masks=o.masks)
        return DetectionSet(train), DetectionSet(test)

    def build_model(self, recipe: Any, num_classes: int, log: Callable[[str], None] = print) -> nn.Module:
        from .detection_model import build_detector

        o = self.opts(recipe)
        det = build_detector(recipe.model.name, num_classes, masks=o.masks, min_size=tuple(o.min_size),
                             max_size=o.max_size, fpn_norm=o.fpn_norm, box_head_dim=o.box_head_dim,
                             fpn_channels=o.fpn_channels, rois_per_image=o.rois_per_image,
                             mask_head_dim=o.mask_head_dim,
                             weights=recipe.model.weights, strict=False, **recipe.model.config)
        if recipe.model.weights:
            log(f"backbone initialised from {recipe.model.weights}")
        return DetectionModel(det, o.test_size)

    def loss(self, output: Any, target: Any, soft_target: Any = None, label_smoothing: float = 0.0) -> torch.Tensor:
        return sum(output.values())

    def batch_stats(self, output: Any, target: Any) -> tuple[int, int]:
        return 0, len(target)  # no running accuracy; the count gives samples/s

    def evaluate(self, model: nn.Module, dataset: Any, *, batch_size: int = 8, workers: int = 0,
                 device: torch.device = torch.device("cpu"), amp: str = "none", dist: Any = None,
                 progress: bool = False, records: list | None = None, **_) -> dict[str, float]:
        """Box (and mask) AP of ``model`` on ``dataset``; ``records``, when a list, receives the gathered COCO
        result records (every rank gets all of them)."""
        from vitkit.engine.amp import autocast
        from vitkit.engine.evaluate import ShardSampler

        from .coco_eval import coco_ap, detection_records, gather_records

        coco = dataset.coco_set
        rank, world = (dist.rank, dist.world_size) if dist is not None else (0, 1)
        loader = DataLoader(dataset, batch_size=batch_size, sampler=ShardSampler(len(dataset), rank, world),
                            num_workers=workers, collate_fn=collate)
        was_training = model.training
        model.eval()
        groups: dict[int, list[dict]] = {}  # image id -> its records
        with torch.no_grad():
            for batch, targets in loader:
                images = [im.to(device) for im in batch["images"]]
                with autocast(amp, device):
                    outputs = model({"images": images})
                for out, t in zip(outputs, targets):
                    groups[int(t["image_id"])] = detection_records(t["image_id"], out, coco.cat_ids,
                                                                   masks=coco.masks)
        model.train(was_training)
        recs, ids = gather_records(groups)
        if records is not None:
            records.extend(recs)
        result = {f"box_{k}": v for k, v in coco_ap(coco.coco, recs, "bbox", ids).items()}
        if coco.masks:
            result.update({f"mask_{k}": v for k, v in coco_ap(coco.coco, recs, "segm", ids).items()})
        result["num_samples"] = len(ids)
        return result

    def run_evaluate(self, args: Any, trained: Any, dist: Any) -> None:
        """``vitkit evaluate RUN``: COCO AP on the recipe's test split, eval.json and overlay PNGs."""
        run_dense_evaluate(self, args, trained, dist, overlay=save_detection_overlay)

    def run_predict(self, args: Any, trained: Any) -> int:
        """``vitkit predict RUN IMAGES``: ``predictions.json`` (COCO result records: boxes x, y, w, h, scores,
        category ids, masks as RLE for Mask R-CNN; every detection above the model's 0.05) and
        ``<stem>_overlay.png`` with the detections above ``--score``, in ``--out``."""
        from vitkit.data.coco import contiguous_categories

        from .coco_eval import detection_records

        device = predict_device(args)
        model = trained.model.to(device).eval()
        n = model.detector.num_object_classes
        names = list(trained.classes or [str(i) for i in range(1, n + 1)])
        cats = self.categories(trained.recipe)
        cat_ids = contiguous_categories(cats)[0] if cats and len(cats) == n else list(range(1, n + 1))
        masks = self.opts(trained.recipe).masks

        def one(image_id: int, image: torch.Tensor, overlay) -> tuple[list[dict], str]:
            with torch.no_grad():
                out = model({"images": [image.float().div(255).to(device)]})[0]
            out = {k: v.cpu() for k, v in out.items()}
            save_detection_overlay(overlay, image.float() / 255, out, names, args.score)
            keep = out["scores"] >= args.score
            found = [f"{names[int(c) - 1]} {float(s):.2f}" for c, s in zip(out["labels"][keep], out["scores"][keep])]
            line = f"{len(found)} detection(s) with score >= {args.score}"
            if found:
                line += ": " + ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
            return detection_records(image_id, out, cat_ids, masks=masks), line

        return predict_images(args, one)

    def describe(self, result: dict) -> str:
        def ap(key: str) -> str:  # COCOeval gives -1 for an area range without objects
            return f"{result[key]:.1f}" if result[key] >= 0 else "-"

        line = (f"box AP {ap('box_AP')} (AP50 {ap('box_AP50')}, AP75 {ap('box_AP75')}, "
                f"S/M/L {ap('box_APs')}/{ap('box_APm')}/{ap('box_APl')})")
        if "mask_AP" in result:
            line += f"; mask AP {ap('mask_AP')} (AP50 {ap('mask_AP50')})"
        return line


def save_detection_overlay(path, image: torch.Tensor, output: dict, class_names: list[str],
                           score: float = 0.5) -> None:
    """``image`` (3, H, W) in [0, 1] with the detections above ``score``: masks tinted, boxes and labels drawn."""
    from PIL import Image
    from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

    keep = output["scores"] >= score
    img = (image.clamp(0, 1) * 255).to(torch.uint8).cpu()
    if "masks" in output and keep.any():
        img = draw_segmentation_masks(img, output["masks"][keep, 0].cpu() > 0.5, alpha=0.4)
    labels = [f"{class_names[int(c) - 1]} {float(s):.2f}" for c, s in zip(output["labels"][keep],
                                                                        output["scores"][keep])]
    img = draw_bounding_boxes(img, output["boxes"][keep].cpu(), labels=labels, colors="yellow")
    Image.fromarray(img.permute(1, 2, 0).numpy()).save(path)


def run_dense_evaluate(task: Task, args: Any, trained: Any, dist: Any, overlay=None, overlays: int = 8) -> None:
    """``vitkit evaluate`` for the COCO tasks: the metric on the recipe's test split (``--limit`` images), printed
    and written to ``eval.json`` beside the run (or ``--out``), with ``overlays`` PNGs of the first images."""
    import json
    from pathlib import Path

    from torch.utils.data import Subset

    r = trained.recipe
    _, test = task.build_datasets(r, {})
    ds = Subset(test, range(min(args.limit, len(test)))) if getattr(args, "limit", None) else test
    if isinstance(ds, Subset):
        for attr in ("coco_set", "kp", "classes", "num_classes"):
            if hasattr(test, attr):
                setattr(ds, attr, getattr(test, attr))
    src = Path(args.source)
    out = Path(args.out) if getattr(args, "out", None) else (src if src.is_dir() else src.parent) / "eval"
    model = trained.model.to(dist.device)
    res = task.evaluate(model, ds, batch_size=r.eval.batch_size, workers=getattr(args, "workers", 0),
                        device=dist.device, dist=dist, progress=dist.is_main)
    if not dist.is_main:
        return
    out.mkdir(parents=True, exist_ok=True)
    print(f"{r.model.name} ({task.name}) on {r.data.dataset}: {res['num_samples']} images")
    print(task.describe(res))
    (out / "eval.json").write_text(json.dumps(dict(res, model=r.model.name, weights=str(trained.weights)),
                                              indent=2) + "\n")
    written = 0
    if overlay is not None:
        model.eval()
        names = list(test.classes)
        with torch.no_grad():
            for i in range(min(overlays, len(ds))):
                image, _ = ds[i]
                overlay(out / f"overlay_{i:04d}.png", image, model({"images": [image.to(dist.device)]})[0], names)
                written += 1
    print(f"wrote {out / 'eval.json'}" + (f" and {written} overlay PNG(s) in {out}" if written else ""))


register_task(Detection())
