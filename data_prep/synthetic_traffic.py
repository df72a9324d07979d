"""Command line of the synthetic NGSIM-format recording (:mod:`ebmtraj.data.synthetic`)::

    python -m data_prep.synthetic_traffic out.txt --seed 0 --duration 60 --vehicles 30
"""
from __future__ import annotations

import argparse

from ebmtraj.data.synthetic import write_recording


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Write a synthetic NGSIM-format recording from "
                                             "highway-env IDM/MOBIL traffic.")
    ap.add_argument("out", help="output .txt path")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds")
    ap.add_argument("--vehicles", type=int, default=30)
    ap.add_argument("--lanes", type=int, default=4)
    a = ap.parse_args(argv)
    path = write_recording(a.out, seed=a.seed, duration_s=a.duration, vehicles=a.vehicles,
                           lanes=a.lanes)
    print(path)


if __name__ == "__main__":
    main()
