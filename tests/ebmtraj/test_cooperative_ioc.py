"""The cooperative generator of EBM-IOC (the search's fast initialiser) and the joint repair of
independent minimum-cost predictions, on constructed scenes (fast)."""
from __future__ import annotations

import pytest
import torch

from ebmcore.errors import ConfigError
from ebmtraj import ioc
from ebmtraj.config import load
from ebmtraj.metrics import collision_rate
from ebmtraj.search import generator_start, reference_start

from .test_ioc import _encounter, _world


def _model(start_net=True):
    torch.manual_seed(0)
    model = ioc.build_model(ioc.ModelConfig(start_net=start_net), 10, 40)
    model.eval()
    return model


def test_untrained_generator_proposes_the_closed_form_start_and_learns_from_revisions():
    model = _model()
    cond = _encounter()
    cond["nominal"] = model.nominal(cond)
    gen = ioc.StartGenerator(model)
    chains = ioc.stage2_chains(model, "cooperative", lr=3e-3)
    assert [p.data_ptr() for p in gen.parameters()] == [p.data_ptr() for p in model.start_net.parameters()]
    x0 = chains.init(2, torch.zeros(2, 40, 2), torch.Generator().manual_seed(0), cond=cond)
    assert torch.allclose(x0, reference_start(model, cond), atol=1e-6)
    # MCMC teaching: the proposals move towards the revised samples they are regressed on
    ramp = torch.linspace(0.0, 1.0, 40)[None, :, None] * torch.tensor([[0.8, -0.5], [-0.4, 0.6]])[:, None]
    target = x0 + ramp                               # smooth revisions, as the knots can express
    before = float((x0 - target).pow(2).sum())
    for _ in range(60):
        chains.init(2, target, torch.Generator().manual_seed(0), cond=cond)
        chains.update(target)
    after = float((chains.init(2, target, torch.Generator().manual_seed(0), cond=cond) - target).pow(2).sum())
    assert after < 0.5 * before, (before, after)
    # the deterministic start (latent 0) is what prediction uses; it moved with the teaching
    assert not torch.allclose(generator_start(model, cond), reference_start(model, cond), atol=1e-3)


def test_generator_start_is_the_reference_start_without_a_generator_and_saved_with_the_model(tmp_path):
    plain = _model(start_net=False)
    cond = _encounter()
    assert torch.equal(generator_start(plain, cond), reference_start(plain, cond))
    with pytest.raises(ValueError):
        ioc.StartGenerator(plain)
    model = _model()
    with torch.no_grad():
        model.start_net.net[-1].bias.normal_()
    cfg = {"model": ioc.ModelConfig(start_net=True).__dict__}
    loaded, spec, _ = ioc.load_model(ioc.save_model(model, tmp_path / "model.pt", cfg))
    assert spec.model.start_net and loaded.start_net is not None
    assert torch.allclose(generator_start(loaded, cond), generator_start(model, cond), atol=1e-6)
    pc = ioc.PredictConfig(mode="adam", samples=1, init="generator", opt_steps=3)
    cond["nominal"] = model.nominal(cond)
    assert torch.allclose(ioc.predict(loaded, cond, pc)["z"], ioc.predict(model, cond, pc)["z"], atol=1e-5)


def test_stage2_parameters_freeze_only_the_reference_network():
    model = _model()
    ioc.stage2_parameters(model, "features")
    assert not any(p.requires_grad for p in model.cost.neural.net.parameters())
    assert model.cost.theta.requires_grad and model.cost.neural.log_sigma.requires_grad
    assert all(p.requires_grad for p in model.start_net.parameters())
    ioc.stage2_parameters(model, "all")
    assert all(p.requires_grad for p in model.cost.neural.net.parameters())


def test_joint_repair_of_independent_plans_removes_the_collision():
    model = _model(start_net=False)
    cond = _encounter()
    cond["nominal"] = model.nominal(cond)
    size = torch.tensor([[4.5, 1.8]] * 2, dtype=torch.float64)[None]
    pc = ioc.PredictConfig(mode="adam", samples=1, init="nominal", opt_steps=60, adam_lr=0.2,
                           interaction_weight=10.0, seed=1)
    hits, gaps = {}, {}
    for name, cfg in (("independent", pc),
                      ("repair", ioc.PredictConfig(**{**pc.__dict__, "joint_start": "independent",
                                                      "joint_steps": 30, "pair_gap": 0.5}))):
        pred = ioc.predict(model, cond, cfg) if name == "independent" else ioc.predict_joint(model, cond, cfg)
        pos, head = _world(pred, cond)
        hits[name] = collision_rate(pos, head, size)["scene"]
        gaps[name] = float((pos[:, 1] - pos[:, 0]).norm(dim=-1).min())
    assert hits["independent"] == 1.0 and hits["repair"] == 0.0, (hits, gaps)
    # a scene whose independent plans keep apart (the follower slower) keeps them exactly
    calm = _encounter(v_follow=8.0, v_lead=15.0)
    calm["nominal"] = model.nominal(calm)
    repair = ioc.PredictConfig(**{**pc.__dict__, "joint_start": "independent", "joint_steps": 30})
    assert torch.equal(ioc.predict_joint(model, calm, repair)["z"], ioc.predict(model, calm, pc)["z"])


def test_config_switches_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="start_net"):
        load("configs/ioc_commonroad.yaml", ["stage2.chains=cooperative", "model.start_net=false"])
    with pytest.raises(ConfigError, match="joint_start"):
        load("configs/ioc_commonroad.yaml", ["predict.joint_start=later"])
    with pytest.raises(ConfigError, match="init"):
        load("configs/ioc_commonroad.yaml", ["predict.init=somewhere"])
    cfg = load("configs/ioc_commonroad.yaml", ["stage2.chains=cooperative", "model.start_net=true"])
    assert cfg.stage2.chains == "cooperative"
