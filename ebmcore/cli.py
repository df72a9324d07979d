"""``ebmcore``: train and sample the image and video EBMs from a config.

    ebmcore train configs/texture_brick.yaml [key.sub=value ...]
    ebmcore sample runs/texture_brick [--n 8] [--steps 200]
    ebmcore recover runs/texture_brick [--mask center|frames]

Outputs go to ``<out_dir>/<name>/``: config.yaml, checkpoint.pt, metrics, curves.png,
samples/*.png (and .gif for videos), synthesis.*, recovery_*.
"""
from __future__ import annotations

import argparse
import json

from . import convnet_tasks as tasks


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ebmcore", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train an image or video EBM from a YAML config")
    t.add_argument("config")
    t.add_argument("overrides", nargs="*", help="key.sub=value")
    t.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint in the run folder")
    s = sub.add_parser("sample", help="synthesise from noise with a trained run")
    s.add_argument("run_dir")
    s.add_argument("--n", type=int)
    s.add_argument("--steps", type=int)
    s.add_argument("--seed", type=int, default=0)
    r = sub.add_parser("recover", help="recover a masked region or missing frames")
    r.add_argument("run_dir")
    r.add_argument("--mask", default="center", choices=["center", "frames"])
    r.add_argument("--steps", type=int)
    r.add_argument("--seed", type=int, default=0)
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "train":
        cfg = tasks.load_experiment(args.config, args.overrides)
        trainer = tasks.train(cfg, resume=not args.fresh)
        print(f"trained {cfg.name}: {trainer.step} steps -> {cfg.run_dir}")
    elif args.command == "sample":
        x = tasks.synthesise(args.run_dir, args.n, args.steps, args.seed)
        print(f"wrote {len(x)} samples to {args.run_dir}/synthesis.*")
    else:
        print(json.dumps(tasks.recover(args.run_dir, args.mask, args.steps, args.seed)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
