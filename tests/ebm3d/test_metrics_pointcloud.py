"""Point-cloud metrics against independent references: brute-force numpy CD, POT's exact EMD,
hand-computed MMD / COV / 1-NNA, and JSD's known extremes."""
import math

import numpy as np
import ot
import pytest
import torch
from scipy.spatial.distance import jensenshannon

from ebm3d.metrics import (
    approxmatch_emd,
    chamfer_distance,
    compute_all_metrics,
    emd,
    jensen_shannon,
    jsd_between_sets,
    mmd_cov,
    one_nn_accuracy,
    pairwise_chamfer,
    pairwise_emd,
)
from ebm3d.metrics.pointcloud import grid_centres
from ebmcore.errors import DataError

pytestmark = pytest.mark.usefixtures("one_thread")


def _rng_sets(seed, b, n, scale=1.0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((b, n, 3)) * scale).astype(np.float64)


def _numpy_chamfer(a, b):
    """Brute force: every pair of points, squared distances, no matrix tricks."""
    d2 = np.array([[np.sum((p - q) ** 2) for q in b] for p in a])
    return d2.min(axis=1).mean() + d2.min(axis=0).mean()


# ---------------------------------------------------------------- Chamfer


def test_chamfer_hand_case():
    a = torch.tensor([[[0.0, 0.0, 0.0]]])
    b = torch.tensor([[[1.0, 0.0, 0.0], [2.0, 0.0, 0.0]]])
    # a -> b: nearest is 1 away, squared 1; b -> a: squared 1 and 4, mean 2.5.
    assert chamfer_distance(a, b).item() == pytest.approx(3.5)
    assert chamfer_distance(b, a).item() == pytest.approx(3.5)


