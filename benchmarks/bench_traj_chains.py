"""How far stage-2 chains move: data-started chains against the model's own minimum.

On a trained EBM-IOC checkpoint and ``--rows`` training windows of its config: the observed
controls (``ioc.fit_controls``), the minimum-cost controls (the config's search), and chains of
the config's sampler started at the observed controls with the noise off and on. Prints the mean
distance in ``z`` moved by the chains and to the minimum, the mean energies at the three, and the
mean gap at 4 s [m] between their positions and the observed ones.

    .venv/bin/python benchmarks/bench_traj_chains.py configs/ioc_commonroad.yaml CHECKPOINT \
        [--rows 256] [--init mincost --opt-steps 10]
"""
from __future__ import annotations

import argparse
from dataclasses import replace

import torch

from ebmcore.training_config import sampler_kwargs
from ebmcore.sampling import sample
from ebmtraj import ioc
from ebmtraj.config import load
from ebmtraj.cost_inputs import future_states
from ebmtraj.experiment import training_rows


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config")
    ap.add_argument("checkpoint")
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--init", default=None, help="the minimum-cost search's start (default: the config's)")
    ap.add_argument("--opt-steps", type=int, default=None, help="its Adam steps (default: the config's)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cfg = load(args.config)
    sc_tr, tr, _ = training_rows(cfg)
    model = ioc.load_model(args.checkpoint)[0]
    fs = future_states(sc_tr, tr)
    idx = torch.arange(0, len(fs), max(1, len(fs) // args.rows))[:args.rows]
    cond = ioc.cond_of({k: v[idx] for k, v in tr.items() if torch.is_tensor(v) and len(v) == len(fs)}, model)
    z_obs, _ = ioc.fit_controls(model, cond, fs[idx])
    search = ioc.selection_config(cfg.predict)
    search = replace(search, init=args.init or search.init,
                     opt_steps=search.opt_steps if args.opt_steps is None else args.opt_steps)
    z_min = ioc.predict(model, cond, search)["z"][:, 0]
    pos = lambda z: model.rollout(z, cond)[0][..., :2]
    energy = lambda z: float(model.energy(z, cond).mean())
    gap4 = lambda z: float((pos(z)[:, -1] - pos(z_obs)[:, -1]).norm(dim=-1).mean())
    dist = lambda a, b: float((a - b).flatten(1).norm(dim=1).mean())
    out = {"rows": len(idx), "to_minimum": dist(z_min, z_obs), "energy_obs": energy(z_obs),
           "energy_min": energy(z_min), "gap4_min": gap4(z_min)}
    for noise in ("none", "constant"):
        kw = sampler_kwargs(replace(cfg.train.sampler, noise=noise))
        z_syn = sample(lambda x: model.energy(x, cond), z_obs.clone(), **kw)
        out[f"moved_noise_{noise}"] = dist(z_syn, z_obs)
        out[f"energy_syn_noise_{noise}"] = energy(z_syn)
        out[f"gap4_noise_{noise}"] = gap4(z_syn)
    for k, v in out.items():
        print(f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}")
    return out


if __name__ == "__main__":
    main()
