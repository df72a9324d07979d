"""The joint repair's contact test and rounds, and the sampling chains' starts (issue 12), on
constructed scenes (fast)."""
from __future__ import annotations

import pytest
import torch

from ebmcore.errors import ConfigError
from ebmtraj import ioc
from ebmtraj import prediction as P
from ebmtraj.interaction import box_contact, disc_contact
from ebmtraj.metrics import collision_rate

from .test_ioc import _encounter, _world

CAR = torch.tensor([4.5, 1.8])


def _pair(dx: float, dy: float):
    """One row at the origin, one live neighbour whose centre is (dx, dy) away, both heading
    along x (one step): the args of the contact tests."""
    return (torch.zeros(1, 1, 2), torch.zeros(1, 1), CAR[None], torch.tensor([[[[dx, dy]]]]),
            torch.zeros(1, 1, 1), CAR[None, None], torch.ones(1, 1, dtype=torch.bool))


def test_box_contact_catches_the_corner_overlaps_the_discs_miss():
    corner = _pair(4.35, 1.65)                      # the rectangles' corners overlap by 0.15 m
    assert bool(box_contact(*corner)) and not bool(disc_contact(*corner))
    pos = torch.tensor([[0.0, 0.0], [4.35, 1.65]], dtype=torch.float64)[None, :, None]
    assert collision_rate(pos, torch.zeros(1, 2, 1, dtype=torch.float64),
                          CAR.double().expand(1, 2, 2))["scene"] == 1.0    # the metric agrees
    apart = _pair(4.6, 1.65)
    assert not bool(box_contact(*apart))
    # grown by the repair's margin, the overlap term's discs reach the corners
    c, h, s, nc, nh, ns, live = corner
    m = ioc.PredictConfig().repair_margin
    assert bool(disc_contact(c, h, s + m, nc, nh, ns + m, live))


def _collides(pred, cond) -> float:
    pos, head = _world(pred, cond)
    return collision_rate(pos, head, torch.tensor([[4.5, 1.8]] * 2, dtype=torch.float64)[None])["scene"]


def test_repair_rounds_go_on_until_the_contact_is_gone():
    torch.manual_seed(0)
    model = ioc.build_model(ioc.ModelConfig(start_net=False), 10, 40)
    model.eval()
    cond = _encounter()                                # a follower closing fast on a slow leader
    cond["nominal"] = model.nominal(cond)
    pc = ioc.PredictConfig(mode="adam", samples=1, init="nominal", opt_steps=60, adam_lr=0.2,
                           interaction_weight=0.01, seed=1, joint_start="independent")
    assert _collides(ioc.predict(model, cond, pc), cond) == 1.0
    joint = lambda steps, **kw: _collides(ioc.predict_joint(model, cond, ioc.PredictConfig(
        **{**pc.__dict__, "joint_steps": steps, **kw})), cond)
    assert joint(10) == 1.0             # one round at this weak pair weight leaves them in contact
    assert joint(80) == 0.0             # rounds until the contact is gone, the weight x2 each round
    assert joint(80, repair_growth=1.0) == 1.0          # without the growing weight the rounds stall
    assert joint(80, repair_round_steps=80) == 1.0      # and so does one long round


def test_sample_starts():
    g = torch.Generator().manual_seed(0)
    e = P.start_noise(3, 5, (40, 2), g, kind="mode").view(3, 5, 40, 2)
    assert torch.equal(e[:, 0], torch.zeros(3, 40, 2))                       # chain 0 at the start
    assert torch.equal(e[:, 1], -e[:, 2]) and torch.equal(e[:, 3], -e[:, 4])  # antithetic pairs
    assert float(e[:, 1].std()) > 0.5
    a = P.start_noise(2, 5, (40, 2), g, kind="antithetic").view(2, 5, 40, 2)
    assert torch.equal(a[:, 0], -a[:, 1]) and float(a[:, 4].abs().sum()) > 0
    # sampling with no Langevin step: the chains' mean is the minimum-cost z, chain 0 is it
    torch.manual_seed(0)
    model = ioc.build_model(ioc.ModelConfig(start_net=False), 10, 40)
    model.eval()
    cond = _encounter()
    cond["nominal"] = model.nominal(cond)
    pc = ioc.PredictConfig(mode="sample", samples=5, steps=0, init="mincost", init_std=2.0, opt_steps=5, seed=2)
    mincost = ioc.predict(model, cond, ioc.PredictConfig(**{**pc.__dict__, "mode": "adam", "samples": 1}))["z"]
    z = ioc.predict(model, cond, ioc.PredictConfig(**{**pc.__dict__, "sample_starts": "mode"}))["z"]
    assert torch.allclose(z[:, 0], mincost[:, 0], atol=1e-6)
    assert torch.allclose(z.mean(1), mincost[:, 0], atol=1e-5)
    assert float((z[:, 1] - z[:, 0]).abs().mean()) > 0.5


def test_repair_and_sample_settings_are_validated():
    with pytest.raises(ConfigError, match="sample_starts"):
        ioc.PredictConfig(sample_starts="sobol").validate()
    with pytest.raises(ConfigError, match="repair_contact"):
        ioc.PredictConfig(repair_contact="circle").validate()
    with pytest.raises(ConfigError, match="repair_growth"):
        ioc.PredictConfig(repair_growth=0.5).validate()
