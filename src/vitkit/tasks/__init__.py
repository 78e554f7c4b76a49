"""Tasks: what the one engine trains. A recipe names its task (``task: {name: segmentation, ...}``; classification
when absent); the trainer, checkpoints, resume, DDP, mixed precision, logging and plots are shared, and the task
brings the parts that differ.

The interface (:class:`vitkit.tasks.base.Task`), as the engine calls it:

``bind(recipe) -> Task``
    The task for one run (the trainer calls it once; a task whose loss reads recipe options returns a copy).
``options``
    A dataclass type: the task's own recipe keys (the ``task:`` section besides ``name``), validated and typed as
    the other sections are. ``validate(recipe)`` checks keys across sections (e.g. segmentation rejects mixup).
``build_datasets(recipe, spec) -> (train_set, test_set)``
    The dataset reader: datasets of ``(input, target)`` items; ``spec`` is the run's
    :class:`~vitkit.models.input_spec.InputSpec` (:func:`vitkit.engine.data.resolve_input`). ``class_names(train_set)`` lists the outputs' names.
``build_model(recipe, num_classes, log) -> nn.Module``
    The model builder (classifier, or backbone + head), with ``model.weights`` loaded as the task defines.
    The module must provide ``layer_id``/``num_layer_ids``/``no_weight_decay`` for the optimiser hooks.
``loss(output, target, soft_target=None) -> Tensor`` and ``batch_stats(output, target) -> (correct, seen)``
    The training loss of one micro-batch (``output`` is what the model returns in train mode) and the counts of
    the running training accuracy (``train_metric`` names it in the metrics log).
``mixup(recipe, num_classes)``
    A batch transform ``(x, y) -> (x, soft_target)`` or None.
``evaluate(model, dataset, **kw) -> dict``
    The metric: a flat dict of floats (``headline`` is its main key: ``top1``, ``mIoU``), exact under DDP;
    ``describe(result)`` is its one-line summary for the log (``top-1 81.30% top-5 95.51%``, ``mIoU 44.51% ...``).
``run_evaluate(args, trained, dist)`` / ``run_predict(args, trained)``
    The task's side of ``vitkit evaluate`` and ``vitkit predict`` (reports, plots, files written); ``trained``
    comes from ``load_trained(source, recipe, overrides, ema)`` (a run directory or a weights file).
    :func:`task_of_run` tells the commands which task a run (or a given recipe) belongs to.

Register a task with :func:`register_task`; :func:`get_task` returns the instance for a name. The detection and
pose tasks plug in the same way.
"""
from __future__ import annotations

from .base import Task

_TASKS: dict[str, Task] = {}
DEFAULT_TASK = "classification"


def register_task(task: Task) -> Task:
    if not task.name or task.name in _TASKS:
        raise ValueError(f"task name {task.name!r} is empty or already registered")
    _TASKS[task.name] = task
    return task


def _ensure_loaded() -> None:
    from . import action_detection, classification, detection, pose, segmentation  # noqa: F401  (register on import)


def get_task(name: str | None) -> Task:
    """The task registered as ``name`` (None: classification); unknown names raise listing the known ones."""
    _ensure_loaded()
    name = name or DEFAULT_TASK
    if name not in _TASKS:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(sorted(_TASKS))}")
    return _TASKS[name]


def task_of_run(source: str, recipe: str | None = None, overrides: list[str] | None = None) -> Task:
    """The task of a run directory's recipe (or of ``recipe``); classification for a bare weights file."""
    from pathlib import Path

    from vitkit.engine.recipe import find_recipe, load_recipe

    if recipe:
        path = find_recipe(recipe)
    else:  # the run directory's recipe, also for a checkpoint or weights file inside the run
        src = Path(source)
        path = next((c / "recipe.yaml" for c in (src, *src.parents) if (c / "recipe.yaml").is_file()), None)
        if path is None:
            return get_task(None)
    return get_task(load_recipe(path, [o for o in overrides or [] if o.startswith("task.")]).task.name)


def list_tasks() -> list[str]:
    _ensure_loaded()
    return sorted(_TASKS)


__all__ = ["DEFAULT_TASK", "Task", "get_task", "list_tasks", "register_task", "task_of_run"]
