"""Top-down pose estimation through the one engine (``task: {name: pose}``).

Data: a COCO keypoint file and its images per split (``task.train_annotations`` / ``train_images``,
``task.test_annotations`` / ``test_images``; ``task.person_boxes``: a detection result file for the papers'
test protocol, ground-truth boxes otherwise), or the built-in ``digit-scenes`` (``data.dataset: digit-scenes``:
5 keypoints per digit). Model: :class:`vitkit.tasks.pose_model.TopDownPose` on ``model.name``'s last map. Left /
right joints are paired from the keypoint names for the flip augmentation and the flip test. Metric: OKS keypoint
AP by pycocotools (COCO's 17 sigmas for a 17-joint COCO skeleton, ``task.oks_sigma`` for every joint of another
skeleton), gathered over ranks.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from . import register_task
from .detection import CocoTask, coco_files, predict_device, predict_images


@dataclasses.dataclass(frozen=True)
class PoseOptions:
    image_size: list = dataclasses.field(default_factory=lambda: [192, 256])  # crop width, height
    sigma: float = 2.0                 # Gaussian target sigma, heatmap pixels
    rotation: float = 40.0             # training rotation sigma, degrees (mmpose rot_factor); 0: none
    flip_test: bool = True
    oks_sigma: float = 0.05            # per-joint OKS sigma for skeletons other than COCO's 17 joints
    person_boxes: str = ""             # COCO result file of person boxes for testing (default: ground truth)
    train_annotations: str = ""
    train_images: str = ""
    test_annotations: str = ""
    test_images: str = ""


class PoseSet(torch.utils.data.Dataset):
    """A :class:`vitkit.data.coco_keypoints.CocoKeypoints` with the engine's conventions."""

    def __init__(self, kp) -> None:
        self.kp = kp
        self.classes = kp.keypoint_names
        self.num_classes = kp.num_joints

    def __len__(self) -> int:
        return len(self.kp)

    def __getitem__(self, i: int):
        return self.kp[i]


