"""Sampler benchmark: Langevin on a VoxelNet-sized 3-D conv energy (batch 20, 32^3, 20 steps).

Times, in the same run and on the same energy and inputs:
  engine   ebmcore.sampling.langevin
  bare     a hand-written loop (autograd.grad + update), the floor for any sampler
  torchebm torchebm.samplers.LangevinDynamics (step_size = delta^2/2, noise_scale = 1: the same update)
and reports each one's median time, its ratio to the bare loop, and the achieved GFLOP/s
against this machine's measured fp32 GEMM rate (same thread count). Both wall-clock and
process CPU time are recorded; on a shared machine the CPU time with ``--threads 1`` is the
steadier of the two, and the ratios use it.

    .venv/bin/python benchmarks/bench_sampler.py [--threads 1] [--repeats 3] [--batch 20] [--steps 20]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch import nn

from ebmcore.energy import EnergyModel
from ebmcore.sampling import langevin

DELTA = 0.1


class VoxelEnergy(EnergyModel):
    """The published generative VoxelNet energy on 32^3 (REFERENCE.md §2)."""

    def __init__(self):
        super().__init__(sigma_ref=0.5)
        self.net = nn.Sequential(nn.Conv3d(1, 200, 16, stride=3, padding=7), nn.ReLU(),
                                 nn.Conv3d(200, 100, 6, stride=2, padding=3), nn.ReLU())
        self.head = nn.Conv3d(100, 1, 6)
        for p in self.parameters():
            nn.init.normal_(p, std=0.001)

    def score(self, x, cond=None):
        return self.head(self.net(x)).flatten(1).sum(1)


def conv_flops(model: VoxelEnergy, x: torch.Tensor) -> float:
    """FLOPs of one energy-and-input-gradient evaluation: 2*MACs forward, the same again
    for the gradient with respect to the input (no weight gradients are taken)."""
    total, h = 0.0, x
    for layer in [m for m in model.modules() if isinstance(m, nn.Conv3d)]:
        out = layer(h)
        macs = out.numel() * layer.in_channels * layer.kernel_size[0] ** 3
        total += 2 * macs * 2
        h = out
    return total


def bare(model, x0, steps, generator):
    x = x0.clone()
    for _ in range(steps):
        x = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(model.energy(x).sum(), x)
        x = x.detach() - 0.5 * DELTA**2 * g + DELTA * torch.randn(x.shape, generator=generator)
    return x


def engine(model, x0, steps, generator):
    return langevin(model.energy, x0, steps, DELTA, generator=generator)


def make_torchebm(model):
    from torchebm.core import BaseModel
    from torchebm.samplers import LangevinDynamics

    class Wrapped(BaseModel):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, x):
            return self.inner.energy(x)

    sampler = LangevinDynamics(Wrapped(), step_size=0.5 * DELTA**2, noise_scale=1.0)
    return lambda m, x0, steps, generator: sampler.sample(x=x0.clone(), n_steps=steps, generator=generator)


def gemm_rate(n: int = 2048, repeats: int = 5) -> float:
    """Best fp32 GEMM rate in GFLOP/s (CPU time per thread-second, so load does not hide it)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        t = time.process_time()
        torch.mm(a, b)
        times.append(time.process_time() - t)
    return 2 * n**3 / min(times) / 1e9 * torch.get_num_threads()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = VoxelEnergy()
    for p in model.parameters():
        p.requires_grad_(False)  # sampling needs input gradients only, for every contender alike
    x0 = torch.rand(args.batch, 1, args.size, args.size, args.size)
    runners = {"bare": bare, "engine": engine}
    try:
        runners["torchebm"] = make_torchebm(model)
    except ImportError as exc:
        print(f"torchebm not installed ({exc}); skipping it")
    times = {k: [] for k in runners}
    cpu = {k: [] for k in runners}
    for k, run in runners.items():  # warm-up
        run(model, x0[:2], 1, torch.Generator().manual_seed(0))
    for _ in range(args.repeats):  # interleaved, so load drift hits every contender alike
        for k, run in runners.items():
            t, c = time.perf_counter(), time.process_time()
            run(model, x0, args.steps, torch.Generator().manual_seed(0))
            times[k].append(time.perf_counter() - t)
            cpu[k].append((time.process_time() - c) / args.threads)
    flops = conv_flops(model, x0) * args.steps
    peak = gemm_rate()
    med = {k: statistics.median(v) for k, v in cpu.items()}
    report = {"threads": torch.get_num_threads(), "batch": args.batch, "steps": args.steps, "size": args.size,
              "gemm_gflops": round(peak, 1), "flop_per_run": flops,
              "contenders": {k: {"median_cpu_s": round(med[k], 3), "ratio_to_bare": round(med[k] / med["bare"], 4),
                                 "gflops": round(flops / med[k] / 1e9, 1),
                                 "fraction_of_gemm": round(flops / med[k] / 1e9 / peak, 3),
                                 "cpu_s": [round(t, 3) for t in cpu[k]],
                                 "wall_s": [round(t, 3) for t in times[k]]} for k in runners}}
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