def test_chamfer_matches_brute_force_numpy():
    a = _rng_sets(0, 3, 17)
    b = _rng_sets(1, 3, 11)  # different point counts
    got = chamfer_distance(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    want = [_numpy_chamfer(a[i], b[i]) for i in range(3)]
    np.testing.assert_allclose(got, want, rtol=1e-10)


@pytest.mark.parametrize("max_elements", [20 * 13, 10**6])  # one pair per block, and all at once
def test_pairwise_chamfer_matches_brute_force(max_elements):
    A = _rng_sets(2, 5, 20)
    B = _rng_sets(3, 4, 13)
    got = pairwise_chamfer(torch.from_numpy(A), torch.from_numpy(B), max_elements=max_elements).numpy()
    want = np.array([[_numpy_chamfer(a, b) for b in B] for a in A])
    np.testing.assert_allclose(got, want, rtol=1e-9)


def test_pairwise_chamfer_symmetric_mode_float32():
    A = _rng_sets(4, 7, 32)
    got = pairwise_chamfer(torch.from_numpy(A).float(), max_elements=3 * 32 * 32).numpy()
    want = np.array([[0.0 if i == j else _numpy_chamfer(a, b) for j, b in enumerate(A)] for i, a in enumerate(A)])
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
    assert np.all(np.diag(got) == 0)


def test_chamfer_bad_input():
    with pytest.raises(DataError, match="non-finite"):
        chamfer_distance(torch.tensor([[[0.0, float("nan"), 0.0]]]), torch.zeros(1, 2, 3))
    with pytest.raises(DataError, match=r"\(B, N, 3\)"):
        pairwise_chamfer(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="batch sizes differ"):
        chamfer_distance(torch.zeros(2, 5, 3), torch.zeros(3, 5, 3))


# ---------------------------------------------------------------- EMD


def _pot_emd(a, b):
    """POT's exact optimal transport between uniform point masses, Euclidean ground cost."""
    cost = ot.dist(a, b, metric="euclidean")
    return ot.emd2(np.full(len(a), 1 / len(a)), np.full(len(b), 1 / len(b)), cost)


def test_exact_emd_matches_pot():
    a = _rng_sets(5, 4, 40)
    b = _rng_sets(6, 4, 40, scale=0.7) + 0.2
    got = emd(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    want = [_pot_emd(a[i], b[i]) for i in range(4)]
    np.testing.assert_allclose(got, want, rtol=1e-9)


def test_exact_emd_translation_and_permutation():
    a = torch.from_numpy(_rng_sets(7, 2, 50))
    shift = torch.tensor([0.3, -0.4, 0.0], dtype=torch.float64)  # length 0.5
    np.testing.assert_allclose(emd(a, a + shift).numpy(), [0.5, 0.5], rtol=1e-9)
    perm = torch.randperm(50, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(emd(a, a[:, perm]).numpy(), [0.0, 0.0], atol=1e-12)


@pytest.mark.parametrize("workers", [1, 2])
def test_pairwise_emd_matches_pot(workers):
    A = _rng_sets(8, 3, 24)
    B = _rng_sets(9, 4, 24, scale=1.5)
    got = pairwise_emd(torch.from_numpy(A), torch.from_numpy(B), workers=workers).numpy()
    want = np.array([[_pot_emd(a, b) for b in B] for a in A])
    np.testing.assert_allclose(got, want, rtol=1e-9)
    sym = pairwise_emd(torch.from_numpy(A), workers=workers).numpy()
    want_sym = np.array([[_pot_emd(a, b) for b in A] for a in A])
    np.testing.assert_allclose(sym, want_sym, rtol=1e-9, atol=1e-7)  # POT: sqrt of a rounded 0 on the diagonal


def test_pot_solver_matches_scipy_assignment():
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    A = _rng_sets(17, 3, 30)
    B = _rng_sets(18, 2, 30, scale=0.5)
    got = pairwise_emd(torch.from_numpy(A), torch.from_numpy(B), solver="pot", workers=2).numpy()
    want = np.zeros((3, 2))
    for i, j in np.ndindex(3, 2):
        d = cdist(A[i], B[j])
        rows, cols = linear_sum_assignment(d)
        want[i, j] = d[rows, cols].mean()
    np.testing.assert_allclose(got, want, rtol=1e-9)
    a = torch.from_numpy(A[:1])
    np.testing.assert_allclose(emd(a, a + torch.tensor([0.0, 0.0, 0.25]), solver="pot").numpy(), [0.25], rtol=1e-9)


def test_approxmatch_is_close_to_exact_and_labelled():
    a = torch.from_numpy(_rng_sets(10, 4, 128)).float()
    b = torch.from_numpy(_rng_sets(11, 4, 128, scale=0.6)).float()
    exact = emd(a, b).numpy()
    approx = approxmatch_emd(a, b).double().numpy()
    # A full soft matching can only cost more than the optimal one; the annealing keeps it near.
    assert np.all(approx >= exact * 0.99)
    assert np.all(approx <= exact * 1.5)
    assert np.all(approxmatch_emd(a, a).numpy() < 1e-3 * exact.mean())
    assert "APPROXIMATE" in approxmatch_emd.__doc__
    np.testing.assert_allclose(emd(a, b, method="approxmatch").numpy(), approx, rtol=1e-6)


def test_emd_bad_input():
    with pytest.raises(ValueError, match="equal size"):
        emd(torch.zeros(1, 5, 3), torch.zeros(1, 6, 3))
    with pytest.raises(ValueError, match="equal size"):
        pairwise_emd(torch.zeros(2, 5, 3), torch.zeros(2, 6, 3))
    with pytest.raises(ValueError, match="unknown EMD method"):
        pairwise_emd(torch.zeros(2, 5, 3), method="sinkhorn")
    with pytest.raises(ValueError, match="unknown exact EMD solver"):
        emd(torch.zeros(1, 5, 3), torch.zeros(1, 5, 3), solver="lapjv")
    with pytest.raises(DataError, match="non-finite"):
        emd(torch.full((1, 4, 3), float("inf")), torch.zeros(1, 4, 3))


# ---------------------------------------------------------------- MMD / COV / 1-NNA


def test_mmd_cov_hand_cases():
    # 2 samples (rows) x 2 references (columns).
    d_sr = [[1.0, 4.0], [2.0, 3.0]]
    # Per reference, nearest sample: r1 -> 1 (s1), r2 -> 3 (s2); MMD = (1 + 3) / 2.
    # Per sample, nearest reference: s1 -> r1, s2 -> r1; one of two references covered.
    res = mmd_cov(d_sr)
    assert res.mmd == pytest.approx(2.0)
    assert res.cov == pytest.approx(0.5)
    # 3 samples x 2 references: MMD = (min(1,8,7) + min(9,2,6)) / 2 = 1.5; s1->r1, s2,s3->r2: COV 1.
    res = mmd_cov([[1.0, 9.0], [8.0, 2.0], [7.0, 6.0]])
    assert (res.mmd, res.cov) == (pytest.approx(1.5), pytest.approx(1.0))


def test_one_nn_accuracy_hand_cases():
    d_sr = [[1.0, 4.0], [2.0, 3.0]]
    d_rr = [[0.0, 0.5], [0.5, 0.0]]
    # r1 -> r2 (0.5, right), r2 -> r1 (right); s1 -> r1 (1 < 5, wrong); s2 -> r1 (2 < 5, wrong).
    assert one_nn_accuracy([[0.0, 5.0], [5.0, 0.0]], d_sr, d_rr) == pytest.approx(0.5)
    # Samples close to each other: s1 <-> s2 at 0.1, so every point is classified right.
    assert one_nn_accuracy([[0.0, 0.1], [0.1, 0.0]], d_sr, d_rr) == pytest.approx(1.0)
    # The diagonal is ignored even when it is not zero.
    assert one_nn_accuracy([[9.0, 0.1], [0.1, 9.0]], d_sr, [[9.0, 0.5], [0.5, 9.0]]) == pytest.approx(1.0)


def test_one_nn_accuracy_matches_loop_reference():
    rng = np.random.default_rng(12)
    X = rng.standard_normal((9, 4))  # 4 samples then 5 references, in some feature space
    D = np.linalg.norm(X[:, None] - X[None], axis=-1)
    s, r = slice(0, 4), slice(4, 9)
    labels = np.array([0] * 4 + [1] * 5)
    correct = 0
    for i in range(9):
        others = [j for j in range(9) if j != i]
        nearest = min(others, key=lambda j: D[i, j])
        correct += labels[nearest] == labels[i]
    assert one_nn_accuracy(D[s, s], D[s, r], D[r, r]) == pytest.approx(correct / 9)


def test_set_metric_bad_input():
    with pytest.raises(DataError, match="square"):
        one_nn_accuracy(np.zeros((2, 3)), np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="shapes disagree"):
        one_nn_accuracy(np.zeros((3, 3)), np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(DataError, match="non-finite"):
        mmd_cov([[1.0, float("nan")]])


# ---------------------------------------------------------------- JSD


def test_jensen_shannon_matches_scipy():
    rng = np.random.default_rng(13)
    p, q = rng.random(50), rng.random(50)
    assert jensen_shannon(p, q) == pytest.approx(jensenshannon(p, q, base=2) ** 2, rel=1e-9)
    assert jensen_shannon([1, 0], [0, 1]) == pytest.approx(1.0)


def test_jsd_identical_and_disjoint_sets():
    rng = np.random.default_rng(14)
    clouds = rng.uniform(-0.3, 0.3, (4, 256, 3))
    assert jsd_between_sets(clouds, clouds.copy()) == pytest.approx(0.0, abs=1e-12)
    # The same occupancy in a different order and grouping of clouds is still identical.
    assert jsd_between_sets(clouds, clouds.reshape(2, 512, 3)[:, ::-1]) == pytest.approx(0.0, abs=1e-12)
    near = rng.uniform(0.05, 0.3, (3, 100, 3))
    far = -near  # the opposite octant: no shared cell
    assert jsd_between_sets(near, far) == pytest.approx(1.0)
    assert jsd_between_sets(near, far, base=math.e) == pytest.approx(math.log(2))
    assert jsd_between_sets(near * 2, far * 2, extent=1.0) == pytest.approx(1.0)


def test_jsd_grid_and_out_of_cube_warning():
    cube = grid_centres(28, 0.5, in_sphere=False)
    sphere = grid_centres(28, 0.5, in_sphere=True)
    assert cube.shape == (28**3, 3) and cube.min() == -0.5 and cube.max() == 0.5
    # Centres span the cube edge to edge, so the sphere keeps about (pi/6) / (1 + 1/27)^3 of them.
    assert abs(len(sphere) / len(cube) - (math.pi / 6) / (28 / 27) ** 3) < 0.02
    with pytest.warns(UserWarning, match="outside the JSD grid"):
        jsd_between_sets(np.full((1, 4, 3), 2.0), np.zeros((1, 4, 3)))


# ---------------------------------------------------------------- the whole protocol


def test_compute_all_metrics_extremes():
    rng = np.random.default_rng(15)
    # "Shapes": noisy copies of a few template clouds in the unit cube.
    templates = rng.uniform(-0.4, 0.4, (6, 64, 3))
    refs = templates
    metrics, mats = compute_all_metrics(refs.copy(), refs, emd_method="exact")
    for d in ("CD", "EMD"):
        assert metrics[f"MMD-{d}"] == pytest.approx(0.0, abs=1e-9)
        assert metrics[f"COV-{d}"] == 1.0
        # Every sample's nearest neighbour is its identical reference twin: all misclassified.
        assert metrics[f"1-NNA-{d}"] == 0.0
    assert metrics["JSD"] == pytest.approx(0.0, abs=1e-12)
    assert mats["EMD"].sr.shape == (6, 6)

    blob = rng.normal(0, 0.02, (6, 64, 3))  # every sample collapsed at the centre
    metrics, mats = compute_all_metrics(blob, refs, emd_method="exact", workers=2)
    for d in ("CD", "EMD"):
        assert metrics[f"1-NNA-{d}"] == 1.0
        assert metrics[f"COV-{d}"] <= 0.5
        np.testing.assert_allclose(metrics[f"MMD-{d}"], mats[d].sr.min(0).values.mean().item())
    assert metrics["JSD"] > 0.5
    ref_emd = np.array([[_pot_emd(s, r) for r in refs] for s in blob])
    np.testing.assert_allclose(mats["EMD"].sr.numpy(), ref_emd, rtol=1e-9)
    cd = np.array([[_numpy_chamfer(s, r) for r in refs] for s in blob])
    np.testing.assert_allclose(mats["CD"].sr.numpy(), cd, rtol=1e-4)


def test_compute_all_metrics_approxmatch_and_cd_only():
    rng = np.random.default_rng(16)
    refs = rng.uniform(-0.4, 0.4, (5, 48, 3))
    samples = np.clip(refs + rng.normal(0, 0.05, refs.shape), -0.5, 0.5)
    exact, _ = compute_all_metrics(samples, refs, emd_method="exact")
    approx, _ = compute_all_metrics(samples, refs, emd_method="approxmatch")
    assert approx["MMD-EMD"] >= exact["MMD-EMD"] * 0.99
    assert approx["MMD-EMD"] <= exact["MMD-EMD"] * 1.5
    assert approx["MMD-CD"] == exact["MMD-CD"]
    cd_only, mats = compute_all_metrics(samples, refs, emd_method=None)
    assert "MMD-EMD" not in cd_only and set(mats) == {"CD"}
