"""Parity: the planner plans what the training-side prediction predicts, on synthetic scenes.

One model (untrained weights, fixed seed) saved as a checkpoint; the training side builds its
rows from the prepared-scene layout (:func:`ebmtraj.cost_inputs.build_inputs`) and predicts with
:func:`ebmtraj.prediction.predict`; the planner gets live states and histories. No real data.
"""
from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np
import pytest
import torch

from ebmtraj.cost_inputs import build_inputs, to_recording_frame
from ebmtraj.data.toy import RECORDING, straight_road, traffic_scene
from ebmtraj.model import ModelConfig, PredictConfig, build_model, save_model
from ebmtraj.planner import Planner, Scene, SceneAgent, fit_state
from ebmtraj.prediction import predict

PCFG = PredictConfig(mode="sample", samples=3, steps=6, step_size=0.15, init="mincost",
                     init_std=0.1, opt_steps=8, adam_lr=0.05, interaction_weight=10.0)


def save_checkpoint(folder, pcfg: PredictConfig = PCFG):
    torch.manual_seed(3)
    model = build_model(ModelConfig(), 10, 40)
    return save_model(model, folder / "model.pt", {"model": asdict(ModelConfig()), "predict": asdict(pcfg)})


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("parity"))


@pytest.fixture(scope="module")
def world():
    torch.set_num_threads(1)
    scenes = traffic_scene(5, seed=1, spacing=12.0)
    return scenes, straight_road()


def training_side(checkpoint, scenes, lanes, cfg, rows="target", joint=False, headways=None):
    """Training-side predictions: world positions (N, K, T, 2) and energies (N, K);
    ``headways`` (S, A, H): recorded headways for a model with virtual leaders."""
    from ebmtraj.ioc import cond_of
    from ebmtraj.model import load_model

    model = load_model(checkpoint)[0]
    inp = build_inputs(scenes, {RECORDING: lanes}, rows, headways=headways)
    cond = cond_of(inp, model)
    for key in ("scene", "agent", "nbr_agent", "origin"):
        cond[key] = inp[key]
    pred = predict(model, cond, cfg, joint=joint)
    pos = to_recording_frame(pred["states"][..., :2].double().flatten(1, 2), inp["origin"])
    return pos.view(pred["states"].shape[:3] + (2,)).numpy(), pred["energy"]


def live_agents(scenes, wrong_controls=False):
    """SceneAgents from the histories alone; ``wrong_controls``: the states carry acceleration
    and steering far from the history's (as a simulator adapter might pass them)."""
    H = int(scenes["history"])
    raw = scenes["positions_raw"][0].double().numpy()
    size = scenes["size"][0].double().numpy()
    out = []
    for a in range(raw.shape[0]):
        s = fit_state(raw[a, :H], length=size[a, 0], width=size[a, 1])
        if wrong_controls:
            s = replace(s, accel=5.0, steering=0.45)
        out.append(SceneAgent(s, raw[a, :H]))
    return out


def test_single_min_cost_and_samples_parity(checkpoint, world):
    scenes, lanes = world
    planner = Planner.from_checkpoint(checkpoint, interaction=False, warm_start=False)
    agents = live_agents(scenes, wrong_controls=True)
    ego, others = agents[0], [a.state for a in agents[1:]]
    plan = planner.plan(ego.state, ego.history, others, lanes)
    ref, _ = training_side(checkpoint, scenes, lanes, replace(PCFG, mode="adam", samples=1))
    assert np.abs(plan.positions - ref[0, 0]).max() < 1e-4
    assert abs(plan.start.accel) <= 3.0 and abs(plan.start.steering) <= 0.1    # estimated, clipped
    sampled = planner.plan(ego.state, ego.history, others, lanes, mode="sample", return_samples=True)
    ref, _ = training_side(checkpoint, scenes, lanes, PCFG)
    assert sampled.samples.positions.shape == (3, 40, 2)
    assert np.abs(sampled.samples.positions - ref[0]).max() < 1e-4


