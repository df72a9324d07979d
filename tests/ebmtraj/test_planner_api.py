"""The planner API on real CommonRoad scenes: loading, planning, modes, warm start, inputs.

The model is a short real IOC run (a few analysis-by-synthesis steps through ebmtraj.ioc) on one
CommonRoad NGSIM scenario, built once per session by :func:`planner_checkpoint`.
"""
from __future__ import annotations

import math
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from ebmcore.paths import data_root

CR_DIR = data_root() / "commonroad-ngsim-us101"
SCENARIO = "USA_US101-10_1_T-1.xml"
needs_data = pytest.mark.skipif(not (CR_DIR / SCENARIO).is_file(),
                                reason=f"CommonRoad data not found under {CR_DIR}")
_CACHE: dict = {}


def planner_checkpoint() -> dict:
    """Prepare one real scenario, train a tiny IOC model for a few steps, save model.pt.

    Returns {"path", "scenes", "lanes"} (cached for the session)."""
    if _CACHE:
        return _CACHE
    from ebmcore.io import load_tensors
    from ebmcore.training_config import TrainConfig
    from ebmtraj import ioc
    from ebmtraj.cost_inputs import build_inputs, future_states
    from ebmtraj.data.lanes import LaneMap
    from ebmtraj.data.prepare import prepare

    torch.manual_seed(0)
    root = Path(tempfile.mkdtemp(prefix="ebmtraj_planner_test_"))
    out = prepare("commonroad", inputs=[CR_DIR / SCENARIO], out=root / "cache", seed=0)
    scenes = load_tensors(out / "scenes_train.pt")
    lanes = {r: LaneMap.from_tensors(d) for r, d in load_tensors(out / "lanes.pt").items()}
    inp = build_inputs(scenes, lanes, rows="target")
    fstates = future_states(scenes, inp)
    mcfg = ioc.ModelConfig()
    model = ioc.build_model(mcfg, int(scenes["history"]), int(scenes["future"]), ioc.control_scale(fstates))
    data, _ = ioc.prepare_training(model, inp, fstates, fit_iters=20)
    ioc.pretrain_neural(model, data, steps=60, batch_size=64, seed=0)
    tcfg = TrainConfig(steps=4, batch_size=32, seed=0, log_every=2, ckpt_every=100, progress=False,
                       tensorboard=False)
    tcfg.sampler.steps, tcfg.sampler.step_size = 8, 0.15
    tcfg.chains.kind = "data"
    pcfg = ioc.PredictConfig(mode="sample", steps=12, step_size=0.15, samples=3, init="mincost",
                             opt_steps=10, adam_lr=0.05)
    full = {"model": asdict(mcfg), "predict": asdict(pcfg)}
    ioc.train(model, data, tcfg, root / "run", resume=False, pcfg=pcfg)
    ioc.save_model(model, root / "run" / "model.pt", full)
    _CACHE.update(path=root / "run" / "model.pt", scenes=scenes, lanes=lanes, inputs=inp)
    return _CACHE


def scene_inputs(cache: dict, i: int):
    """(ego, history, neighbours, lanes) of scene i's target agent, from raw positions only."""
    from ebmtraj.planner import AgentState, fit_state

    sc = cache["scenes"]
    H = int(sc["history"])
    raw = sc["positions_raw"][i].double().numpy()
    mask = sc["mask"][i].numpy()
    size, ref = sc["size"][i].double().numpy(), sc["ref_offset"][i].double().numpy()
    ego = fit_state(raw[0, :H], length=size[0, 0], width=size[0, 1], ref=ref[0])
    nbrs = []
    for a in range(1, len(mask)):
        if mask[a]:
            s = fit_state(raw[a, :H], length=size[a, 0], width=size[a, 1], ref=ref[a])
            nbrs.append(AgentState(s.x, s.y, s.heading, s.speed, length=s.length, width=s.width,
                                   ref=s.ref, agent_id=a))
    lanes = cache["lanes"][sc["recordings"][int(sc["recording"][i])]]
    return ego, raw[0, :H], nbrs, lanes


@pytest.fixture(scope="module")
def cache():
    if not (CR_DIR / SCENARIO).is_file():
        pytest.skip(f"CommonRoad data not found under {CR_DIR}")
    torch.set_num_threads(1)
    return planner_checkpoint()


@pytest.fixture
def planner(cache):
    from ebmtraj.planner import Planner

    return Planner.from_checkpoint(cache["path"], opt_steps=6, steps=6)


