"""Time EBM-IOC prediction (one agent; a 10-agent scene) and training throughput.

Scenes: one shared CommonRoad NGSIM scenario prepared with up to 9 neighbours within 60 m (so
10-agent scenes exist); the model: a trained ``model.pt`` (``--model``, default
runs/ioc_commonroad/model.pt, with 1 s of history like the scenario's scenes) or, where absent,
a model set up on the scenario without training (the cost of an evaluation does not depend on
the weights). Prediction settings are those of the
experiment config (``--config``): the closed-form reference start, ``opt_steps`` Adam steps
(minimum cost) and ``samples`` x ``steps`` Langevin steps (sampling). Single thread.

    python benchmarks/bench_traj_predict.py --json benchmarks/out/traj_predict.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from ebmcore.io import atomic_write, load_tensors
from ebmcore.paths import data_root

SCENARIO = "USA_US101-10_1_T-1.xml"


def timeit(fn, repeats: int) -> dict:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t))
    times.sort()
    return {"median_ms": statistics.median(times), "p95_ms": times[min(len(times) - 1, int(0.95 * len(times)))],
            "repeats": repeats}


def scenes_with_ten_agents(out: Path):
    from ebmtraj.data.lanes import LaneMap
    from ebmtraj.data.prepare import prepare
    from ebmtraj.data.scenes import SceneConfig

    src = data_root() / "commonroad-ngsim-us101" / SCENARIO
    if not src.is_file():
        sys.exit(f"needs the shared CommonRoad data ({src})")
    root = prepare("commonroad", inputs=[src], out=out, seed=0,
                   scene_config=SceneConfig(neighbours=9, radius=60.0))
    sc = load_tensors(root / "scenes_train.pt")
    lanes = {r: LaneMap.from_tensors(d) for r, d in load_tensors(root / "lanes.pt").items()}
    return sc, lanes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/ioc_commonroad.yaml")
    ap.add_argument("--model", default=None, help="model.pt (default runs/<config name>/model.pt)")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--train-steps", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from ebmcore.learning import Trainer
    from ebmtraj import ioc
    from ebmtraj.config import load
    from ebmtraj.cost_inputs import build_inputs, future_states

    cfg = load(args.config)
    tmp = Path(tempfile.mkdtemp(prefix="bench_traj_"))
    sc, lanes = scenes_with_ten_agents(tmp / "cache")
    n_agents = sc["mask"].sum(1)
    ten = torch.nonzero(n_agents == 10).flatten()
    if len(ten) == 0:
        sys.exit("no 10-agent scene in the scenario")
    rows = build_inputs(sc, lanes, "all", cfg.inputs)
    target = build_inputs(sc, lanes, "target", cfg.inputs)
    path = Path(args.model) if args.model else cfg.run_dir() / ioc.MODEL_FILE
    if path.is_file():
        model = ioc.load_model(path)[0]
        source = str(path)
    else:
        fs = future_states(sc, target)
        model = ioc.build_model(cfg.model, int(sc["history"]), int(sc["future"]), ioc.control_scale(fs))
        ioc.prepare_training(model, target, fs, fit_iters=10)
        source = "untrained (no model.pt)"
    # 9 neighbour slots per agent here (5 in training): the cost takes any number of slots
    cond_all = ioc.cond_of(rows, model)
    for k in ("scene", "agent", "nbr_agent", "origin"):
        cond_all[k] = rows[k]
    s0 = int(ten[0])
    scene_rows = torch.nonzero(rows["scene"] == s0).flatten()
    one = {k: v[scene_rows[:1]] for k, v in cond_all.items() if k in ioc.COND_TENSORS or k == "nominal"}
    scene = {k: v[scene_rows] for k, v in cond_all.items()}
    scene["nbr_agent"] = rows["nbr_agent"][scene_rows]
    pc = cfg.predict
    opt = replace(pc, mode="adam")
    smp = replace(pc, mode="sample")
    res = {"machine": f"{platform.machine()} {os.cpu_count()} CPUs, torch {torch.__version__}, 1 thread",
           "model": source, "predict": {"opt_steps": pc.opt_steps, "adam_lr": pc.adam_lr, "samples": pc.samples,
                                         "langevin_steps": pc.steps, "step_size": pc.step_size}}
    res["one_agent_min_cost"] = timeit(lambda: ioc.predict(model, one, opt), args.repeats)
    res["one_agent_sample_K"] = timeit(lambda: ioc.predict(model, one, smp), args.repeats)
    res["ten_agents_independent_min_cost"] = timeit(lambda: ioc.predict(model, scene, opt), args.repeats)
    res["ten_agents_joint_min_cost"] = timeit(lambda: ioc.predict_joint(model, scene, opt), args.repeats)
    res["ten_agents_joint_sample_K"] = timeit(lambda: ioc.predict_joint(model, scene, smp),
                                              max(5, args.repeats // 3))
    loop = lambda: [ioc.predict(model, {k: v[i:i + 1] for k, v in scene.items()
                                        if k in ioc.COND_TENSORS or k == "nominal"}, opt) for i in range(10)]
    res["ten_agents_python_loop_min_cost"] = timeit(loop, max(5, args.repeats // 3))
    # training throughput: stage 1 and stage 2 steps at the config's batch sizes
    fs = future_states(sc, target)
    m2 = ioc.build_model(cfg.model, int(sc["history"]), int(sc["future"]), ioc.control_scale(fs))
    data, _ = ioc.prepare_training(m2, target, fs, fit_iters=10)
    t = time.perf_counter()
    ioc.pretrain_neural(m2, data, steps=100, batch_size=cfg.pretrain.batch_size)
    res["pretrain_steps_per_s"] = 100 / (time.perf_counter() - t)
    tc = replace(cfg.train, steps=args.train_steps, progress=False, tensorboard=False)
    trainer = Trainer(m2, data, tc, tmp / "run", resume=False)
    t = time.perf_counter()
    trainer.fit()
    dt = time.perf_counter() - t
    res["train"] = {"steps_per_s": args.train_steps / dt, "batch_size": tc.batch_size,
                    "langevin_steps": tc.sampler.steps,
                    "examples_per_s": args.train_steps * tc.batch_size / dt}
    text = json.dumps(res, indent=1)
    print(text)
    if args.json:
        atomic_write(Path(args.json), lambda p: p.write_text(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