@pytest.mark.parametrize("joint_start", ["reference", "independent"])
def test_joint_min_cost_and_samples_parity(tmp_path, world, joint_start):
    """Joint prediction, also as a repair of the independent plans (joint_start 'independent')."""
    scenes, lanes = world
    pcfg = replace(PCFG, joint_start=joint_start, joint_steps=4)
    checkpoint = save_checkpoint(tmp_path, pcfg)
    planner = Planner.from_checkpoint(checkpoint)
    scene = Scene(live_agents(scenes, wrong_controls=True), lanes)
    for cfg, mode in ((replace(pcfg, mode="adam", samples=1), "min_cost"), (pcfg, "sample")):
        ref, energy = training_side(checkpoint, scenes, lanes, cfg, rows="all", joint=True)
        best = int(torch.argmin(energy.sum(0)))              # the copy with the lowest joint energy
        plans = planner.predict(scene, mode=mode)
        got = np.stack([p.positions for p in plans])
        assert np.abs(got - ref[:, best]).max() < 1e-4, mode


def test_exported_plan_parity(checkpoint, world, tmp_path):
    from ebmtraj.planner.export import ExportedPlanner, export_planner

    scenes, lanes = world
    planner = Planner.from_checkpoint(checkpoint, interaction=False, warm_start=False)
    path = export_planner(planner, tmp_path / "planner.ts", chains=1, neighbours=5)
    agents = live_agents(scenes, wrong_controls=True)
    plan = ExportedPlanner(path, planner).plan(agents[0].state, agents[0].history,
                                               [a.state for a in agents[1:]], lanes)
    ref, _ = training_side(checkpoint, scenes, lanes, replace(PCFG, mode="adam", samples=1))
    assert np.abs(plan.positions - ref[0, 0]).max() < 1e-4


def closing_pair():
    """A follower 12 m behind its leader in one lane, closing at 5 m/s: at constant velocity it
    drives through the leader and ends 8 m ahead."""
    return traffic_scene(2, seed=0, lanes=1, gaps=[0.0, -12.0], speeds=[15.0, 20.0])


def final_gap(pos: np.ndarray) -> float:
    """Leader minus follower x at the horizon [m], from (2, T, 2) positions."""
    return float(pos[0, -1, 0] - pos[1, -1, 0])


@pytest.mark.parametrize("side", ["training", "planner"])
def test_order_penalty_parity_keeps_a_close_pair_apart(checkpoint, side):
    """The joint energy's same-lane order penalty pulls a follower that passes through its
    leader back by about 6 m in 30 Adam steps; the symmetric overlap penalty alone moves it
    less than 1 m (its gradient, once the paths cross, points the wrong way). Fails if either
    side loses the order penalty."""
    scenes, lanes = closing_pair(), straight_road(lanes=1)
    gaps = {}
    for w in (0.0, 10.0):
        cfg = replace(PCFG, mode="adam", samples=1, opt_steps=30, interaction_weight=w)
        if side == "training":
            pos = training_side(checkpoint, scenes, lanes, cfg, rows="all", joint=True)[0][:, 0]
        else:
            planner = Planner.from_checkpoint(checkpoint, opt_steps=30, interaction_weight=w)
            pos = np.stack([p.positions for p in planner.predict(Scene(live_agents(scenes), lanes))])
        gaps[w] = final_gap(pos)
    assert gaps[0.0] < -5.0 and gaps[10.0] > gaps[0.0] + 3.0, gaps


def test_export_refuses_what_it_does_not_implement(tmp_path):
    """A learned start network and virtual leaders are not exported: a one-line ConfigError."""
    from ebmcore.errors import ConfigError
    from ebmtraj.planner.export import export_planner

    planner = Planner.from_checkpoint(save_checkpoint(tmp_path, replace(PCFG, init="generator")))
    with pytest.raises(ConfigError, match="generator"):
        export_planner(planner, tmp_path / "planner.ts")
    torch.manual_seed(3)
    leaders = save_model(build_model(ModelConfig(), 10, 40), tmp_path / "leaders.pt",
                         {"model": asdict(ModelConfig()), "predict": asdict(PCFG), "data": {"headway_leads": True}})
    with pytest.raises(ConfigError, match="virtual leaders"):
        export_planner(Planner.from_checkpoint(leaders), tmp_path / "planner.ts")