def test_loads_training_checkpoint(cache, planner):
    assert planner.trained_horizon == pytest.approx(4.0)
    assert planner.history_frames == 10
    d = planner.loaded.search
    assert (d.steps, d.samples, d.init, d.opt_steps, d.adam_lr) == (12, 3, "mincost", 10, 0.05)
    st = planner.settings()
    assert (st.mode, st.samples, st.opt_steps, st.steps) == ("adam", 1, 6, 6)
    assert st.step_size == pytest.approx(0.15 * (12 / 6) ** 0.5)     # equal drift
    assert not any(p.requires_grad for p in planner.model.parameters())


@needs_data
def test_plan_on_real_scene(cache, planner):
    ego, hist, nbrs, lanes = scene_inputs(cache, 3)
    traj = planner.plan(ego, hist, nbrs, lanes, horizon=4.0)
    assert traj.fallback is None and traj.policy == "ebm"
    assert traj.t.shape == (40,) and np.allclose(traj.t, np.arange(1, 41) * 0.1)
    for arr, shape in ((traj.positions, (40, 2)), (traj.headings, (40,)), (traj.speeds, (40,)),
                       (traj.controls, (40, 2)), (traj.states, (40, 6))):
        assert arr.shape == shape and np.isfinite(arr).all()
    assert math.isfinite(traj.cost) and traj.energy >= traj.cost
    assert (traj.speeds >= 0).all()
    # the plan starts where the ego is and moves along its heading
    step0 = traj.positions[0] - [ego.x, ego.y]
    assert np.hypot(*step0) < ego.speed * 0.1 + 1.0
    assert np.cos(np.arctan2(step0[1], step0[0]) - ego.heading) > 0.9 or ego.speed < 1
    assert traj.iterations == 7            # the start and 6 Adam steps
    short = planner.plan(ego, hist, nbrs, lanes, horizon=2.5)
    assert short.t.shape == (25,) and short.positions.shape == (25, 2)


@needs_data
def test_planner_inputs_equal_training_inputs(cache, planner):
    """Built from live states, the cost's inputs (and energy) equal those training used."""
    from ebmtraj.planner.inputs import LaneSet, build_rows
    from ebmtraj.prediction import RowEnergy

    inp = cache["inputs"]
    for i in (0, 5, 11):
        ego, hist, nbrs, lanes = scene_inputs(cache, i)
        rows = build_rows([ego], [hist], [nbrs], LaneSet.from_any(lanes), planner.loaded.inputs,
                          history=10, steps=40, max_neighbours=5, radius=30.0)
        mine, ref = rows.cond, {k: v[i:i + 1] for k, v in inp.items()}
        for key in ("x0", "hist", "v_hist", "lane_pts", "lane_seg", "lane_hw", "size", "ref", "ctx"):
            assert torch.allclose(mine[key].float(), ref[key].float(), atol=2e-3), key
        slot = {int(ref["nbr_agent"][0, m]): m for m in range(ref["nbr_agent"].shape[1])}
        for m, j in enumerate(rows.neighbours[0]):
            if j >= 0:
                k = slot[nbrs[j].agent_id]
                assert torch.allclose(mine["nbr_pos"][0, m], ref["nbr_pos"][0, k], atol=2e-3)
                assert torch.allclose(mine["nbr_size"][0, m], ref["nbr_size"][0, k])
        keys = [k for k in mine if k in ref]
        assert set(mine) == set(keys)                   # one list of input keys
        e_mine = RowEnergy(planner.model, mine).evaluate(torch.zeros(1, 40, 2))[0]
        e_ref = RowEnergy(planner.model, {k: ref[k] for k in keys}).evaluate(torch.zeros(1, 40, 2))[0]
        assert torch.allclose(e_mine, e_ref, rtol=1e-3, atol=1e-2)


@needs_data
def test_energy_and_search_match_the_engine(cache, planner):
    """The search energy and gradient are IOCEnergy's; Langevin in the anytime search is
    ebmcore's; the minimum-cost search never ends above its start."""
    from ebmcore.sampling import langevin
    from ebmtraj.cost_inputs import COND_TENSORS
    from ebmtraj.prediction import RowEnergy
    from ebmtraj.search import anytime_search, reference_start

    cond = {k: v[:4] for k, v in cache["inputs"].items() if k in COND_TENSORS}
    en = RowEnergy(planner.model, cond)
    z = torch.randn(4, 40, 2, generator=torch.Generator().manual_seed(1)) * 2.0
    e, g = en.energy_and_grad(z)
    zz = z.clone().requires_grad_(True)
    e_ref = planner.model.energy(zz, en.cond)
    (g_ref,) = torch.autograd.grad(e_ref.sum(), zz)
    assert torch.allclose(e, e_ref.detach(), rtol=1e-5, atol=1e-4)
    assert torch.allclose(g, g_ref, rtol=1e-4, atol=1e-5)
    mine = anytime_search(en.energy_and_grad, z, steps=5, optimiser="langevin", step_size=0.1,
                          noise=True, generator=torch.Generator().manual_seed(3)).z
    ref = langevin(lambda x: planner.model.energy(x, en.cond), z, 5, 0.1, noise="constant",
                   generator=torch.Generator().manual_seed(3))
    assert torch.allclose(mine, ref, atol=1e-5)
    start = reference_start(planner.model, en.cond)
    best = anytime_search(en.energy_and_grad, start, steps=6, optimiser="adam", lr=0.05)
    assert (best.energy <= en.evaluate(start)[0] + 1e-5).all() and best.iterations == 7


