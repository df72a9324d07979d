"""Training throughput of the generative VoxelNet: shapes/s, peak memory and GFLOP/s.

For each config (the published network, ``configs/voxelnet_paper.yaml``; the former CPU config,
``configs/voxelnet_chair_cpu.yaml``, 32^3; and the CPU config that learns,
``configs/voxelnet_chair16_cpu.yaml``, 16^3 with clamped chains) a fresh process builds the model
and the VoxelNet trainer (the engine's Trainer with the config's algorithm switches) on 256 random
occupancy grids at the config's resolution (3 % filled at 32^3 like the chairs, 6 % at 16^3 like
the max-pooled chairs) and times ``--iters`` full training steps (persistent-chain Langevin + the
contrastive update) after one warm-up step.

- shapes/s: observed shapes consumed per second of training (batch / seconds per step), at the
  measured batch and Langevin steps, and extrapolated to the config's own Langevin steps.
- peak memory: the process's peak resident set size (``resource.getrusage``), and its rise
  over the value after imports and data creation (the model, optimiser, chains and activations).
- GFLOP/s: convolution FLOPs per step over seconds per step, counting a Langevin step as
  2 forward passes (forward + input gradient) per chain and the update as 2 forward passes per
  observed and per synthesised shape (forward + weight gradient); 1 multiply-add = 2 FLOPs.

The published network costs ~4.3 GFLOP per forward pass on 32^3, so on a CPU it is measured at a
reduced batch and Langevin steps (``--paper-batch``, ``--paper-langevin``).

    python benchmarks/bench_voxelnet_train.py [--threads 1] [--iters 3] [--json out.json]
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
CONFIGS = {"paper": ROOT / "configs" / "voxelnet_paper.yaml", "cpu_default": ROOT / "configs" / "voxelnet_chair_cpu.yaml",
           "chair16_cpu": ROOT / "configs" / "voxelnet_chair16_cpu.yaml"}
FILL = {32: 0.03, 16: 0.06}  # occupied share of the chairs at each resolution


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(name: str, batch: int, langevin: int, iters: int, threads: int, device: str) -> dict:
    import torch

    torch.set_num_threads(threads)
    from ebm3d.config import load_experiment
    from ebmcore.learning import Trainer
    from ebm3d.tasks.training import build_voxel_model, chain_bounds, effective_train_config

    # one optimiser step per minibatch, one chain per shape: the cost of a minibatch (the official
    # bookkeeping of the paper config takes one step per pass over the data)
    cfg = load_experiment(CONFIGS[name], [f"train.batch_size={batch}", f"train.sampler.steps={langevin}",
                                         "algorithm.bookkeeping=minibatch", "train.chains.per_batch=null",
                                         "train.tensorboard=false", "train.progress=false",
                                         f"train.chains.num_chains={max(batch, 64)}", f"train.device={device}"])
    config_langevin = load_experiment(CONFIGS[name]).train.sampler.steps
    # random occupancy with the chairs' fill rate: the cost of a convolution does not depend on the
    # values, and loading the real set would dominate the process's peak memory
    R = cfg.data.resolution
    data = (torch.rand(256, 1, R, R, R, generator=torch.Generator().manual_seed(0)) < FILL[R]).float()
    source = f"random occupancy at {R}^3, {FILL[R]:.0%} filled"
    rss_before = _rss_mb()
    model = build_voxel_model(cfg, R, data)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(model, model.centre(data), effective_train_config(cfg, len(data)), tmp,
                          clamp=chain_bounds(cfg, model), resume=False)
        trainer.train_step()  # warm-up
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(iters):
            trainer.train_step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        per_step = (time.perf_counter() - started) / iters
    fwd = model.flops_per_forward()
    flops = 2 * fwd * batch * langevin + 2 * fwd * 2 * batch
    per_shape_step = per_step / (batch * (langevin + 2))
    return {
        "config": name, "data": source, "threads": threads, "device": device, "batch": batch,
        "langevin_steps": langevin, "seconds_per_step": round(per_step, 3),
        "shapes_per_s": round(batch / per_step, 3),
        "config_langevin_steps": config_langevin,
        "shapes_per_s_at_config_langevin": round(1.0 / (per_shape_step * (config_langevin + 2)), 3),
        "gflop_per_forward": round(fwd / 1e9, 4), "gflop_per_step": round(flops / 1e9, 2),
        "gflops": round(flops / per_step / 1e9, 2),
        "peak_rss_mb": round(_rss_mb(), 1), "peak_rss_rise_mb": round(_rss_mb() - rss_before, 1),
        "peak_cuda_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if device.startswith("cuda") else None,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--cpu-batch", type=int, default=8)
    p.add_argument("--cpu-langevin", type=int, default=10)
    p.add_argument("--chair16-batch", type=int, default=20)
    p.add_argument("--chair16-langevin", type=int, default=20)
    p.add_argument("--paper-batch", type=int, default=2)
    p.add_argument("--paper-langevin", type=int, default=2)
    p.add_argument("--only", choices=list(CONFIGS))
    p.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS), help="configs to measure")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    if args.only:  # one config in this process (peak memory is per process)
        batch, langevin = {"paper": (args.paper_batch, args.paper_langevin),
                           "cpu_default": (args.cpu_batch, args.cpu_langevin),
                           "chair16_cpu": (args.chair16_batch, args.chair16_langevin)}[args.only]
        print(json.dumps(measure(args.only, batch, langevin, args.iters, args.threads, args.device)))
        return 0
    results = []
    for name in args.configs:
        cmd = [sys.executable, __file__, "--only", name]
        for key in ("threads", "iters", "device", "cpu_batch", "cpu_langevin", "chair16_batch", "chair16_langevin",
                    "paper_batch", "paper_langevin"):
            cmd += ["--" + key.replace("_", "-"), str(getattr(args, key))]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1], indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
