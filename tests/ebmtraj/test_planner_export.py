"""The TorchScript export plans what the Python planner plans, also without the Python package."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from ebmtraj.planner import Planner
from ebmtraj.planner.export import COND_ORDER, ExportedPlanner, export_planner

from .test_planner_api import cache, scene_inputs  # noqa: F401  (shared fixture)


@pytest.fixture(scope="module")
def exported(cache, tmp_path_factory):  # noqa: F811
    # the export is the search alone: compared with the learned plan, without the road guard
    planner = Planner.from_checkpoint(cache["path"], opt_steps=8, samples=2, warm_start=False,
                                      road_guard=False)
    path = export_planner(planner, tmp_path_factory.mktemp("export") / "planner.ts", chains=2,
                          neighbours=5)
    return planner, path


def test_exported_plan_equals_python_plan(cache, exported):  # noqa: F811
    planner, path = exported
    runner = ExportedPlanner(path, planner)
    assert (runner.chains, runner.neighbours) == (2, 5)
    for i in (1, 6, 9):
        ego, hist, nbrs, lanes = scene_inputs(cache, i)
        a = planner.plan(ego, hist, nbrs, lanes, seed=i)
        b = runner.plan(ego, hist, nbrs, lanes, seed=i)
        assert np.allclose(a.positions, b.positions, atol=1e-4), np.abs(a.positions - b.positions).max()
        assert np.allclose(a.speeds, b.speeds, atol=1e-4) and np.allclose(a.headings, b.headings, atol=1e-5)
        assert np.allclose(a.controls, b.controls, atol=2e-4)
        assert a.energy == pytest.approx(b.energy, rel=1e-5, abs=1e-4)
        assert a.cost == pytest.approx(b.cost, rel=1e-5, abs=1e-4)


def test_export_runs_without_the_python_package(cache, exported, tmp_path):  # noqa: F811
    """torch.jit.load alone (no ebmtraj import) reproduces the planner's result."""
    from ebmtraj.planner.inputs import LaneSet, build_rows

    planner, path = exported
    ego, hist, nbrs, lanes = scene_inputs(cache, 2)
    rows = build_rows([ego], [hist], [nbrs], LaneSet.from_any(lanes), planner.loaded.inputs,
                      history=10, steps=40, max_neighbours=5, radius=30.0, min_slots=5)
    cond = {k: v.repeat((2,) + (1,) * (v.dim() - 1)) for k, v in rows.cond.items()}
    z0 = torch.zeros(2, 40, 2)
    z0[1] = 0.1 * torch.randn(40, 2, generator=torch.Generator().manual_seed(0))
    extra = [torch.tensor(10.0), torch.full((2, 2), 0.5)]
    torch.save({"args": [cond[k] for k in COND_ORDER] + extra, "z0": z0}, tmp_path / "inputs.pt")
    code = ("import sys, torch\n"
            f"m = torch.jit.load({str(path)!r})\n"
            f"d = torch.load({str(tmp_path / 'inputs.pt')!r})\n"
            "z, e, c, s = m(*d['args'], d['z0'], 8, 0.1, True, 0.05, True)\n"
            f"torch.save({{'z': z, 'e': e, 's': s}}, {str(tmp_path / 'out.pt')!r})\n"
            "assert not any(k.startswith('ebmtraj') for k in sys.modules)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    out = torch.load(tmp_path / "out.pt")
    from ebmtraj.prediction import RowEnergy
    from ebmtraj.search import anytime_search, reference_start

    en = RowEnergy(planner.model, cond, fixed_weight=10.0, margin=0.5)
    start = reference_start(planner.model, en.cond, en.enc) + z0
    ref = anytime_search(en.energy_and_grad, start, steps=8, optimiser="adam", lr=0.05)
    assert torch.allclose(out["z"], ref.z, atol=1e-5)
    assert torch.allclose(out["e"], ref.energy, rtol=1e-5, atol=1e-4)
    assert torch.allclose(out["s"], en.evaluate(ref.z)[2], atol=1e-4)
