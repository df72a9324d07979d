"""Helpers every model's commands share: JSON out, fresh runs, the config overrides of a command line."""
from __future__ import annotations

import json
from pathlib import Path

from ebmcore.io import atomic_write

from ebm3d.registry import option

#: options that more than one model's commands take
FRESH = option("--fresh", action="store_true", help="ignore an existing checkpoint and start over")
N_SAMPLES = option("--n", type=int, default=None, help="number of samples (default synthesis.n_samples)")
SAMPLES_OUT = option("--out", default="samples_fresh", help="file stem in the run folder (default samples_fresh)")


def write_json(path: Path, obj: dict) -> None:
    """Write ``obj`` as indented JSON to ``path`` (atomically)."""
    text = json.dumps(obj, indent=2)
    atomic_write(path, lambda tmp: tmp.write_text(text))


def print_json(obj: dict) -> None:
    """Print ``obj`` as indented JSON on stdout."""
    print(json.dumps(obj, indent=2))


def load_config(args, task: str | None = None):
    """The experiment of ``args.config`` with the command line's overrides, ``--seed`` and ``task``,
    read by the loader of the model the file names. With ``--fresh`` the run starts over: its
    folder is set aside (not deleted) once data load and training start."""
    from ebm3d.experiment import load_experiment
    from ebmcore.runs import request_fresh

    overrides = list(args.overrides)
    if args.seed is not None:
        overrides.append(f"train.seed={args.seed}")
    if task is not None:
        overrides.append(f"task={task}")
    cfg = load_experiment(args.config, overrides)
    if getattr(args, "fresh", False):
        request_fresh(cfg.run_dir)
    return cfg