@needs_data
def test_modes_are_deterministic_given_a_seed(cache, planner):
    ego, hist, nbrs, lanes = scene_inputs(cache, 7)
    a = planner.plan(ego, hist, nbrs, lanes, samples=3, seed=4, warm_start=False)
    b = planner.plan(ego, hist, nbrs, lanes, samples=3, seed=4, warm_start=False)
    assert np.array_equal(a.positions, b.positions) and a.mode == "min_cost"
    s1 = planner.plan(ego, hist, nbrs, lanes, mode="sample", samples=4, seed=1, return_samples=True)
    s2 = planner.plan(ego, hist, nbrs, lanes, mode="sample", samples=4, seed=1, return_samples=True)
    s3 = planner.plan(ego, hist, nbrs, lanes, mode="sample", samples=4, seed=2, return_samples=True)
    assert s1.samples.positions.shape == (4, 40, 2) and s1.samples.energy.shape == (4,)
    assert np.array_equal(s1.samples.positions, s2.samples.positions)
    assert not np.allclose(s1.samples.positions, s3.samples.positions)
    # the plan is the lowest-energy sample
    k = int(np.argmin(s1.samples.energy))
    assert np.allclose(s1.positions, s1.samples.positions[k])
    assert a.samples is None


@needs_data
def test_time_budget_returns_best_by_deadline(cache, planner):
    ego, hist, nbrs, lanes = scene_inputs(cache, 2)
    full = planner.plan(ego, hist, nbrs, lanes, opt_steps=0, warm_start=False)
    quick = planner.plan(ego, hist, nbrs, lanes, opt_steps=100_000, time_budget=0.4, warm_start=False)
    assert "deadline" in quick.flags
    assert 1 <= quick.iterations < 100_000
    assert quick.elapsed_s < 2.0           # the budget plus input building, on a loaded 2-core box
    assert quick.energy <= full.energy + 1e-4   # never worse than the start it descended from


@needs_data
def test_warm_start_shifts_previous_plan(cache, planner):
    ego, hist, nbrs, lanes = scene_inputs(cache, 4)
    planner.reset()
    first = planner.plan(ego, hist, nbrs, lanes, timestamp=10.0)
    assert "warm_start" not in first.flags
    levels = first.latent["levels"]
    x0 = torch.tensor([[0, 0, ego.speed, 0, ego.accel, ego.steering]], dtype=torch.float32)
    z = planner._shifted(first.latent, 10.1, x0)
    assert torch.allclose(planner.model.param.levels(z)[0], torch.as_tensor(
        np.concatenate([levels[1:], levels[-1:]]), dtype=torch.float32), atol=1e-4)
    z3 = planner._shifted(first.latent, 10.3, x0)
    assert torch.allclose(planner.model.param.levels(z3)[0, :-3], torch.as_tensor(levels[3:]), atol=1e-4)
    assert planner._shifted(first.latent, 15.0, x0) is None        # too old to use
    second = planner.plan(ego, hist, nbrs, lanes, timestamp=10.1)
    assert "warm_start" in second.flags
    # min cost keeps the better of the nominal chain and the warm-started one
    cold = planner.plan(ego, hist, nbrs, lanes, warm_start=False)
    assert second.energy <= cold.energy + 1e-3
    planner.reset()
    assert "warm_start" not in planner.plan(ego, hist, nbrs, lanes).flags
    explicit = planner.plan(ego, hist, nbrs, lanes, warm_start=first)
    assert "warm_start" in explicit.flags