class Pose(CocoTask):
    name = "pose"
    options = PoseOptions
    headline = "keypoint_AP"
    kind = "keypoints"

    def build_datasets(self, recipe: Any, spec: Any) -> tuple[Any, Any]:
        from vitkit.data.coco_keypoints import CocoKeypoints, flip_pairs_from_names

        o = self.opts(recipe)
        size = tuple(o.image_size)
        train = CocoKeypoints(*coco_files(recipe, o, "train", "keypoints"), train=True, image_size=size,
                              sigma=o.sigma, rotation=o.rotation)
        pairs = flip_pairs_from_names(train.keypoint_names)
        train.flip_pairs = pairs
        test = CocoKeypoints(*coco_files(recipe, o, "test", "keypoints"), train=False, image_size=size,
                             sigma=o.sigma, flip_pairs=pairs, person_boxes=o.person_boxes or None)
        return PoseSet(train), PoseSet(test)

    def build_model(self, recipe: Any, num_classes: int, log: Callable[[str], None] = print) -> nn.Module:
        from .pose_model import TopDownPose

        o = self.opts(recipe)
        model = TopDownPose(recipe.model.name, num_classes, weights=recipe.model.weights, strict=False,
                            **recipe.model.config)
        model.flip_test, model.oks_sigma = o.flip_test, o.oks_sigma  # the test protocol travels with the model
        return model

    def loss(self, output: Any, target: Any, soft_target: Any = None, label_smoothing: float = 0.0) -> torch.Tensor:
        from .pose_model import joints_mse_loss

        return joints_mse_loss(output.float(), target["heatmaps"], target["weights"])

    def batch_stats(self, output: Any, target: Any) -> tuple[int, int]:
        return 0, int(target["weights"].shape[0])

    def evaluate(self, model: nn.Module, dataset: Any, *, batch_size: int = 32, workers: int = 0,
                 device: torch.device = torch.device("cpu"), amp: str = "none", dist: Any = None,
                 progress: bool = False, records: list | None = None, **_) -> dict[str, float]:
        """OKS keypoint AP of ``model`` on ``dataset``; ``records``, when a list, receives the gathered COCO
        result records (every rank gets all of them)."""
        from vitkit.data.coco_keypoints import flip_pairs_from_names
        from vitkit.engine.amp import autocast
        from vitkit.engine.evaluate import ShardSampler

        from .coco_eval import coco_ap, gather_records, keypoint_records

        kp = dataset.kp
        inner = getattr(model, "module", model)
        inner.flip_pairs = flip_pairs_from_names(kp.keypoint_names)
        rank, world = (dist.rank, dist.world_size) if dist is not None else (0, 1)
        sampler = ShardSampler(len(dataset), rank, world)
        loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers)
        flip_test = getattr(inner, "flip_test", True)
        was_training = model.training
        model.eval()
        order = iter(sampler)  # the dataset index of each crop: people of one image may sit on different ranks
        groups: dict[int, list[dict]] = {}
        with torch.no_grad():
            for crops, t in loader:
                with autocast(amp, device):
                    heat = inner.predict(crops.to(device), flip_test=flip_test)
                recs = keypoint_records(heat.float().cpu(), t["to_image"], t["image_id"], t["score"],
                                        inner.heatmap_stride, kp.category_id)
                groups.update((next(order), [r]) for r in recs)
        model.train(was_training)
        recs, _ = gather_records(groups)
        if records is not None:
            records.extend(recs)
        ids = {r["image_id"] for r in recs}
        sigmas = None if kp.num_joints == 17 else [getattr(inner, "oks_sigma", 0.05)] * kp.num_joints
        result = {f"keypoint_{k}": v for k, v in coco_ap(kp.coco, recs, "keypoints", ids, sigmas).items()}
        result["num_samples"] = len(recs)
        return result

    def run_evaluate(self, args: Any, trained: Any, dist: Any) -> None:
        """``vitkit evaluate RUN``: OKS keypoint AP on the recipe's test split, written to eval.json."""
        from .detection import run_dense_evaluate

        run_dense_evaluate(self, args, trained, dist)

    def run_predict(self, args: Any, trained: Any) -> int:
        """``vitkit predict RUN IMAGES``: keypoints of the person boxes of ``--boxes`` (COCO result records, such as
        a detection run's ``predictions.json``, matched by ``file_name`` or else ``image_id``; those scoring at least
        ``--score``), or of the whole image as one box; written as ``predictions.json`` (COCO keypoint result
        records) and ``<stem>_overlay.png`` (boxes, and the joints scoring above 0.2) in ``--out``."""
        import numpy as np
        from PIL import Image

        from vitkit.data.coco_keypoints import flip_pairs_from_names, person_crop

        from .coco_eval import keypoint_records

        o = self.opts(trained.recipe)
        device = predict_device(args)
        model = trained.model.to(device).eval()
        names = list(trained.classes or [str(i) for i in range(model.num_joints)])
        model.flip_pairs = flip_pairs_from_names(names)
        cats = [c for c in self.categories(trained.recipe) or [] if "keypoints" in c]
        category_id = int(cats[0]["id"]) if cats else 1
        given = _read_boxes(args.boxes) if getattr(args, "boxes", None) else None
        size = tuple(o.image_size)

        def one(image_id: int, image: torch.Tensor, overlay) -> tuple[list[dict], str]:
            h, w = image.shape[-2:]
            if given is None:
                boxes, scores = [[0.0, 0.0, float(w), float(h)]], [1.0]
            else:
                mine = [b for b in given if _same_image(b, args.files[image_id - 1], image_id)
                        and float(b.get("score", 1.0)) >= args.score]
                boxes, scores = [b["bbox"] for b in mine], [float(b.get("score", 1.0)) for b in mine]
            if not boxes:
                save_pose_overlay(overlay, image, [], [])
                return [], "no person boxes"
            pil = Image.fromarray(image.permute(1, 2, 0).numpy())
            crops, mats = zip(*(person_crop(pil, b, size) for b in boxes))
            heat = model.predict(torch.stack(crops).to(device), flip_test=o.flip_test).float().cpu()
            recs = keypoint_records(heat, torch.from_numpy(np.stack(mats)).float(), torch.full((len(boxes),), image_id),
                                    torch.tensor(scores), model.heatmap_stride, category_id)
            save_pose_overlay(overlay, image, boxes, [r["keypoints"] for r in recs])
            return recs, f"{len(recs)} person box(es), {model.num_joints} keypoints each"

        return predict_images(args, one)

    def describe(self, result: dict) -> str:
        return (f"keypoint AP {result['keypoint_AP']:.1f} (AP50 {result['keypoint_AP50']:.1f}, "
                f"AP75 {result['keypoint_AP75']:.1f})")


def _read_boxes(path: str) -> list[dict]:
    """Person boxes: a JSON list of COCO result records with ``bbox`` (x, y, w, h)."""
    import json

    with open(path) as f:
        boxes = json.load(f)
    if not isinstance(boxes, list) or any("bbox" not in b for b in boxes):
        raise ValueError(f"{path}: expected a JSON list of COCO result records with 'bbox' (x, y, w, h)")
    return boxes


def _same_image(record: dict, path: str, image_id: int) -> bool:
    from pathlib import Path

    if "file_name" in record:
        return Path(record["file_name"]).resolve() == Path(path).resolve()
    return int(record.get("image_id", -1)) == image_id


def save_pose_overlay(path, image: torch.Tensor, boxes: list, keypoints: list, threshold: float = 0.2) -> None:
    """``image`` (3, H, W) uint8 with the x, y, w, h ``boxes`` and the flat x, y, score ``keypoints`` of each
    person (joints scoring above ``threshold``) drawn."""
    from PIL import Image
    from torchvision.utils import draw_bounding_boxes, draw_keypoints

    img = image.cpu()
    if boxes:
        xywh = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        img = draw_bounding_boxes(img, torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1), colors="yellow")
        kp = torch.tensor(keypoints, dtype=torch.float32).reshape(len(keypoints), -1, 3)
        img = draw_keypoints(img, kp[..., :2], colors="red", radius=1, visibility=kp[..., 2] > threshold)
    Image.fromarray(img.permute(1, 2, 0).numpy()).save(path)


register_task(Pose())
