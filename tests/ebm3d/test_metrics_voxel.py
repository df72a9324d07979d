"""Voxel metrics: IoU and per-voxel error hand cases, inception score extremes, nearest neighbours."""
import math

import numpy as np
import pytest
import torch

from ebm3d.metrics import (
    classifier_probabilities,
    inception_score,
    nearest_training_neighbours,
    per_voxel_error,
    voxel_iou,
)
from ebmcore.errors import DataError


def _grid(*occupied, size=4, value=1.0):
    g = torch.zeros(1, 1, size, size, size)
    for idx in occupied:
        g[(0, 0) + idx] = value
    return g


# ---------------------------------------------------------------- IoU


def test_iou_hand_cases():
    pred = _grid((0, 0, 0), (1, 1, 1))
    target = _grid((1, 1, 1), (2, 2, 2))
    assert voxel_iou(pred, target).item() == pytest.approx(1 / 3)  # 1 shared of 3 occupied
    assert voxel_iou(target, target).item() == 1.0
    assert voxel_iou(_grid(), _grid()).item() == 1.0  # both empty
    assert voxel_iou(_grid((0, 0, 0)), _grid((3, 3, 3))).item() == 0.0


def test_iou_binarises_at_half_and_is_batched():
    pred = torch.cat([_grid((0, 0, 0), value=0.6), _grid((0, 0, 0), value=0.5)])
    target = torch.cat([_grid((0, 0, 0)), _grid((0, 0, 0))])
    np.testing.assert_allclose(voxel_iou(pred, target).numpy(), [1.0, 0.0])
    with pytest.raises(DataError, match="must share a shape"):
        voxel_iou(pred, target[:1])


# ---------------------------------------------------------------- per-voxel error


def test_per_voxel_error_hand_cases():
    target = _grid((0, 0, 0), (1, 1, 1))
    pred = target.clone()
    pred[0, 0, 0, 0, 0] = 0.2  # error 0.8
    pred[0, 0, 3, 3, 3] = 0.4  # error 0.4
    assert per_voxel_error(pred, target).item() == pytest.approx(1.2 / 64)
    assert per_voxel_error(pred, target, squared=True).item() == pytest.approx((0.64 + 0.16) / 64)
    mask = torch.zeros_like(target, dtype=torch.bool)
    mask[0, 0, 0, 0, 0] = mask[0, 0, 2, 2, 2] = True  # two "corrupted" voxels, errors 0.8 and 0
    assert per_voxel_error(pred, target, mask=mask).item() == pytest.approx(0.4)
    # Binarising first: 0.2 -> 0 (error 1), 0.4 -> 0 (error 0).
    assert per_voxel_error(pred, target, threshold=0.5).item() == pytest.approx(1 / 64)


def test_per_voxel_error_bad_mask():
    g = _grid((0, 0, 0))
    with pytest.raises(DataError, match="selects no voxels"):
        per_voxel_error(g, g, mask=torch.zeros_like(g, dtype=torch.bool))
    with pytest.raises(DataError, match="mask: shape"):
        per_voxel_error(g, g, mask=torch.ones(1, 1, 2, 2, 2, dtype=torch.bool))
    with pytest.raises(DataError, match="non-finite"):
        per_voxel_error(g * float("nan"), g)


# ---------------------------------------------------------------- inception score


def test_inception_score_extremes():
    n_classes, splits = 10, 10
    # Each split holds one confident prediction of every class: p(y) uniform, IS = 10 exactly.
    one_hot = torch.eye(n_classes).repeat(splits, 1)
    res = inception_score(one_hot, splits=splits)
    assert res.mean == pytest.approx(n_classes)
    assert res.std == pytest.approx(0.0, abs=1e-9)
    # The same prediction for every sample: KL is 0, IS = 1.
    constant = torch.softmax(torch.randn(1, 7), dim=1).repeat(50, 1)
    assert inception_score(constant).mean == pytest.approx(1.0)
    # Always one class, confidently: also 1.
    assert inception_score(torch.eye(3)[[0] * 30]).mean == pytest.approx(1.0)


def test_inception_score_hand_case_two_classes():
    probs = [[1.0, 0.0], [0.5, 0.5]]
    # p(y) = (0.75, 0.25); KL1 = ln(4/3); KL2 = 0.5 ln(2/3) + 0.5 ln 2.
    kl = (math.log(4 / 3) + 0.5 * math.log(2 / 3) + 0.5 * math.log(2)) / 2
    assert inception_score(probs, splits=1).mean == pytest.approx(math.exp(kl))


def test_inception_score_split_spread():
    # First half of the splits: 2 classes balanced (IS 2); second half: one class (IS 1).
    half_a = torch.eye(2).repeat(10, 1)
    half_b = torch.eye(2)[[0] * 20]
    res = inception_score(torch.cat([half_a, half_b]), splits=2)
    assert res.mean == pytest.approx(1.5)
    assert res.std == pytest.approx(0.5)


def test_inception_score_bad_input():
    with pytest.raises(DataError, match="sum to 1"):
        inception_score(torch.ones(20, 3))
    with pytest.raises(ValueError, match="N >= splits"):
        inception_score(torch.eye(3), splits=10)


def test_classifier_probabilities_with_a_real_module():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 5))
    net.train()
    voxels = torch.rand(7, 1, 4, 4, 4)
    probs = classifier_probabilities(net, voxels, batch_size=3)
    with torch.no_grad():
        want = torch.softmax(net((voxels > 0.5).float()).double(), dim=1)
    torch.testing.assert_close(probs, want)
    assert net.training  # mode restored
    assert inception_score(probs, splits=7).mean >= 1.0


# ---------------------------------------------------------------- nearest training neighbours


def test_nearest_training_neighbours_iou_and_l2():
    gen = torch.Generator().manual_seed(1)
    train = torch.rand(9, 1, 6, 6, 6, generator=gen) > 0.6  # bool grids
    samples = train[[3, 7]].float().clone()
    samples[0, 0, 0, 0, :2] = 1 - samples[0, 0, 0, 0, :2]  # flip two voxels of the first
    res = nearest_training_neighbours(samples, train, metric="iou", chunk_size=2)
    assert res.index.tolist() == [3, 7]
    brute = torch.stack([voxel_iou(samples[i : i + 1].expand(9, -1, -1, -1, -1), train.float()) for i in range(2)])
    torch.testing.assert_close(res.value, brute.max(dim=1).values)
    assert res.value[1].item() == 1.0

    res = nearest_training_neighbours(samples, train, metric="l2", chunk_size=4)
    assert res.index.tolist() == [3, 7]
    np.testing.assert_allclose(res.value.numpy(), [math.sqrt(2), 0.0], atol=1e-6)


def test_nearest_training_neighbours_bad_input():
    with pytest.raises(ValueError, match="metric"):
        nearest_training_neighbours(torch.zeros(1, 1, 2, 2, 2), torch.zeros(1, 1, 2, 2, 2), metric="cosine")
    with pytest.raises(DataError, match="share the grid shape"):
        nearest_training_neighbours(torch.zeros(1, 1, 2, 2, 2), torch.zeros(1, 1, 3, 3, 3))
