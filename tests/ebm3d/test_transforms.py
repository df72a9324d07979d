"""Robustness transforms do what they say: counts, subsets, distributions, reproducibility."""
import numpy as np
import pytest
import torch
from scipy import stats

from ebm3d.transforms import (
    JITTER_SIGMAS,
    MISSING_RATIOS,
    OUTLIER_RATIOS,
    AddOutliers,
    DropPoints,
    Jitter,
    add_outliers,
    drop_points,
    jitter,
)
from ebmcore.errors import DataError


def _cloud(n=1024, b=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (n, 3) if b is None else (b, n, 3)
    return torch.rand(shape, generator=g) * 2 - 1


# ---------------------------------------------------------------- missing points


@pytest.mark.parametrize("fraction,kept", [(0.0, 1024), (0.3, 717), (0.5, 512), (0.99, 11)])
def test_drop_points_counts(fraction, kept):
    assert drop_points(_cloud(), fraction).shape == (kept, 3)


def test_drop_points_keeps_a_subset_in_order():
    pts = _cloud()
    out = drop_points(pts, 0.6, torch.Generator().manual_seed(1))
    # Each kept point is an original point, none twice, in the original order.
    idx = [int(torch.nonzero((pts == p).all(dim=1))[0]) for p in out]
    assert len(set(idx)) == len(idx) == 1024 - 614
    assert idx == sorted(idx)


def test_drop_points_batched_draws_differ_per_cloud():
    pts = _cloud(b=1).repeat(3, 1, 1)
    out = drop_points(pts, 0.5, torch.Generator().manual_seed(2))
    assert out.shape == (3, 512, 3)
    assert not torch.equal(out[0], out[1]) and not torch.equal(out[1], out[2])


def test_drop_points_bad_fraction():
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        drop_points(_cloud(), 1.0)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        drop_points(_cloud(), -0.1)
    assert drop_points(_cloud(n=10), 0.99).shape == (1, 3)  # floor(9.9) = 9 removed


# ---------------------------------------------------------------- outliers


def test_add_outliers_counts_and_original_points_untouched():
    pts = _cloud(b=2)
    for ratio in (0.0, 0.01, 0.25, 1.0):
        out = add_outliers(pts, ratio)
        assert out.shape == (2, 1024 + int(ratio * 1024), 3)
        assert torch.equal(out[:, :1024], pts)


def test_outliers_come_from_n0_03():
    out = add_outliers(torch.zeros(10000, 3), 1.0, generator=torch.Generator().manual_seed(3))
    added = out[10000:].double().numpy().ravel()  # 30000 coordinates
    assert abs(added.mean()) < 0.01
    assert added.std() == pytest.approx(0.3, rel=0.02)
    # Kolmogorov-Smirnov against N(0, 0.3^2): a wrong std (0.25 or 0.35) fails this by far.
    assert stats.kstest(added, "norm", args=(0.0, 0.3)).pvalue > 0.01
    assert stats.kstest(added, "norm", args=(0.0, 0.35)).pvalue < 1e-6


def test_add_outliers_bad_ratio():
    with pytest.raises(ValueError, match="ratio"):
        add_outliers(_cloud(), -0.1)
    with pytest.raises(ValueError, match="std"):
        add_outliers(_cloud(), 0.1, std=float("nan"))


# ---------------------------------------------------------------- jitter


@pytest.mark.parametrize("sigma", [0.001, 0.01, 0.1])
def test_jitter_std_matches_sigma(sigma):
    pts = _cloud(b=8)
    out = jitter(pts, sigma, generator=torch.Generator().manual_seed(4))
    noise = (out - pts).double()
    assert out.shape == pts.shape
    assert noise.std().item() == pytest.approx(sigma, rel=0.02)
    assert abs(noise.mean().item()) < 0.05 * sigma


def test_jitter_zero_and_clip():
    pts = _cloud()
    assert torch.equal(jitter(pts, 0.0), pts)
    clipped = jitter(pts, 0.1, clip=0.05, generator=torch.Generator().manual_seed(5)) - pts
    assert clipped.abs().max().item() <= 0.05 + 1e-6
    with pytest.raises(ValueError, match="sigma"):
        jitter(pts, -0.01)


# ---------------------------------------------------------------- shared


def test_bad_points_raise_data_error():
    with pytest.raises(DataError, match="NaN"):
        jitter(torch.tensor([[0.0, float("nan"), 0.0]]), 0.1)
    with pytest.raises(DataError, match=r"\(N, 3\)"):
        drop_points(torch.zeros(5, 2), 0.1)
    with pytest.raises(DataError, match=r"\(N, 3\)"):
        add_outliers(torch.zeros(0, 3), 0.1)


def test_classes_are_seeded_and_reproducible():
    pts = _cloud()
    for make in (lambda: DropPoints(0.3, seed=7), lambda: AddOutliers(0.5, seed=7), lambda: Jitter(0.01, seed=7)):
        t1, t2 = make(), make()
        a, b = t1(pts), t2(pts)
        assert torch.equal(a, b)  # same seed, same draw
        assert not torch.equal(t1(pts), a)  # the next call draws afresh
    assert "fraction=0.3" in repr(DropPoints(0.3))


def test_grids_match_the_study():
    assert MISSING_RATIOS[0] == 0.0 and MISSING_RATIOS[-1] == 0.99 and len(MISSING_RATIOS) == 20
    assert list(MISSING_RATIOS) == sorted(MISSING_RATIOS)
    assert OUTLIER_RATIOS[0] == 0.0 and OUTLIER_RATIOS[-1] == 1.0
    assert JITTER_SIGMAS == (0.0, 0.001, 0.003, 0.005, 0.007, 0.01, 0.02, 0.05, 0.1)
    np.testing.assert_allclose(
        [drop_points(_cloud(), f).shape[0] for f in (0.0, 0.5, 0.9)], [1024, 512, 103]
    )
