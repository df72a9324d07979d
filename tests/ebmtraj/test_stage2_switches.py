"""Stage 2's switches added in issue 12 ("the energy's own gain"): the parameter average
(``train.average``, the engine's: an exponential moving average of the model's state is what validation
measures and model selection saves), the parameter sets ``stage2.params: weights`` /
``anchored``, and the likelihood anchor ``stage2.anchor`` (fast, constructed rows)."""
from __future__ import annotations

import copy

import pytest
import torch

from ebmcore.averaging import ParameterAverage
from ebmcore.errors import ConfigError
from ebmcore.learning import TrainConfig
from ebmtraj import ioc
from ebmtraj.config import load

from .test_ioc import _encounter


def _model():
    torch.manual_seed(0)
    return ioc.build_model(ioc.ModelConfig(start_net=True), 10, 40)


def _rows(copies=4):
    """The constructed close encounter's two rows, repeated (8 rows)."""
    enc = _encounter()
    return {k: v.repeat(copies, *([1] * (v.dim() - 1))) for k, v in enc.items()}


@pytest.mark.parametrize("average", [None, 0.5])
def test_train_validates_and_saves_the_averaged_model(tmp_path, monkeypatch, average):
    model = _model()
    cond = _rows()
    cond["nominal"] = model.nominal(cond)
    z_obs = 0.3 * torch.randn(8, 40, 2, generator=torch.Generator().manual_seed(1))
    data = {"x": z_obs, **cond}
    future = model.rollout(z_obs, cond)[0][..., :2].detach()
    seen, weights = [], []
    real_predict = ioc.predict

    def spy(m, c, p):                                   # what validation measures
        seen.append(m.cost.theta.detach().clone())
        return real_predict(m, c, p)

    monkeypatch.setattr(ioc, "predict", spy)
    cfg = TrainConfig(steps=4, batch_size=8, seed=0, log_every=1, ckpt_every=100, progress=False,
                      tensorboard=False, average=average)
    cfg.sampler.steps, cfg.sampler.step_size, cfg.sampler.noise = 2, 0.15, "none"
    cfg.optim.lr = 0.05
    expected = ParameterAverage(copy.deepcopy(model), 0.5)
    chains = ioc.stage2_chains(model, "cooperative")
    from ebmcore import learning

    real_step = learning.Trainer.train_step

    def step_and_mirror(self):                          # mirror every update into `expected`
        out = real_step(self)
        expected.model.load_state_dict(self.model.state_dict())
        expected.update()
        weights.append(self.model.cost.theta.detach().clone())
        return out

    monkeypatch.setattr(learning.Trainer, "train_step", step_and_mirror)
    summary = ioc.train(model, data, cfg, tmp_path / "run", val=(cond, future), eval_every=2,
                        pcfg=ioc.PredictConfig(init="generator", opt_steps=1), chains=chains,
                        resume=False, full_config=load(None, ["model.start_net=true"]))
    assert [h["step"] for h in summary["val_history"]] == [0, 2, 4]
    assert len(seen) == 3 and len(weights) == 4
    if average is None:
        assert torch.allclose(seen[2], weights[3])
    else:
        assert torch.allclose(seen[2], expected.avg["cost.theta"], atol=1e-6)
        assert not torch.allclose(seen[2], weights[3], atol=1e-4)
        assert torch.allclose(model.cost.theta, weights[3])     # the model keeps its own state
    loaded, _, extra = ioc.load_model(tmp_path / "run" / ioc.MODEL_FILE)
    best = summary["best_step"]
    saved = {0: seen[0], 2: seen[1], 4: seen[2]}[best]
    assert torch.allclose(loaded.cost.theta, saved, atol=1e-6)


def test_config_switch(tmp_path):
    assert load(None, ["train.average=0.9"]).train.average == 0.9
    assert load(None, []).train.average is None
    with pytest.raises(ConfigError, match="train.average"):
        load(None, ["train.average=1.5"])
    with pytest.raises(ConfigError, match="average"):               # one knob: the engine's
        load(None, ["stage2.average=0.9"])


@pytest.mark.parametrize("which, net, scales", [("all", True, True), ("features", False, True),
                                                ("weights", False, False), ("anchored", True, False)])
def test_stage2_parameter_sets(which, net, scales):
    model = _model()
    ioc.stage2_parameters(model, which)
    assert all(p.requires_grad == net for p in model.cost.neural.net.parameters())
    assert model.cost.neural.log_sigma.requires_grad == scales
    assert model.cost.theta.requires_grad                       # the feature weights always learn
    assert all(p.requires_grad for p in model.start_net.parameters())
    assert load(None, [f"stage2.params={which}"]).stage2.params == which
    with pytest.raises(ValueError):
        ioc.stage2_parameters(model, "scales")


def test_fit_ioc_passes_the_switches_to_stage_2(tmp_path, monkeypatch):
    """`ebmtraj train` (experiment.fit_ioc) hands train.average and stage2.params to stage 2."""
    from ebmtraj import experiment

    from .test_ioc_cli import _config

    seen = {}
    real_train, real_params = ioc.train, ioc.stage2_parameters

    def spy_train(*args, **kwargs):
        seen["average"] = args[2].average                      # the TrainConfig
        seen["regulariser"] = kwargs["regulariser"] is not None
        return real_train(*args, **kwargs)

    def spy_params(model, which):
        seen["params"] = which
        return real_params(model, which)

    monkeypatch.setattr(ioc, "train", spy_train)
    monkeypatch.setattr(ioc, "stage2_parameters", spy_params)
    cfg = load(_config(tmp_path), ["train.average=0.8", "stage2.params=anchored", "pretrain.steps=5",
                                   "train.steps=2", "stage2.anchor=0.5"])
    summary = experiment.fit_ioc(cfg, log=lambda *_: None)
    assert seen == {"average": 0.8, "params": "anchored", "regulariser": True}
    assert "regulariser" in summary["last"]
    assert [h["step"] for h in summary["val_history"]] == [0, 2]


def test_the_anchor_is_stage_1s_likelihood():
    """stage2.anchor: ``nll_anchor`` is weight x the neural term's exact NLL (the loss stage 1
    minimises), differentiable, and configured by stage2.anchor >= 0."""
    model = _model()
    cond = _rows()
    cond["nominal"] = model.nominal(cond)
    z_obs = 0.3 * torch.randn(8, 40, 2, generator=torch.Generator().manual_seed(1))
    batch = {"x": z_obs, **cond}
    target = model.rollout(z_obs, cond)[0][..., :2] - cond["nominal"]
    ref, log_sigma = model.cost.neural.encode(cond)
    r = (target - ref) / log_sigma.exp()
    expected = (0.5 * r ** 2 + log_sigma).sum((1, 2)).mean()
    torch.testing.assert_close(ioc.nll_anchor(model, 2.0)(batch), 2 * expected)
    assert ioc.nll_anchor(model, 2.0)(batch).requires_grad
    assert load(None, ["stage2.anchor=0.1"]).stage2.anchor == 0.1
    with pytest.raises(ConfigError, match="anchor"):
        load(None, ["stage2.anchor=-1"])
