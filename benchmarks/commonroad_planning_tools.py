"""CommonRoad planning problems judged by the drivability checker: EBM planner vs reactive planner.

Runs commonroad-reactive-planner (default configuration, one process) and, given a checkpoint,
the EBM planner (``ebmtraj.planner.Planner.from_checkpoint``, closed loop among the replayed
recorded traffic) on the planning problem of each scenario, judges every driven trajectory with
commonroad-drivability-checker (``ebmtraj.commonroad_tools.evaluate_planning_problems``) and
records the rates in section ``commonroad_planning`` of ``docs/results/ebmtraj.json``:

    python benchmarks/commonroad_planning_tools.py [--planner-checkpoint runs/planner_cr2/model.pt]
        [--scenarios FILE.xml ...] [--time-limit 120] [--solutions DIR] [--out report.json]

Default scenarios: the prepared CommonRoad cache's test split
(``ebmtraj.commonroad_planning.default_scenarios``). ``--solutions DIR`` also writes each
driven trajectory as a CommonRoad solution file (KS, BMW 320i, WX1) and records the share
that the drivability checker's ``valid_solution`` accepts (``valid_solution``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--planner-checkpoint", default=None, help="EBM planner checkpoint (IOC model.pt)")
    ap.add_argument("--scenarios", nargs="*", default=None, help="CommonRoad XML files")
    ap.add_argument("--time-limit", type=float, default=120.0,
                    help="wall seconds per planning problem for the reactive planner")
    ap.add_argument("--no-reactive", action="store_true", help="leave the reactive planner out")
    ap.add_argument("--solutions", default=None, help="write CommonRoad solution files here")
    ap.add_argument("--out", default=None, help="also write the full report (every problem) here")
    ap.add_argument("--no-record", action="store_true", help="do not record into docs/results")
    ap.add_argument("--no-road-guard", action="store_true",
                    help="EBM planner without its road guard (recorded as commonroad_planning_no_road_guard)")
    args = ap.parse_args(argv)
    started = time.time()

    import torch

    torch.set_num_threads(1)
    from ebmcore.results import record
    from ebmtraj import commonroad_planning as crp
    from ebmtraj import commonroad_tools as ct

    files = [Path(p) for p in args.scenarios] if args.scenarios else crp.default_scenarios()
    if not files:
        raise SystemExit("no CommonRoad scenarios found")
    fns = {}
    if args.planner_checkpoint:
        from ebmtraj.planner import Planner

        fns["ebm"] = ct.ebm_plan_fn(Planner.from_checkpoint(args.planner_checkpoint, seed=0,
                                                            road_guard=not args.no_road_guard))
    if not args.no_reactive:
        why = ct.reactive_planner_available()
        if why:
            print(f"reactive planner left out: {why}", flush=True)
        else:
            fns["reactive_planner"] = ct.reactive_plan_fn(time_limit_s=args.time_limit)
    if not fns:
        raise SystemExit("no planner to run")

    if args.solutions:
        fns = {name: _writing(fn, name, Path(args.solutions)) for name, fn in fns.items()}
    report = ct.evaluate_planning_problems(fns, files, log=lambda s: print(s, flush=True))
    print(ct.format_table(report["summary"]))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1, default=str))
    payload = {name: dict(row) for name, row in report["summary"].items()}
    if args.solutions:
        for name in payload:
            verdicts = [r.get("solution_check") for r in report["problems"] if r["planner"] == name]
            payload[name]["valid_solution"] = sum(v == "valid" for v in verdicts) / max(len(verdicts), 1)
    payload["scenarios"] = [f.name for f in files]
    payload["checker"] = ("commonroad-drivability-checker: obstacles' collision objects; road polygons "
                          "(enclosure) and road boundary; KS feasibility; ego BMW 320i 4.508 x 1.61 m")
    if "reactive_planner" in fns:
        payload["reactive_planner_time_limit_s"] = args.time_limit
    if args.planner_checkpoint:
        payload["planner_checkpoint"] = str(args.planner_checkpoint)
        payload["road_guard"] = not args.no_road_guard
    if not args.no_record:
        section = "commonroad_planning_no_road_guard" if args.no_road_guard else "commonroad_planning"
        print("recorded in", record("ebmtraj", section, payload, started=started))
    return report


def _writing(fn, name: str, folder: Path):
    """``fn`` that also writes each driven trajectory as a CommonRoad solution file and has
    the drivability checker's ``valid_solution`` (goal, start state, obstacle and road-boundary
    collisions, feasibility) judge the file as read back: ``last["solution_check"]`` is
    ``valid``, ``infeasible`` or the name of the exception it raised."""
    from commonroad.planning.planning_problem import PlanningProblemSet
    from commonroad_dc.feasibility.solution_checker import SolutionCheckerException, valid_solution

    from ebmtraj import commonroad_tools as ct

    def wrapped(scenario, problem):
        states = fn(scenario, problem)
        path = ct.write_solution(folder / name / f"solution_KS2:WX1:{scenario.scenario_id}.xml",
                                 scenario, problem, states)
        try:
            ok, _ = valid_solution(scenario, PlanningProblemSet([problem]), ct.read_solution(path))
            verdict = "valid" if ok else "infeasible"
        except SolutionCheckerException as err:
            verdict = type(err).__name__
        wrapped.last = dict(getattr(fn, "last", {}) or {}, solution_check=verdict)
        return states

    wrapped.last = {}
    return wrapped


if __name__ == "__main__":
    main()
