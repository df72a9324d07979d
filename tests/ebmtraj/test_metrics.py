"""Metrics and baselines on hand-made examples with known answers."""
import math

import pytest
import torch
from shapely.geometry import LineString

from ebmcore.errors import DataError
from ebmtraj.baselines import constant_acceleration, constant_velocity, evaluate
from ebmtraj.data.lanes import Lane, LaneMap
from ebmtraj.metrics import (ade_fde, box_corners, boxes_overlap, collision_rate, min_ade_fde,
                             offroad_rate, rmse_at)


def _line(T, offset):
    """(T, 2) ground truth along x, and a prediction displaced sideways by ``offset``."""
    x = torch.arange(1, T + 1, dtype=torch.float64)
    gt = torch.stack([x, torch.zeros(T, dtype=torch.float64)], -1)
    return gt + torch.tensor([0.0, offset], dtype=torch.float64), gt


def test_rmse_at_horizons_ngsim_convention():
    # Two samples with errors 1 m and 3 m at every frame: RMSE = sqrt((1 + 9) / 2).
    p1, g1 = _line(40, 1.0)
    p2, g2 = _line(40, 3.0)
    pred, gt = torch.stack([p1, p2]), torch.stack([g1, g2])
    r = rmse_at(pred, gt)
    assert set(r) == {1.0, 2.0, 3.0, 4.0}
    assert all(v == pytest.approx(math.sqrt(5.0)) for v in r.values())
    # An error that grows with time is read at frame round(h / dt) - 1.
    grow = gt.clone()
    grow[..., 1] = torch.arange(1, 41, dtype=torch.float64) * 0.1  # 0.1 m per frame
    r = rmse_at(grow, gt)
    assert r[1.0] == pytest.approx(1.0) and r[4.0] == pytest.approx(4.0)
    # The mask leaves samples out.
    assert rmse_at(pred, gt, mask=torch.tensor([True, False]))[2.0] == pytest.approx(1.0)
    with pytest.raises(DataError, match="horizon 5.0 s"):
        rmse_at(pred, gt, horizons=(5.0,))
    with pytest.raises(DataError):
        rmse_at(pred[:, :10], gt)


def test_ade_fde_and_min_over_samples():
    gt = torch.zeros(1, 4, 2, dtype=torch.float64)
    pred = torch.tensor([[[0, 0], [0, 1], [0, 2], [0, 3]]], dtype=torch.float64)
    ade, fde = ade_fde(pred, gt)
    assert ade == pytest.approx(1.5) and fde == pytest.approx(3.0)
    # K = 3 samples: ADEs 1.5, 0.5 (constant 0.5 off) and 2.0 (all wrong but the end).
    s = torch.stack([pred[0], torch.full((4, 2), 0.0, dtype=torch.float64) + torch.tensor(
        [0.0, 0.5], dtype=torch.float64), torch.tensor([[0, 3], [0, 3], [0, 2], [0, 0]],
                                                       dtype=torch.float64)])[None]
    made, mfde = min_ade_fde(s, gt)
    assert made == pytest.approx(0.5) and mfde == pytest.approx(0.0)
    with pytest.raises(DataError):
        min_ade_fde(s[:, :, :3], gt)


def test_box_overlap_separating_axis():
    def box(x, y, h, length=4.0, width=2.0):
        return box_corners(torch.tensor([x, y], dtype=torch.float64),
                           torch.tensor(h, dtype=torch.float64),
                           torch.tensor([length, width], dtype=torch.float64))

    corners = box(0, 0, 0)
    assert torch.allclose(corners.min(0).values, torch.tensor([-2.0, -1.0], dtype=torch.float64))
    assert boxes_overlap(box(0, 0, 0), box(3.9, 0, 0))
    assert not boxes_overlap(box(0, 0, 0), box(4.1, 0, 0))
    assert not boxes_overlap(box(0, 0, 0), box(0, 2.1, 0))
    # Axis-aligned bounding boxes would overlap here, the rotated rectangles do not.
    assert not boxes_overlap(box(0, 0, math.pi / 4, 4, 1), box(2.2, -2.2, math.pi / 4, 4, 1))
    assert boxes_overlap(box(0, 0, math.pi / 4, 4, 1), box(1.0, 1.0, math.pi / 4, 4, 1))
    # The reference point: a front-bumper position moves the box back by ref_offset.
    front = box_corners(torch.tensor([2.0, 0.0], dtype=torch.float64),
                        torch.tensor(0.0, dtype=torch.float64),
                        torch.tensor([4.0, 2.0], dtype=torch.float64),
                        torch.tensor(2.0, dtype=torch.float64))
    assert torch.allclose(front, corners)


