"""Planner latency: one agent with a 4 s horizon, and a 10-agent joint prediction, on real
CommonRoad NGSIM scenes, each against a naive per-agent Python loop in the same run.

* one agent: ``Planner.plan`` -- the minimum-cost search (the checkpoint's chain start, then
  Adam) at each step count, inputs built from live states, z-independent parts (nominal,
  history encoding, the reference start's Jacobians, the lanes' segment table) computed once --
  against the naive route:
  the training code's own prediction (``ebmtraj.ioc.predict``, mode 'adam') on the same
  inputs, which re-encodes the history at every step and recomputes the start's Jacobians;
* ten agents: ``Planner.predict`` (one batched joint search over all agents' controls) against
  a Python loop of ten ``Planner.plan`` calls (each agent alone, the others extrapolated).

``--accuracy`` measures, on the prepared CommonRoad test split (target agents), the RMSE of the
minimum-cost plans of each step count against the recorded futures, next to the checkpoint's
own step count, so the latency of a step count can be read with the accuracy it keeps.

Wall-clock (``time.perf_counter``) and process CPU time are both reported; on this shared
2-core machine the CPU time with ``--threads 1`` is the steadier of the two.

    .venv/bin/python benchmarks/bench_planner_latency.py CHECKPOINT [--steps 2 3 5 10]  # Adam steps
        [--repeats 20] [--threads 1] [--accuracy] [--compile] [--out benchmarks/out/planner_latency.json]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from ebmcore.paths import data_root
from ebmtraj.commonroad_planning import load_scenario, read_traffic
from ebmtraj.data.headways import headways_of_positions
from ebmtraj.planner import Planner, PlannerConfig, Scene, SceneAgent

SCENARIO = "USA_US101-24_1_T-1.xml"   # a test-split recording group


def scene_agents(path: Path, step: int = 10, n: int = 10):
    """The ``n`` recorded vehicles nearest the scene's centre at ``step`` with 1 s of history,
    each with its headway over that second derived from all the scenario's vehicles (used by
    checkpoints trained with virtual leaders)."""
    scenario, _, lanes = load_scenario(path)
    traffic, _ = read_traffic(scenario)
    ok = [v for v in range(len(traffic.ids)) if np.isfinite(traffic.xy[v, step - 9:step + 1]).all()]
    centre = np.median(traffic.xy[ok, step], axis=0)
    ok.sort(key=lambda v: float(np.hypot(*(traffic.xy[v, step] - centre))))
    states = {s.agent_id: s for s in traffic.at(step)}
    headway = headways_of_positions(traffic.xy[:, : step + 1])
    agents = [SceneAgent(states[int(traffic.ids[v])], traffic.xy[v, step - 9:step + 1], headway[v, step - 9:step + 1])
              for v in ok[:n]]
    return agents, lanes


def timed(fn, repeats: int) -> dict:
    t0 = time.perf_counter()
    fn()                                              # warm-up (compiles with --compile)
    first = time.perf_counter() - t0
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    q = lambda xs, p: float(np.percentile(xs, p) * 1e3)
    return {"wall_median_ms": q(wall, 50), "wall_p95_ms": q(wall, 95),
            "cpu_median_ms": q(cpu, 50), "cpu_p95_ms": q(cpu, 95), "first_call_s": first}


def naive_single(planner: Planner, agent: SceneAgent, others, lanes, steps: int):
    """The training code's minimum-cost prediction (ioc.predict, mode 'adam') of one agent."""
    from ebmtraj import ioc
    from ebmtraj.planner.inputs import LaneSet, build_rows

    rows = build_rows([agent.state], [agent.history], [others], LaneSet.from_any(lanes),
                      planner.loaded.inputs, history=planner.history_frames, steps=planner.loaded.steps,
                      headways=[agent.headway] if planner.loaded.spec.virtual_leaders else None)
    d = planner.loaded.search
    cond = ioc.cond_of(rows.cond, planner.model)
    cfg = ioc.PredictConfig(mode="adam", samples=1, init=d.init, opt_steps=steps, adam_lr=d.adam_lr)
    return ioc.predict(planner.model, cond, cfg)["states"]


def accuracy(planner: Planner, steps_list, split: str = "test") -> dict:
    """RMSE [m] at 1-4 s of the minimum-cost plans of each step count on the prepared
    CommonRoad split (target agents), next to the training chain's own setting."""
    from ebmcore.io import load_tensors
    from ebmcore.paths import cache_root
    from ebmtraj.cost_inputs import COND_TENSORS, build_inputs
    from ebmtraj.data.lanes import LaneMap
    from ebmtraj.experiment import cached_headways
    from ebmtraj.prediction import predict

    root = cache_root() / "ebmtraj" / "commonroad"
    lanes = {r: LaneMap.from_tensors(d) for r, d in load_tensors(root / "lanes.pt").items()}
    scenes = load_tensors(root / f"scenes_{split}.pt")
    headways = cached_headways(scenes, root) if planner.loaded.spec.virtual_leaders else None
    inp = build_inputs(scenes, lanes, rows="target", headways=headways)
    d = planner.loaded.search
    out = {}
    for n in [d.opt_steps] + [s for s in steps_list if s != d.opt_steps]:
        pred = predict(planner.model, {k: inp[k] for k in COND_TENSORS}, planner.settings("min_cost", 1, None, n))
        err2 = ((pred["states"][:, 0, :, :2] - inp["future"]) ** 2).sum(-1)
        out[n] = {"rmse": [float(err2[:, h - 1].mean().sqrt()) for h in (10, 20, 30, 40)],
                  "energy": float(pred["energy"].mean())}
    cv = ((planner.model.nominal({k: inp[k] for k in COND_TENSORS}) - inp["future"]) ** 2).sum(-1)
    out["constant_velocity"] = {"rmse": [float(cv[:, h - 1].mean().sqrt()) for h in (10, 20, 30, 40)]}
    out["rows"] = int(len(inp["future"]))
    return out