def test_planner_checkpoint_round_trip_and_checks(cache, tmp_path):
    from ebmcore.errors import ConfigError, DataError
    from ebmtraj.planner import PLANNER_VERSION, Planner, load_checkpoint, save_planner_checkpoint
    from ebmcore.io import load_tensors, save_tensors

    loaded = load_checkpoint(cache["path"])
    assert loaded.version is None          # a training output, not yet a planner checkpoint
    path = save_planner_checkpoint(loaded, tmp_path / "planner.pt")
    again = load_checkpoint(path)
    assert again.version == PLANNER_VERSION
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, again.model.state_dict()[k])
    blob = load_tensors(path)
    blob["planner"]["version"] = PLANNER_VERSION + 1
    save_tensors(blob, tmp_path / "future.pt")
    with pytest.raises(ConfigError, match="version"):
        Planner.from_checkpoint(tmp_path / "future.pt")
    blob = load_tensors(path)
    blob["spec"]["model"]["hidden"] = 32
    save_tensors(blob, tmp_path / "wrong.pt")
    with pytest.raises(ConfigError, match="weights do not fit"):
        Planner.from_checkpoint(tmp_path / "wrong.pt")
    blob = load_tensors(path)
    blob["spec"]["model"]["dt"] = 0.2
    save_tensors(blob, tmp_path / "dt.pt")
    with pytest.raises(ConfigError, match="dt"):
        Planner.from_checkpoint(tmp_path / "dt.pt")
    blob = load_tensors(cache["path"])
    blob["config"] = {}
    del blob["spec"]
    save_tensors(blob, tmp_path / "noconfig.pt")
    with pytest.raises(ConfigError, match="no model config"):
        Planner.from_checkpoint(tmp_path / "noconfig.pt")
    torch.save({"format": 1, "state": _Opaque()}, tmp_path / "pickle.pt")
    with pytest.raises(DataError, match="weights-only"):
        Planner.from_checkpoint(tmp_path / "pickle.pt")
    with pytest.raises(DataError, match="no such checkpoint"):
        Planner.from_checkpoint(tmp_path / "missing.pt")


class _Opaque:
    """A pickled object: the weights-only loader must refuse it."""


@needs_data
def test_joint_prediction_on_real_scene(cache, planner):
    from ebmtraj.planner import Scene, SceneAgent

    sc = cache["scenes"]
    H = int(sc["history"])
    i = int(torch.nonzero(sc["mask"].sum(1) >= 4)[0])
    ego, hist, nbrs, lanes = scene_inputs(cache, i)
    raw = sc["positions_raw"][i].double().numpy()
    agents = [SceneAgent(ego, hist)] + [SceneAgent(b, raw[b.agent_id, :H]) for b in nbrs]
    preds = planner.predict(Scene(agents, lanes), horizon=4.0, samples=2)
    assert len(preds) == len(agents)
    for p, a in zip(preds, agents):
        assert p.positions.shape == (40, 2) and np.isfinite(p.positions).all()
        assert "joint" in p.flags and p.fallback is None
        assert np.hypot(*(p.positions[0] - [a.state.x, a.state.y])) < a.state.speed * 0.1 + 1.0
    alone = planner.predict(Scene(agents, lanes), joint=False)
    assert all("independent" in p.flags for p in alone)
    with pytest.raises(Exception, match="no agents"):
        planner.predict(Scene([], lanes))


def test_joint_energy_overlap_penalty_shapes():
    """The pair penalty is positive for overlapping boxes, ~0 apart, for any batch size."""
    from ebmtraj.interaction import discs as _discs, pair_penalty

    B, M, T = 3, 2, 4
    centre = torch.zeros(B, T, 2)
    heading = torch.zeros(B, T)
    size = torch.tensor([[4.5, 1.8]]).repeat(B, 1)
    pts, r = _discs(centre, heading, size)
    assert pts.shape == (B, T, 3, 2) and r.shape == (B,)
    nbr = torch.zeros(B, M, T, 2)
    nbr[:, 1] += torch.tensor([50.0, 0.0])
    live = torch.tensor([[True, True], [True, False], [False, False]])
    pen = pair_penalty(centre, heading, size, nbr, torch.zeros(B, M, T), size[:, None].repeat(1, M, 1), live,
                       torch.ones(B, M))
    assert pen.shape == (B,)
    assert pen[0] > 1.0 and torch.isclose(pen[0], pen[1]) and pen[2] == 0


def test_import_is_dependency_light():
    code = ("import sys, ebmtraj.planner, ebmtraj.planner.export, ebmtraj.planner.nuplan_adapter\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('open3d', 'trimesh', 'pandas', 'scipy',"
            " 'matplotlib', 'highway_env', 'commonroad') or m in ('ebmcore.learning', 'ebmtraj.ioc',"
            " 'ebmtraj.data', 'ebmtraj.metrics', 'ebmtraj.baselines')]\n"
            "print(sorted(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