def test_collision_rate_counts_agents_and_scenes():
    T = 5
    pos = torch.zeros(2, 3, T, 2, dtype=torch.float64)
    head = torch.zeros(2, 3, T, dtype=torch.float64)
    size = torch.tensor([4.0, 2.0], dtype=torch.float64).expand(2, 3, 2)
    # Scene 0: agents 0 and 1 meet at the last frame; agent 2 stays far away.
    pos[0, 0, :, 0] = torch.arange(T) * 1.0
    pos[0, 1, :, 0] = 20.0 - torch.arange(T) * 3.5
    pos[0, 2, :, 1] = 50.0
    # Scene 1: agent 1 would overlap agent 0 but is padding.
    pos[1, 2, :, 1] = 10.0
    mask = torch.tensor([[True, True, True], [True, False, True]])
    r = collision_rate(pos, head, size, mask)
    assert r["agent"] == pytest.approx(2 / 5) and r["scene"] == pytest.approx(1 / 2)
    r = collision_rate(pos, head, size, torch.ones(2, 3, dtype=torch.bool))
    assert r["agent"] == pytest.approx(4 / 6) and r["scene"] == pytest.approx(1.0)


def test_offroad_rate_against_lanes():
    lane = Lane(1, LineString([(0, 0), (100, 0)]), 3.5)
    lanes = LaneMap([lane])
    pos = torch.zeros(2, 10, 2, dtype=torch.float64)
    pos[..., 0] = torch.arange(10) * 5.0
    pos[1, 5:, 1] = 3.0  # 1.25 m outside the 1.75 m half width: off-road beyond 0.5 m
    r = offroad_rate(pos, lanes, tolerance=0.5)
    assert r["trajectory"] == pytest.approx(0.5) and r["point"] == pytest.approx(5 / 20)
    assert offroad_rate(pos, lanes, tolerance=1.5)["trajectory"] == 0.0
    assert offroad_rate(pos, [lanes, None])["trajectory"] == 0.0


def test_constant_velocity_and_acceleration():
    hist = torch.zeros(2, 10, 6, dtype=torch.float64)
    hist[:, -1] = torch.tensor([[1.0, 2.0, 10.0, math.pi / 2, 0.0, 0.0],
                                [0.0, 0.0, 4.0, 0.0, -2.0, 0.0]], dtype=torch.float64)
    cv = constant_velocity(hist, 40)
    assert cv.shape == (2, 40, 6)
    assert torch.allclose(cv[0, -1, :2], torch.tensor([1.0, 42.0], dtype=torch.float64))
    assert torch.allclose(cv[1, 9, :2], torch.tensor([4.0, 0.0], dtype=torch.float64))
    ca = constant_acceleration(hist, 40)
    # 4 m/s braking at 2 m/s^2 stops after 2 s and 4 m, then stays: no reversing.
    assert ca[1, 9, 0].item() == pytest.approx(4 * 1.0 - 0.5 * 2 * 1.0)
    assert torch.allclose(ca[1, 19:, 0], torch.full((21,), 4.0, dtype=torch.float64))
    assert (ca[1, 19:, 2] == 0).all() and (ca[1, 20:, 4] == 0).all()
    assert torch.allclose(ca[0], cv[0])  # zero acceleration: the same as constant velocity


def test_evaluate_on_a_tiny_scene_set():
    N, A, H, F = 3, 2, 10, 40
    states = torch.zeros(N, A, H + F, 6)
    t = torch.arange(H + F, dtype=torch.float32) * 0.1
    states[..., 0] = 10.0 * t  # 10 m/s along x
    states[..., 2] = 10.0
    states[:, 1, :, 1] = 5.0  # the neighbour one lane over
    scenes = {"states": states, "positions_raw": states[..., :2].clone(), "history": H,
              "mask": torch.ones(N, A, dtype=torch.bool), "size": torch.tensor([4.0, 2.0])
              .expand(N, A, 2), "ref_offset": torch.zeros(N, A), "dt": 0.1}
    res = evaluate(constant_velocity(states[:, :, :H].double(), F), scenes)
    assert all(v == pytest.approx(0.0, abs=1e-5) for v in res["rmse"].values())
    assert res["collision"]["agent"] == 0.0 and res["collision_ground_truth"]["agent"] == 0.0
