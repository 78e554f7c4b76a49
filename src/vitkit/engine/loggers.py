"""Optional metric outputs beside ``metrics.jsonl``: TensorBoard event files and Weights & Biases.

Every row the trainer writes to ``metrics.jsonl`` (kinds ``train``, ``eval``, ``epoch``) is also sent to these
sinks as scalars named ``<kind>/<key>`` at the row's optimiser ``step`` - the way timm and PySlowFast users
watch a run (``tensorboard --logdir runs/``).

- TensorBoard (``run.tensorboard``): ``null`` (default) writes ``RUN/tensorboard/`` when the ``tensorboard``
  package is installed; ``true`` requires it; ``false`` never. A resumed run discards events logged after the
  step it resumes from (``purge_step``), as it truncates ``metrics.jsonl``.
- Weights & Biases (``run.wandb``): ``null`` (default) logs when the ``wandb`` package is installed *and*
  configured (``WANDB_API_KEY`` or ``WANDB_MODE`` set), so an installed but unconfigured wandb never prompts
  mid-run; ``true`` requires the package; ``false`` never. The project is ``run.wandb_project``, the run name is
  the run directory's name, and the resolved recipe is the run's config.
"""
from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path
from typing import Any, Protocol

from .recipe import Recipe, RecipeError


class MetricSink(Protocol):
    def write(self, kind: str, step: int, values: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def _scalars(kind: str, values: dict[str, Any]):
    for key, v in values.items():
        if key == "step" or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if isinstance(v, float) and not math.isfinite(v):
            continue
        yield f"{kind}/{key}", float(v)


class TensorBoardSink:
    """Scalars into TensorBoard event files under ``log_dir``."""

    def __init__(self, log_dir: str | os.PathLike, purge_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def write(self, kind: str, step: int, values: dict[str, Any]) -> None:
        for tag, v in _scalars(kind, values):
            self.writer.add_scalar(tag, v, global_step=step)
        if kind != "train":  # evaluations are rare: show them at once
            self.writer.flush()

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


class WandbSink:
    """Scalars into a Weights & Biases run."""

    def __init__(self, project: str, name: str, directory: str | os.PathLike, config: dict,
                 resume: bool = False) -> None:
        import wandb

        self.wandb = wandb
        self.run = wandb.init(project=project, name=name, dir=str(directory), config=config,
                              id=name, resume="allow" if resume else None)

    def write(self, kind: str, step: int, values: dict[str, Any]) -> None:
        data = dict(_scalars(kind, values))
        if data:
            self.run.log(data, step=step)

    def close(self) -> None:
        self.run.finish()


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def build_sinks(recipe: Recipe, run_dir: Path, *, resume_step: int | None = None, log=print) -> list:
    """The sinks the recipe asks for (see the module docstring); ``resume_step`` when continuing a run."""
    sinks: list = []
    r = recipe.run
    if r.tensorboard is not False:
        if _installed("tensorboard"):
            sinks.append(TensorBoardSink(run_dir / "tensorboard", purge_step=resume_step))
        elif r.tensorboard:
            raise RecipeError("run.tensorboard=true but the tensorboard package is not installed "
                              "(pip install tensorboard), or set run.tensorboard=false")
    if r.wandb is not False:
        configured = bool(os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE"))
        if _installed("wandb") and (r.wandb or configured):
            sinks.append(WandbSink(r.wandb_project, run_dir.name, run_dir, recipe.to_dict(),
                                   resume=resume_step is not None))
        elif r.wandb:
            raise RecipeError("run.wandb=true but the wandb package is not installed (pip install wandb), "
                              "or set run.wandb=false")
    if sinks:
        log("also logging to " + ", ".join("TensorBoard (" + str(run_dir / "tensorboard") + ")"
                                           if isinstance(s, TensorBoardSink) else "Weights & Biases"
                                           for s in sinks))
    return sinks
