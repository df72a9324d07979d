"""EBM-IOC learning and prediction: observed controls on real tracks, the analysis-by-synthesis
objective, stage-1 pretraining, prediction modes, multi-agent sampling on a constructed close
encounter, saving / loading and config errors."""
from __future__ import annotations

import copy

import pytest
import torch

from ebmcore.errors import ConfigError
from ebmcore.learning import TrainConfig, Trainer
from ebmcore.sampling import langevin
from ebmtraj import ioc
from ebmtraj.config import load
from ebmtraj.cost_inputs import CTX_NAMES, future_states
from ebmtraj.metrics import collision_rate
from ebmtraj.interaction import pair_index
from ebmtraj.prediction import RowEnergy
from ebmtraj.search import reference_start

from .ioc_helpers import real_scenes


@pytest.fixture(scope="module")
def prepared():
    torch.set_num_threads(1)
    real = real_scenes()
    sc, inp = real["scenes"], real["target"]
    fs = future_states(sc, inp)
    torch.manual_seed(0)
    model = ioc.build_model(ioc.ModelConfig(), int(sc["history"]), int(sc["future"]), ioc.control_scale(fs))
    data, err = ioc.prepare_training(model, inp, fs, fit_iters=30)
    return {"model": model, "data": data, "err": err, "fs": fs, "real": real}


def test_observed_controls_reproduce_real_tracks(prepared):
    err = prepared["err"]
    assert torch.isfinite(err).all()
    # stop-and-go CommonRoad traffic: most tracks within centimetres, a few slow ones worse
    assert float(err.median()) < 0.1 and float(err.quantile(0.75)) < 0.3
    # and they are what the Trainer sees: rolling out data["x"] gives the same positions
    model, data, fs = prepared["model"], prepared["data"], prepared["fs"]
    states, _ = model.rollout(data["x"], data)
    rmse = ((states[..., :2] - fs[..., :2]) ** 2).sum(-1).mean(1).sqrt()
    assert torch.allclose(rmse, err, atol=1e-3)


