"""Planner time budgets: wall time of plan() and predict() against a per-call budget, for 1, 10,
50 and 200 agents on synthetic straight-road scenes, with the truncation flag and each size's
peak memory; writes the table into benchmarks/README.md (between the BUDGET_TABLE markers).

    python benchmarks/bench_traj_budget.py [--checkpoint model.pt] [--budgets 0.1 0.5] [--repeats 5]

Without a checkpoint the model has the default architecture and untrained weights (the time per
evaluation does not depend on the weights). One thread. Each scene size runs in its own process so
that its peak resident memory (ru_maxrss) is its own.
"""
from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

README = Path(__file__).with_name("README.md")
SIZES = (1, 10, 50, 200)


def build_planner(checkpoint: str | None):
    import torch

    from ebmtraj.model import ModelConfig, PredictConfig, build_model, save_model
    from ebmtraj.planner import Planner

    if checkpoint is None:
        torch.manual_seed(0)
        cfg = PredictConfig(samples=5, steps=10, opt_steps=10)
        checkpoint = save_model(build_model(ModelConfig(), 10, 40), Path(tempfile.mkdtemp()) / "model.pt",
                                {"model": asdict(ModelConfig()), "predict": asdict(cfg)})
    return Planner.from_checkpoint(checkpoint, warm_start=False)


def one_size(agents: int, budgets, repeats: int, checkpoint) -> dict:
    """Timings of one scene size (run in a fresh process)."""
    import torch

    from ebmtraj.data.toy import straight_road, traffic_scene
    from ebmtraj.planner import Scene, SceneAgent, fit_state

    torch.set_num_threads(1)
    planner = build_planner(checkpoint)
    sc = traffic_scene(agents, seed=agents)
    raw = sc["positions_raw"][0].double().numpy()
    scene = Scene([SceneAgent(fit_state(raw[a, :10]), raw[a, :10]) for a in range(agents)], straight_road())
    ego, others = scene.agents[0], [a.state for a in scene.agents[1:]]
    calls = {"plan": lambda b: [planner.plan(ego.state, ego.history, others, scene.lanes, time_budget=b)],
             "predict": lambda b: planner.predict(scene, time_budget=b)}
    out = {"agents": agents}
    for name, call in calls.items():
        call(None)                                                     # warm-up
        for budget in [None] + list(budgets):
            walls, flagged, iters = [], 0, []
            for _ in range(repeats):
                t0 = time.perf_counter()
                res = call(budget)
                walls.append(time.perf_counter() - t0)
                flagged += "deadline" in res[0].flags
                iters.append(res[0].iterations)
            out[f"{name}@{budget}"] = {"median_s": float(np.median(walls)), "max_s": float(np.max(walls)),
                                       "truncated": flagged / repeats, "iterations": float(np.median(iters))}
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def table(results: list[dict], budgets) -> str:
    head = "| agents | call | no budget: median s (iterations) | " + " | ".join(
        f"budget {b} s: median / max s, x budget, truncated" for b in budgets) + " | peak RSS (MB) |"
    lines = [head, "|" + "---|" * (4 + len(budgets))]
    for r in results:
        for name in ("plan", "predict"):
            free = r[f"{name}@None"]
            cells = [f"{free['median_s']:.3f} ({free['iterations']:.0f})"]
            for b in budgets:
                x = r[f"{name}@{b}"]
                cells.append(f"{x['median_s']:.3f} / {x['max_s']:.3f}, {x['max_s'] / b:.2f}, {x['truncated']:.0%}")
            lines.append(f"| {r['agents']} | {name} | " + " | ".join(cells) + f" | {r['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def write_readme(text: str) -> None:
    body = README.read_text()
    block = f"<!-- BUDGET_TABLE -->\n{text}\n<!-- /BUDGET_TABLE -->"
    if "<!-- BUDGET_TABLE -->" in body:
        body = re.sub(r"<!-- BUDGET_TABLE -->.*<!-- /BUDGET_TABLE -->", lambda _: block, body, flags=re.S)
    else:
        body = body.rstrip() + "\n\n" + block + "\n"
    README.write_text(body)


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--budgets", type=float, nargs="+", default=[0.1, 0.5])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    ap.add_argument("--json", default=None)
    ap.add_argument("--no-readme", action="store_true")
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one is not None:
        print(json.dumps(one_size(args.one, args.budgets, args.repeats, args.checkpoint)))
        return []
    results = []
    for n in args.sizes:
        cmd = [sys.executable, __file__, "--one", str(n), "--repeats", str(args.repeats),
               "--budgets", *map(str, args.budgets)] + (["--checkpoint", args.checkpoint] if args.checkpoint else [])
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    text = table(results, args.budgets)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1))
    if not args.no_readme:
        write_readme(text)
    return results


if __name__ == "__main__":
    main()
