"""Time the point-cloud generation metrics (PointFlow protocol) on 100 x 100 sets of 1024 points.

Samples are the ModelNet10 chair test split and references a seeded draw from the chair train split
(the shared ``modelnet10-pcd``, read with Open3D; each cloud centred and scaled to the unit
sphere). Where the data is absent, seeded Gaussian blobs stand in and the output says so.

Exact EMD over all pairs takes tens of minutes on a small CPU, so by default a seeded subset of
pairs is solved and the per-pair time is extrapolated; ``--full-emd`` solves every pair. The
approximate matcher is timed the same way and its gap to the exact value is reported on the
subset.

    python benchmarks/bench_pointcloud_metrics.py --json runs/bench/pointcloud_metrics.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ebm3d.metrics import (
    emd,
    jsd_between_sets,
    mmd_cov,
    one_nn_accuracy,
    pairwise_chamfer,
    pairwise_emd,
)
from ebmcore.io import atomic_write
from ebmcore.paths import dataset_dir


def load_clouds(n: int, points: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(n, points, 3) samples and references, unit-sphere normalised, and where they came from."""
    root = dataset_dir("modelnet10-pcd")
    if root is None or not (root / "chair").is_dir():
        g = torch.Generator().manual_seed(seed)
        blob = torch.randn(2 * n, points, 3, generator=g) * 0.3
        return _unit_sphere(blob[:n]), _unit_sphere(blob[n:]), "synthetic Gaussian blobs (no modelnet10-pcd)"
    import open3d as o3d  # imported here: only this path needs it

    rng = np.random.default_rng(seed)
    test = sorted((root / "chair" / "test").glob("*.pcd"))[:n]
    train = sorted((root / "chair" / "train").glob("*.pcd"))
    train = [train[i] for i in sorted(rng.choice(len(train), size=n, replace=False))]

    def read(paths):
        clouds = []
        for p in paths:
            pts = np.asarray(o3d.io.read_point_cloud(str(p)).points, dtype=np.float32)
            if len(pts) < points:
                raise SystemExit(f"{p}: {len(pts)} points, fewer than --points {points}")
            clouds.append(pts[rng.choice(len(pts), size=points, replace=False)])
        return _unit_sphere(torch.from_numpy(np.stack(clouds)))

    return read(test), read(train), f"ModelNet10 chair: {len(test)} test vs {n} random train shapes ({root})"


def _unit_sphere(x: torch.Tensor) -> torch.Tensor:
    centre = (x.amax(dim=1, keepdim=True) + x.amin(dim=1, keepdim=True)) / 2
    x = x - centre
    return x / x.norm(dim=2).amax(dim=1).view(-1, 1, 1)


