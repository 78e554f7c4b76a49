"""The task interface: recipes name their task (classification by default), task options are typed and checked,
and the poly schedule of the dense recipes."""
import pytest

from vitkit.engine.recipe import RecipeError, load_recipe, recipe_from_dict
from vitkit.engine.schedule import WarmupPoly, WarmupStep, build_schedule
from vitkit.tasks import get_task, list_tasks


def test_default_task_is_classification_and_recipes_round_trip():
    r = recipe_from_dict({})
    assert r.task.name == "classification" and get_task(r.task.name).headline == "top1"
    assert "task" not in r.to_dict()  # classification recipes read and write as before
    assert "classification" in list_tasks()


def test_step_schedule_follows_mmcv_with_linear_warmup():
    """mmdet's 1x: lr x 0.1 at epochs 8 and 11 of 12, 500 linear warm-up steps from ratio 0.001."""
    r = load_recipe(None, ["schedule.name=step", "schedule.epochs=12", "schedule.milestones=[8,11]",
                           "schedule.warmup_iters=500", "schedule.warmup_lr=1e-7", "optim.lr=1e-4"])
    s = build_schedule(r.schedule, 1e-4, steps_per_epoch=100)
    assert isinstance(s, WarmupStep) and s.milestones == (800, 1100) and s.total_steps == 1200
    assert s(0) == pytest.approx(1e-7) and s(250) == pytest.approx(1e-4 * (1 - 0.5 * (1 - 1e-3)))
    assert s(500) == s(799) == pytest.approx(1e-4)
    assert s(800) == s(1099) == pytest.approx(1e-5) and s(1100) == pytest.approx(1e-6)
    it = load_recipe(None, ["schedule.name=step", "schedule.iters=90", "schedule.milestones=[60,80]"])
    assert build_schedule(it.schedule, 1.0, steps_per_epoch=7).milestones == (60, 80)   # iterations
    with pytest.raises(RecipeError, match="schedule.milestones"):
        load_recipe(None, ["schedule.name=step", "schedule.epochs=12", "schedule.milestones=[8,13]"])
    with pytest.raises(RecipeError, match="schedule.milestones"):
        load_recipe(None, ["schedule.name=step"])


def test_unknown_task_and_unknown_option_fail_naming_the_valid_ones():
    with pytest.raises(RecipeError, match="known tasks"):
        recipe_from_dict({"task": {"name": "nope"}})
    with pytest.raises(RecipeError, match="valid: name"):
        recipe_from_dict({"task": {"name": "classification", "head": "upernet"}})


def test_poly_schedule_follows_mmcv_with_linear_warmup():
    s = WarmupPoly(lr=6e-5, total_steps=100, warmup_steps=10, warmup_lr=6e-11, min_lr=0.0, power=1.0)
    assert s(0) == pytest.approx(6e-5 * 1e-6)
    assert s(5) == pytest.approx(6e-5 * 0.95 * (1 - 0.5 * (1 - 1e-6)))
    assert s(10) == pytest.approx(6e-5 * 0.9)
    assert s(100) == 0.0
    r = load_recipe(None, ["schedule.name=poly", "schedule.iters=50", "schedule.warmup_iters=5", "optim.lr=1e-3"])
    sched = build_schedule(r.schedule, 1e-3, steps_per_epoch=7)
    assert isinstance(sched, WarmupPoly) and sched.total_steps == 50 and sched.warmup_steps == 5
    with pytest.raises(RecipeError, match="schedule.name"):
        load_recipe(None, ["schedule.name=linear"])
    with pytest.raises(RecipeError, match="warmup_iters"):
        load_recipe(None, ["schedule.iters=5", "schedule.warmup_iters=6"])
