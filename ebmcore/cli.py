"""``ebmcore``: train and sample the image and video EBMs from a config.

    ebmcore train configs/texture_brick.yaml [key.sub=value ...] [--fresh]
    ebmcore sample runs/texture_brick [--n 8] [--steps 200]
    ebmcore recover runs/texture_brick [--mask center|frames]

Outputs go to ``<out_dir>/<name>/``: config.yaml, checkpoint.pt, metrics, curves.png,
samples/*.png (and .gif for videos), synthesis.*, recovery_*. ``key.sub=value`` overrides may
sit anywhere on the command line. ``--fresh`` sets an existing run aside
(``<run>.previous-<time>/``) once the new run is certain to start. Errors print one line
(``ebmcore: error: ...``, exit status 2); ``--debug`` adds the traceback.
"""
from __future__ import annotations

import argparse
import json

from . import convnet_tasks as tasks
from .cli_errors import cli_main, parse_with_overrides


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ebmcore", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train an image or video EBM from a YAML config")
    t.add_argument("config")
    t.add_argument("overrides", nargs="*", help="key.sub=value")
    t.add_argument("--fresh", action="store_true", help="start over; the existing run is set aside, not deleted")
    s = sub.add_parser("sample", help="synthesise from noise with a trained run")
    s.add_argument("run_dir")
    s.add_argument("--n", type=int)
    s.add_argument("--steps", type=int)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--size", type=int, help="image side in pixels (default: the training size)")
    r = sub.add_parser("recover", help="recover a masked region or missing frames")
    r.add_argument("run_dir")
    r.add_argument("--mask", default="center", choices=["center", "frames"])
    r.add_argument("--steps", type=int)
    r.add_argument("--seed", type=int, default=0)
    for command in (t, s, r):
        command.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return p


@cli_main("ebmcore")
def main(argv: list[str]) -> int:
    args = parse_with_overrides(_parser(), argv)
    if args.command == "train":
        cfg = tasks.load_experiment(args.config, args.overrides)
        trainer = tasks.train(cfg, resume=not args.fresh)
        print(f"trained {cfg.name}: {trainer.step} steps -> {cfg.run_dir}")
    elif args.command == "sample":
        x = tasks.synthesise(args.run_dir, args.n, args.steps, args.seed, args.size)
        print(f"wrote {len(x)} samples to {args.run_dir}/synthesis.*")
    else:
        print(json.dumps(tasks.recover(args.run_dir, args.mask, args.steps, args.seed)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