def timed(fn):
    """``fn()``, its wall time and the CPU time this process spent (all threads) in seconds."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def pair_subset(n: int, k: int, seed: int) -> tuple[list[int], list[int]]:
    rng = np.random.default_rng(seed)
    flat = rng.choice(n * n, size=min(k, n * n), replace=False)
    return [int(i) // n for i in flat], [int(i) % n for i in flat]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100, help="clouds per set")
    ap.add_argument("--points", type=int, default=1024)
    ap.add_argument("--emd-pairs", type=int, default=40, help="pairs solved to time exact EMD")
    ap.add_argument("--approx-pairs", type=int, default=128, help="pairs to time the approximate matcher")
    ap.add_argument("--workers", type=int, default=2, help="threads for exact EMD (also timed with 1)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--full-emd", choices=["exact", "approxmatch"], help="solve all n x n pairs with this method")
    ap.add_argument("--solver", choices=["scipy", "pot"], default="pot", help="exact solver for --full-emd")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    samples, refs, source = load_clouds(args.n, args.points, args.seed)
    n, p = args.n, args.points
    res: dict = {
        "command": "python " + " ".join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:])),
        "data": source,
        "n": n,
        "points": p,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads",
        "load_average_at_start": os.getloadavg()[0],
    }
    print(f"data: {source}\nmachine: {res['machine']} (load {res['load_average_at_start']:.2f})")

    # Chamfer: the sample-reference matrix, then the two within-set matrices the protocol needs.
    cd_sr, t, c = timed(lambda: pairwise_chamfer(samples, refs).double())
    res["cd_matrix"] = {"wall_s": t, "cpu_s": c}
    cd_ss, t_ss, c_ss = timed(lambda: pairwise_chamfer(samples).double())
    cd_rr, t_rr, c_rr = timed(lambda: pairwise_chamfer(refs).double())
    res["cd_all_three_matrices"] = {"wall_s": t + t_ss + t_rr, "cpu_s": c + c_ss + c_rr}
    print(
        f"CD {n}x{n} matrix: {t:.2f} s wall ({c:.2f} s CPU); all three (ss, sr, rr): "
        f"{t + t_ss + t_rr:.2f} s wall ({c + c_ss + c_rr:.2f} s CPU)"
    )

    # Set metrics from the matrices, and JSD.
    (mc, nna), t, _ = timed(lambda: (mmd_cov(cd_sr), one_nn_accuracy(cd_ss, cd_sr, cd_rr)))
    res["mmd_cov_1nna_from_matrices_s"] = t
    jsd, t_jsd, _ = timed(lambda: jsd_between_sets(samples, refs, extent=1.0))
    res["jsd_s"] = t_jsd
    res["metrics_cd"] = {"MMD-CD": mc.mmd, "COV-CD": mc.cov, "1-NNA-CD": nna, "JSD": jsd}
    print(f"MMD/COV/1-NNA from matrices: {t * 1000:.1f} ms; JSD (28^3): {t_jsd:.2f} s")
    print(f"  test-vs-train chair: MMD-CD {mc.mmd:.5f}  COV-CD {mc.cov:.3f}  1-NNA-CD {nna:.3f}  JSD {jsd:.4f}")

    # EMD: time a subset of pairs; extrapolate to the protocol's pair counts.
    pairs_sr = n * n
    pairs_protocol = n * n + 2 * (n * (n - 1) // 2)  # sr, plus the upper triangles of ss and rr
    res["emd_pairs_sr"], res["emd_pairs_protocol"] = pairs_sr, pairs_protocol
    rows, cols = pair_subset(n, args.emd_pairs, args.seed)
    a, b = samples[rows], refs[cols]
    exact_vals = None
    for solver in ("scipy", "pot"):
        for workers in sorted({1, args.workers}):
            vals, t, cpu = timed(lambda: emd(a, b, method="exact", workers=workers, solver=solver))
            cpu /= len(rows)
            if exact_vals is not None:
                assert torch.allclose(vals, exact_vals, rtol=1e-9), "exact solvers disagree"
            exact_vals = vals
            per_pair = t / len(rows)
            res[f"emd_exact_{solver}_workers{workers}"] = {"wall_s_per_pair": per_pair, "cpu_s_per_pair": cpu}
            print(
                f"EMD exact ({solver}, {workers} thread(s)): {per_pair * 1000:.0f} ms/pair wall, "
                f"{cpu * 1000:.0f} ms CPU, over {len(rows)} pairs -> {n}x{n} matrix "
                f"~{per_pair * pairs_sr / 60:.1f} min, full protocol ~{per_pair * pairs_protocol / 60:.1f} min"
            )
    rows_a, cols_a = pair_subset(n, args.approx_pairs, args.seed + 1)
    _, t, cpu = timed(lambda: emd(samples[rows_a], refs[cols_a], method="approxmatch"))
    per_pair, cpu = t / len(rows_a), cpu / len(rows_a)
    res["emd_approxmatch"] = {"wall_s_per_pair": per_pair, "cpu_s_per_pair": cpu}
    approx_vals = emd(a, b, method="approxmatch")
    gap = ((approx_vals - exact_vals) / exact_vals).numpy()
    res["approxmatch_relative_gap"] = {"mean": float(gap.mean()), "min": float(gap.min()), "max": float(gap.max())}
    print(
        f"EMD approxmatch (APPROXIMATE): {per_pair * 1000:.0f} ms/pair wall, {cpu * 1000:.0f} ms CPU, over {len(rows_a)} pairs -> "
        f"{n}x{n} matrix ~{per_pair * pairs_sr / 60:.1f} min, full protocol ~{per_pair * pairs_protocol / 60:.1f} min; "
        f"gap to exact on {len(rows)} pairs: mean {gap.mean():+.1%} (min {gap.min():+.1%}, max {gap.max():+.1%})"
    )

    if args.full_emd:
        emd_sr, t, c = timed(
            lambda: pairwise_emd(samples, refs, method=args.full_emd, workers=args.workers, solver=args.solver)
        )
        res[f"emd_{args.full_emd}_full_matrix"] = {"wall_s": t, "cpu_s": c}
        print(f"EMD {args.full_emd} full {n}x{n} matrix: {t / 60:.1f} min wall ({c / 60:.1f} min CPU)")
        mc = mmd_cov(emd_sr)
        res[f"metrics_emd_{args.full_emd}_sr"] = {"MMD-EMD": mc.mmd, "COV-EMD": mc.cov}

    res["load_average_at_end"] = os.getloadavg()[0]
    if args.json:
        atomic_write(args.json, lambda tmp: tmp.write_text(json.dumps(res, indent=2)))
        print(f"wrote {args.json}")
    return res


if __name__ == "__main__":
    main()
