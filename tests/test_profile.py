"""The profiler's per-stage table: stages add up to the totals and every MAC lands in a named stage, for every
registered model (counted on the meta device; one small variant per family and rank by default, all with -m slow)."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import vitkit
from vitkit.analysis.profile import OTHER, stage_modules
from vitkit.registry import create_model, model_info


def _smallest_per_group() -> list[str]:
    """The registered variant with the fewest paper MACs for each (family, image/video) pair."""
    best: dict[tuple[str, bool], str] = {}
    for name in vitkit.list_models():
        info = model_info(name)
        key = (info.family, info.is_video)
        cost = info.paper_macs or 0.0
        if key not in best or cost < (model_info(best[key]).paper_macs or 0.0):
            best[key] = name
    return sorted(best.values())


SMALL = _smallest_per_group()
CASES = [pytest.param(n, id=n, marks=[] if n in SMALL else [pytest.mark.slow]) for n in vitkit.list_models()]


def _has_matmul(module: nn.Module) -> bool:
    return any(isinstance(m, (nn.Linear, nn.Conv2d, nn.Conv3d)) for m in module.modules())


@pytest.mark.parametrize("name", CASES)
def test_stages_add_up_to_the_totals(name):
    info = model_info(name)
    size = info.test_input_size or ((3, 4, 64, 64) if info.is_video else (3, 64, 64))
    r = vitkit.profile(name, input_size=size)
    assert r.macs > 0
    assert sum(m for _, m in r.stages.values()) == r.macs, r.table()
    assert sum(p for p, _ in r.stages.values()) == r.params, r.table()
    # every MAC is counted inside a named stage; the rest row holds only parameters outside every stage
    assert r.stages.get(OTHER, (0, 0))[1] == 0, r.table()
    with torch.device("meta"):
        model = create_model(name)
    for stage, module in stage_modules(model):
        if _has_matmul(module):
            assert r.stages[stage][1] > 0, f"{name}: stage {stage} shows 0 MACs\n{r.table()}"


def test_swin_stages_carry_the_cost_and_batch_is_divided_out():
    """Swin runs its stages' blocks through its own method: the stages must still show their MACs."""
    r = vitkit.profile("swin_tiny_patch4_window7_224")
    per_stage = [r.stages[f"layers.{i}"][1] for i in range(4)]
    assert all(m > 0.5e9 for m in per_stage), r.table()  # Swin-T: about 1.1 to 1.3 GMACs in every stage
    r2 = vitkit.profile("swin_tiny_patch4_window7_224", batch_size=3)
    assert r2.stages == r.stages and r2.macs == r.macs


def test_unlisted_work_goes_to_the_other_row():
    """A model without ``profile_stages``: its children are the stages; a bare parameter lands in ``other``."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = nn.Linear(8, 16)
            self.fc2 = nn.Linear(16, 4)
            self.scale = nn.Parameter(torch.ones(4))

        def forward(self, x):
            return self.fc2(self.fc1(x)) * self.scale

    r = vitkit.profile(Net(), input_size=(8,))
    assert r.stages == {"fc1": (8 * 16 + 16, 8 * 16), "fc2": (16 * 4 + 4, 16 * 4), OTHER: (4, 0)}
    assert r.macs == 8 * 16 + 16 * 4 and r.params == 8 * 16 + 16 + 16 * 4 + 4 + 4
