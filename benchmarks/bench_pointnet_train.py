"""Training throughput of the generative PointNet: clouds/s and peak memory.

For each config (the CPU one, ``configs/pointnet_chair_cpu.yaml`` or ``--cpu-config``, and the
published network, ``configs/pointnet_paper.yaml``) a fresh process builds the model and the
PointNet trainer (the engine's Trainer with the point subsets and jitter of
:func:`ebm3d.tasks.training.point_trainer`) on real training clouds (the modelnet10-pcd chairs
when present, else Gaussian clouds) and times ``--iters`` full training steps (short-run Langevin
from noise + the contrastive update) after one warm-up step. The CPU config runs at its own batch,
Langevin steps and point count unless ``--cpu-*`` say otherwise.

- clouds/s: observed clouds consumed per second of training (batch / seconds per step) at the
  measured batch, Langevin steps and point count; and extrapolated to the config's own Langevin
  steps (time scales with batch x (Langevin steps + 2) forward-backward passes). The same per
  second of process CPU time (``clouds_per_cpu_s``), which a shared machine's load disturbs less.
- peak memory: the process's peak resident set size (``resource.getrusage``) and its rise over
  the value after imports and data loading.
- GFLOP/s: per-point layer multiply-adds x 2 x points x passes, counting a Langevin step as 2
  forward passes (forward + input gradient) per chain and the update as 2 per observed and per
  synthesised cloud; the MLP head is ignored (it runs once per cloud, not per point).

The published network is about 25x the CPU config's cost per point, so on a CPU it is measured
at a reduced batch and Langevin steps (``--paper-batch``, ``--paper-langevin``).

    python benchmarks/bench_pointnet_train.py [--threads 1] [--iters 3] [--cpu-config FILE] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"cpu_default": ROOT / "configs" / "pointnet_chair_cpu.yaml", "paper": ROOT / "configs" / "pointnet_paper.yaml"}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(name: str, config: Path, batch: int | None, langevin: int | None, points: int | None, iters: int,
            threads: int, device: str) -> dict:
    import torch

    torch.set_num_threads(threads)
    from ebmcore.errors import DataError
    from ebm3d.experiment import load_experiment
    from ebm3d.tasks.training import build_point_model, point_trainer

    base = load_experiment(config)
    points = points or base.train_points
    batch, langevin = batch or base.train.batch_size, langevin or base.train.sampler.steps
    cfg = load_experiment(config, [
        f"train.batch_size={batch}", f"train.sampler.steps={langevin}", "train.tensorboard=false",
        "train.progress=false", f"train.device={device}", "data.classes=[chair]", f"data.train_points={points}",
        f"data.n_points={max(points, base.data.n_points)}"])
    try:
        from ebm3d.tasks.data import point_source

        data = point_source(cfg.data).points("train", ["chair"])[:256]
        source = f"modelnet10-pcd chairs (256 train clouds of {data.shape[1]} points)"
    except (DataError, FileNotFoundError):  # no ModelNet10 under EBM_DATA
        data = 0.3 * torch.randn(256, max(points, 1024), 3)
        source = "Gaussian clouds"
    rss_before = _rss_mb()
    torch.manual_seed(0)
    model = build_point_model(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = point_trainer(cfg, model, data, resume=False, run_dir=tmp)
        trainer.train_step()  # warm-up
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(iters):
            trainer.train_step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        per_step = (time.perf_counter() - started) / iters
        cpu_per_step = (time.process_time() - cpu) / iters
    macs = cfg.energy.spec(points).macs_per_point() * points
    flops = 2 * macs * (2 * batch * langevin + 2 * 2 * batch)
    per_cloud_pass = per_step / (batch * (langevin + 2))
    return {
        "config": name, "file": str(config), "data": source, "threads": threads, "device": device, "batch": batch,
        "points": points, "langevin_steps": langevin, "seconds_per_step": round(per_step, 3),
        "clouds_per_s": round(batch / per_step, 3), "cpu_seconds_per_step": round(cpu_per_step, 3),
        "clouds_per_cpu_s": round(batch / cpu_per_step, 3),
        "config_batch": base.train.batch_size, "config_langevin_steps": base.train.sampler.steps,
        "clouds_per_s_at_config_langevin": round(1.0 / (per_cloud_pass * (base.train.sampler.steps + 2)), 3),
        "gflop_per_step": round(flops / 1e9, 3), "gflops": round(flops / per_step / 1e9, 2),
        "peak_rss_mb": round(_rss_mb(), 1), "peak_rss_rise_mb": round(_rss_mb() - rss_before, 1),
        "peak_cuda_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if device.startswith("cuda") else None,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--cpu-config", default=str(CONFIGS["cpu_default"]), help="the CPU config measured")
    p.add_argument("--cpu-batch", type=int, default=None, help="default: the config's batch")
    p.add_argument("--cpu-langevin", type=int, default=None, help="default: the config's Langevin steps")
    p.add_argument("--cpu-points", type=int, default=None, help="default: the config's training point count")
    p.add_argument("--paper-batch", type=int, default=4)
    p.add_argument("--paper-langevin", type=int, default=4)
    p.add_argument("--paper-points", type=int, default=1024)
    p.add_argument("--only", choices=list(CONFIGS))
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    if args.only:  # one config in this process (peak memory is per process)
        paper = args.only == "paper"
        batch, langevin, points = ((args.paper_batch, args.paper_langevin, args.paper_points) if paper
                                   else (args.cpu_batch, args.cpu_langevin, args.cpu_points))
        config = CONFIGS["paper"] if paper else Path(args.cpu_config)
        result = measure(args.only, config, batch, langevin, points, args.iters, args.threads, args.device)
        print(json.dumps(result))
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps([result], indent=2))
        return 0
    results = []
    for name in CONFIGS:
        cmd = [sys.executable, __file__, "--only", name]
        for key in ("threads", "iters", "device", "cpu_config", "cpu_batch", "cpu_langevin", "cpu_points", "paper_batch",
                    "paper_langevin", "paper_points"):
            value = getattr(args, key)
            if value is not None:
                cmd += ["--" + key.replace("_", "-"), str(value)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1], indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