def latency_payload(report: dict) -> dict:
    """The recorded latency figures [ms] at the checkpoint's own Adam step count: one agent
    (wall median, p95; CPU median, p95), ten agents jointly (wall and CPU median), with the test
    RMSE at 4 s of that setting; the same per measured step count under ``by_steps``; the load
    average at the start and end of the run."""
    n = report["search"]["opt_steps"]
    acc = report.get("accuracy_test_split", {})

    def row(k):
        one, ten = report["one_agent"][k]["planner"], report["ten_agents"][k]["joint_batched"]
        return {"one_agent_median": one["wall_median_ms"], "one_agent_p95": one["wall_p95_ms"],
                "one_agent_cpu_median": one["cpu_median_ms"], "one_agent_cpu_p95": one["cpu_p95_ms"],
                "ten_agents_median": ten["wall_median_ms"], "ten_agents_cpu_median": ten["cpu_median_ms"],
                "rmse4": acc[k]["rmse"][3] if k in acc else None}

    top = row(n)
    return {**{k: v for k, v in top.items() if k != "rmse4"}, "rmse4_at_setting": top["rmse4"],
            "opt_steps": n, "init": report["search"]["init"], "threads": report["threads"],
            "rmse4_constant_velocity": acc["constant_velocity"]["rmse"][3] if acc else None,
            "by_steps": {str(k): row(k) for k in sorted(report["one_agent"])},
            "one_agent_median_headway_derived": report.get("one_agent_headway_derived", {}).get("wall_median_ms"),
            "checkpoint": report["checkpoint"], "load_average": report["load_average_start"],
            "load_average_end": report.get("load_average_end")}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--steps", type=int, nargs="+", default=[2, 3, 5, 10], help="Adam step counts")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--scenario", default=str(data_root() / "commonroad-ngsim-us101" / SCENARIO))
    ap.add_argument("--accuracy", action="store_true", help="also measure RMSE per step count")
    ap.add_argument("--compile", action="store_true",
                    help="the planner evaluates the cost through torch.compile (first call compiles)")
    ap.add_argument("--out", default="benchmarks/out/planner_latency.json")
    ap.add_argument("--record", action="store_true",
                    help="record the checkpoint's own step count (latency and, with --accuracy, its "
                         "RMSE) as section latency_ms of docs/results/ebmtraj.json")
    args = ap.parse_args(argv)
    started = time.time()
    torch.set_num_threads(args.threads)
    planner = Planner.from_checkpoint(args.checkpoint, PlannerConfig(warm_start=False, compile=args.compile))
    agents, lanes = scene_agents(Path(args.scenario))
    ego, others = agents[0], [a.state for a in agents[1:]]
    scene = Scene(agents, lanes)
    d = planner.loaded.search
    report = {"checkpoint": str(args.checkpoint), "scenario": args.scenario, "agents": len(agents),
              "threads": args.threads, "compile": args.compile, "load_average_start": os.getloadavg(),
              "search": {"init": d.init, "opt_steps": d.opt_steps, "adam_lr": d.adam_lr},
              "one_agent": {}, "ten_agents": {}}
    for n in sorted(set(args.steps + [d.opt_steps])):
        one = timed(lambda: planner.plan(ego.state, ego.history, others, lanes, 4.0, opt_steps=n,
                                         headway=ego.headway), args.repeats)
        base = timed(lambda: naive_single(planner, ego, others, lanes, n), args.repeats)
        joint = timed(lambda: planner.predict(scene, 4.0, opt_steps=n), max(3, args.repeats // 2))
        loop = timed(lambda: [planner.plan(a.state, a.history, [b.state for b in agents if b is not a],
                                           lanes, 4.0, opt_steps=n, headway=a.headway) for a in agents],
                     max(3, args.repeats // 4))
        report["one_agent"][n] = {"planner": one, "naive_training_code": base}
        report["ten_agents"][n] = {"joint_batched": joint, "per_agent_python_loop": loop}
        print(f"Adam steps {n:3d}: one agent {one['wall_median_ms']:.1f} / p95 "
              f"{one['wall_p95_ms']:.1f} ms wall, {one['cpu_median_ms']:.1f} / {one['cpu_p95_ms']:.1f} ms cpu "
              f"(naive {base['wall_median_ms']:.1f} wall, {base['cpu_median_ms']:.1f} cpu); "
              f"10 agents joint {joint['wall_median_ms']:.1f} wall / {joint['cpu_median_ms']:.1f} cpu "
              f"(loop {loop['wall_median_ms']:.1f} / {loop['cpu_median_ms']:.1f})", flush=True)
    if planner.loaded.spec.virtual_leaders:
        derived = timed(lambda: planner.plan(ego.state, ego.history, others, lanes, 4.0), args.repeats)
        report["one_agent_headway_derived"] = derived
        print(f"Adam steps {d.opt_steps:3d}, headway derived by plan from the neighbours: one agent "
              f"{derived['wall_median_ms']:.1f} / p95 {derived['wall_p95_ms']:.1f} ms wall", flush=True)
    if args.accuracy:
        report["accuracy_test_split"] = accuracy(planner, args.steps)
        for k, v in report["accuracy_test_split"].items():
            print("accuracy", k, v, flush=True)
    report["load_average_end"] = os.getloadavg()
    if args.record:
        from ebmcore.results import record

        record("ebmtraj", "latency_ms", latency_payload(report), started=started)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
