"""Episodes, summaries, options and JSON reports of the planner evaluations (see
:mod:`ebmtraj.eval`)."""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np


def planner_parser(prog: str, description: str, *, modes: bool = True) -> argparse.ArgumentParser:
    """An argument parser with the options every planner evaluation takes: the checkpoint,
    search steps, warm start, time budget, (mode), seed, threads and the JSON report's path."""
    ap = argparse.ArgumentParser(prog=prog, description=description)
    ap.add_argument("checkpoint", help="trained model (IOC model.pt or planner checkpoint)")
    ap.add_argument("--steps", type=int, default=None, help="search steps per plan (default: checkpoint's)")
    ap.add_argument("--no-warm-start", action="store_true", help="plan every cycle from the start only")
    ap.add_argument("--time-budget", type=float, default=None, help="seconds per plan (anytime)")
    if modes:
        ap.add_argument("--mode", choices=("min_cost", "sample"), default="min_cost")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="write the JSON report here")
    return ap


def markdown_table(columns: list[str], rows: list[list]) -> str:
    """A Markdown table of string cells."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def load_planner(args: argparse.Namespace):
    """The planner of :func:`planner_options`' arguments (torch threads set)."""
    import torch

    from ..planner import Planner, PlannerConfig

    torch.set_num_threads(args.threads)
    return Planner.from_checkpoint(args.checkpoint, PlannerConfig(
        mode=getattr(args, "mode", "min_cost"), steps=args.steps, time_budget=args.time_budget,
        seed=args.seed, warm_start=not args.no_warm_start))


def episode_records(episodes) -> list[dict]:
    """Episodes (dataclasses) as JSON-ready dicts, without their per-plan latencies."""
    return [{k: v for k, v in asdict(e).items() if k != "latencies"} for e in episodes]


def latency_summary(episodes) -> dict:
    """Median and 95th percentile [ms] and count of the episodes' plan latencies (s each), {} if
    none."""
    lat = [x for e in episodes for x in (e.latencies or [])]
    if not lat:
        return {}
    return {"latency_median_ms": float(np.median(lat) * 1e3),
            "latency_p95_ms": float(np.percentile(lat, 95) * 1e3), "plans": len(lat)}


def rate(episodes, flag) -> float:
    """The share of episodes for which ``flag(e)`` holds."""
    return float(np.mean([bool(flag(e)) for e in episodes]))


def finish(report: dict, table: str, out: str | None) -> dict:
    """Print the table; write the report as JSON to ``out`` (atomically) when given."""
    print(table)
    if out:
        from ebmcore.io import atomic_write

        text = json.dumps(report, indent=1)
        atomic_write(out, lambda tmp: Path(tmp).write_text(text))
    return report


def entry(run, prog: str):
    """The command-line entry of an evaluation: ``run(argv) -> report``, wrapped with the suite's
    one-line error policy (:func:`ebmcore.cli_errors.cli_main`); returns ``main(argv) -> int``."""
    from ebmcore.cli_errors import cli_main

    @cli_main(prog)
    def main(argv=None) -> int:
        run(argv)
        return 0

    return main