def _contrastive(model, data, batches, seed=0):
    """mean E(obs) - E(syn) over fixed batches, synthesis from the nominal with a fixed seed."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for idx in batches:
        cond = {k: v[idx] for k, v in data.items() if k != "x"}
        z0 = 0.1 * torch.randn(data["x"][idx].shape, generator=g)
        syn = langevin(lambda z: model.energy(z, cond), z0, 10, 0.15, generator=g)
        with torch.no_grad():
            out.append(float(model.energy(data["x"][idx], cond).mean() - model.energy(syn, cond).mean()))
    return sum(out) / len(out)


def test_short_training_lowers_the_contrastive_objective(prepared, tmp_path):
    model, data = copy.deepcopy(prepared["model"]), prepared["data"]
    n = data["x"].shape[0]
    batches = [torch.arange(i, n, 4)[:32] for i in range(3)]
    before = _contrastive(model, data, batches)
    cfg = TrainConfig(steps=25, batch_size=32, seed=0, log_every=5, ckpt_every=100, progress=False,
                      tensorboard=False)
    cfg.sampler.steps, cfg.sampler.step_size = 10, 0.15
    cfg.chains.kind, cfg.chains.std = "short_run", 0.1
    cfg.optim.lr, cfg.optim.grad_clip = 3e-3, 10.0
    Trainer(model, data, cfg, tmp_path / "run", resume=False).fit()
    after = _contrastive(model, data, batches)
    assert before > 0, "observed controls start with a higher energy than the synthesised ones"
    assert after < 0.8 * before


def test_pretraining_fits_the_references(prepared):
    model, data = copy.deepcopy(prepared["model"]), prepared["data"]
    losses = ioc.pretrain_neural(model, data, steps=300, batch_size=64, lr=3e-3)
    assert losses[-1] < losses[0] - 10
    target = model.rollout(data["x"], data)[0][..., :2]
    with torch.no_grad():
        ref, _ = model.cost.neural.encode(data)
    cv = ioc.rmse_table(data["nominal"], target)
    fitted = ioc.rmse_table(data["nominal"] + ref, target)
    assert fitted[-1] < 0.8 * cv[-1]
    prepared["pretrained"] = model


def test_prediction_modes_shapes_and_seed(prepared):
    model = prepared.get("pretrained") or prepared["model"]
    cond = {k: v[:12] for k, v in prepared["data"].items() if k != "x"}
    T = model.cost.steps
    for mode, k in (("adam", 1), ("descent", 1), ("sample", 4)):
        pc = ioc.PredictConfig(mode=mode, samples=4, steps=5, opt_steps=5, seed=3)
        a = ioc.predict(model, cond, pc)
        assert a["z"].shape == (12, k, T, 2) and a["states"].shape == (12, k, T, 6)
        assert a["energy"].shape == (12, k) and torch.isfinite(a["states"]).all()
        b = ioc.predict(model, cond, pc)
        assert torch.equal(a["z"], b["z"])
    # the minimum-cost search does lower the energy from where it starts
    start = reference_start(model, cond)
    e0 = model.energy(start, cond)
    e1 = ioc.predict(model, cond, ioc.PredictConfig(mode="adam", init="reference", opt_steps=20))["energy"][:, 0]
    assert (e1 <= e0 + 1e-4).all() and e1.mean() < e0.mean()


def test_reference_start_follows_the_references(prepared):
    model = prepared.get("pretrained") or prepared["model"]
    cond = {k: v[:40] for k, v in prepared["data"].items() if k != "x"}
    moving = cond["x0"][:, 2] > 3.0
    with torch.no_grad():
        ref, _ = model.cost.neural.encode(cond)
    z = reference_start(model, cond)
    pos = model.rollout(z, cond)[0][..., :2]
    target = cond["nominal"] + ref
    err = (pos - target).norm(dim=-1)[moving]
    spread = ref.norm(dim=-1)[moving]
    assert float(err.mean()) < 0.3 * float(spread.mean()) + 0.05


def _encounter(T=40, gap=20.0, v_follow=15.0, v_lead=8.0):
    """Two agents in one lane, the follower closing fast on a slow leader: rows of one scene."""
    tt = torch.arange(1, T + 1) * 0.1
    xs = torch.linspace(-40, 200, 26)
    size = torch.tensor([4.5, 1.8])
    origin = torch.tensor([[0.0, 0.0, 0.0], [gap, 0.0, 0.0]], dtype=torch.float64)
    rows = []
    for a, (me, other) in enumerate(((0.0, gap), (gap, 0.0))):
        v_me, v_other = (v_follow, v_lead) if a == 0 else (v_lead, v_follow)
        lanes = torch.stack([torch.stack([xs, torch.full_like(xs, y)], -1) for y in (0.0, 3.6, -3.6)]) - \
            torch.tensor([me, 0.0])
        nbr = torch.stack([other - me + v_other * tt, 0 * tt], -1)
        rows.append({"x0": torch.tensor([0.0, 0.0, v_me, 0.0, 0.0, 0.0]), "hist": torch.stack(
            [torch.arange(-9, 1) * 0.1 * v_me, torch.zeros(10)], -1),
            "ctx": torch.zeros(len(CTX_NAMES)), "v_hist": torch.tensor(v_me), "lane_pts": lanes,
            "lane_seg": torch.ones(3, 25, dtype=torch.bool), "lane_hw": torch.full((3,), 1.8),
            "nbr_pos": nbr[None], "nbr_vel": torch.tensor([v_other, 0.0]).expand(1, T, 2).clone(),
            "nbr_size": size[None], "nbr_valid": torch.ones(1), "size": size, "ref": torch.tensor(0.0),
            "scene": torch.tensor(0), "agent": torch.tensor(a), "nbr_agent": torch.tensor([1 - a])})
    cond = {k: torch.stack([r[k] for r in rows]) for k in rows[0]}
    cond["origin"] = origin
    return cond


def _world(pred, cond):
    from ebmtraj.cost_inputs import to_recording_frame

    st = pred["states"]                                  # (A,K,T,6)
    A, K, T, _ = st.shape
    pos = to_recording_frame(st[..., :2].double().reshape(A, K * T, 2), cond["origin"]).reshape(A, K, T, 2)
    head = st[..., 3].double() + cond["origin"][:, 2, None, None]
    return pos.permute(1, 0, 2, 3), head.permute(1, 0, 2)          # (K,A,T,2), (K,A,T)


def test_multi_agent_sampling_keeps_agents_apart():
    torch.manual_seed(0)
    model = ioc.build_model(ioc.ModelConfig(), 10, 40)
    model.eval()
    cond = _encounter()
    cond["nominal"] = model.nominal(cond)
    results = {}
    for mode in ("adam", "sample"):
        pc = ioc.PredictConfig(mode=mode, samples=8, steps=20, step_size=0.15, init="nominal",
                               opt_steps=60, adam_lr=0.2, interaction_weight=10.0, seed=1)
        for name, pred in (("independent", ioc.predict(model, cond, pc)),
                           ("joint", ioc.predict_joint(model, cond, pc))):
            pos, head = _world(pred, cond)
            gap = (pos[:, 1] - pos[:, 0]).norm(dim=-1).min(-1).values          # (K,)
            hits = collision_rate(pos, head, torch.tensor([[4.5, 1.8]] * 2, dtype=torch.float64).expand(
                pos.shape[0], 2, 2))["scene"]
            results[(mode, name)] = (float(gap.mean()), hits)
    for mode in ("adam", "sample"):
        gap_i, hit_i = results[(mode, "independent")]
        gap_j, hit_j = results[(mode, "joint")]
        assert gap_j > gap_i + 1.0, results
        assert hit_j < hit_i, results


def test_joint_energy_reduces_to_the_independent_one_without_neighbours(prepared):
    model = prepared["model"]
    real = prepared["real"]
    rows = real["all"]
    sel = torch.arange(10)
    cond = ioc.cond_of({k: v[sel] for k, v in rows.items()}, model)
    for k in ("scene", "agent", "origin"):
        cond[k] = rows[k][sel]
    cond["nbr_agent"] = torch.full_like(rows["nbr_agent"][sel], -1)       # nobody predicted jointly
    cond.update(pair_index(cond["scene"], cond["agent"], cond["nbr_agent"], cond["origin"]))
    z = 0.3 * torch.randn(10, model.cost.steps, 2)
    joint = RowEnergy(model, cond, joint_weight=10.0).evaluate(z)[0]
    assert torch.allclose(joint, model.energy(z, cond), atol=1e-4)


def test_save_and_load_round_trip(prepared, tmp_path):
    model = prepared["model"]
    path = ioc.save_model(model, tmp_path / "model.pt", {"model": ioc.ModelConfig().__dict__})
    loaded, spec, blob = ioc.load_model(path)
    cond = {k: v[:5] for k, v in prepared["data"].items() if k != "x"}
    z = prepared["data"]["x"][:5]
    assert torch.allclose(loaded.energy(z, cond), model.energy(z, cond))
    assert blob["history"] == 10 and blob["steps"] == 40


def test_config_errors_name_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodel: {basis: spline}\n")
    with pytest.raises(ConfigError, match="basis"):
        load(bad)
    with pytest.raises(ConfigError, match="predict.mde|unknown config key predict.mde"):
        load(None, ["predict.mde=adam"])
    with pytest.raises(ConfigError, match="data.dataset"):
        load(None, ["data.dataset=ngsim-everything"])