def test_virtual_leader_parity_and_headways(tmp_path, world):
    """A checkpoint trained with virtual leaders: given the ego's headway, the planner plans what
    the training side predicts from the same headways, and the leader changes the plan;
    ``predict`` derives a missing headway from the scene's histories as the data preparation
    does, ``plan`` from the ego's history and the neighbours' current states."""
    from ebmtraj.data.headways import headways_of_positions

    scenes, lanes = world
    torch.manual_seed(3)
    model = build_model(ModelConfig(), 10, 40)
    checkpoint = save_model(model, tmp_path / "model.pt", {"model": asdict(ModelConfig()), "predict": asdict(PCFG),
                                                           "data": {"headway_leads": True}})
    H, A = int(scenes["history"]), scenes["mask"].shape[1]
    hw = np.full((1, A, H), np.nan)
    hw[0, 0] = 30.0 - 0.5 * np.arange(H)               # agent 0 closes on a leader no scene agent is
    cfg = replace(PCFG, mode="adam", samples=1)
    ref, _ = training_side(checkpoint, scenes, lanes, cfg, headways=hw)
    planner = Planner.from_checkpoint(checkpoint, interaction=False, warm_start=False)
    agents = live_agents(scenes)
    ego, others = agents[0], [a.state for a in agents[1:]]
    plan = planner.plan(ego.state, ego.history, others, lanes, headway=hw[0, 0])
    assert np.abs(plan.positions - ref[0, 0]).max() < 1e-4
    free = planner.plan(ego.state, ego.history, others, lanes, headway=np.full(H, np.nan))
    assert np.abs(free.positions - plan.positions).max() > 0.05

    # neighbour slots within 5 m only: the leaders 12-16 m ahead then come as virtual leaders
    near = Planner.from_checkpoint(checkpoint, interaction=False, warm_start=False, neighbour_radius=5.0)
    raw = scenes["positions_raw"][0, :, :H].double().numpy()
    derived = headways_of_positions(raw)
    assert (derived[:, -1] > 0).sum() >= 2
    by_derivation = near.predict(Scene(agents, lanes), joint=False)
    by_hand = near.predict(Scene([SceneAgent(a.state, a.history, derived[i]) for i, a in enumerate(agents)],
                                 lanes), joint=False)
    none = near.predict(Scene([SceneAgent(a.state, a.history, np.full(H, np.nan)) for a in agents], lanes),
                        joint=False)
    for i, (p, q, r) in enumerate(zip(by_derivation, by_hand, none)):
        np.testing.assert_allclose(p.positions, q.positions, atol=1e-9)
        assert (abs(p.cost - r.cost) > 1e-3) == (derived[i, -1] > 0)   # the derived leader is costed

    # plan() without headway=: the ego's history and the neighbours taken back from their
    # current states at constant velocity, through the same derivation
    lead = int(np.flatnonzero(derived[:, -1] > 0)[0])
    ego, others = agents[lead], [a.state for i, a in enumerate(agents) if i != lead]
    back = (np.arange(H) - (H - 1)) * 0.1
    paths = [np.array([b.x, b.y]) + b.speed * back[:, None] * np.array([np.cos(b.heading), np.sin(b.heading)])
             for b in others]
    by_hand = headways_of_positions(np.stack([np.asarray(ego.history)[-H:]] + paths))[0]
    np.testing.assert_allclose(by_hand[-1], derived[lead, -1], atol=0.5)
    auto = near.plan(ego.state, ego.history, others, lanes)
    np.testing.assert_allclose(auto.positions, near.plan(ego.state, ego.history, others, lanes,
                                                         headway=by_hand).positions, atol=1e-9)
    assert abs(auto.cost - near.plan(ego.state, ego.history, others, lanes, headway=np.full(H, np.nan)).cost) > 1e-3
