"""Runs of an EBM-IOC experiment config: train (EBM-IOC, LSTM), predict and evaluate.

Everything reads one prepared scene cache (``python -m data_prep.ngsim prepare <dataset>``),
uses its train / val / test split as is, and writes to ``runs/<name>/``:

* ``model.pt`` (best EBM-IOC on validation), ``checkpoint.pt``, ``metrics.csv`` ... (the engine's
  Trainer), ``train_summary.json``;
* ``lstm.pt``, ``lstm_summary.json``;
* ``eval_<split>.json`` and ``eval_<split>.md``: every method on the identical scenes.

Evaluation protocol: every agent of every test scene is predicted (so collision rates between
predicted agents exist for every method); RMSE at 1-4 s, ADE / FDE and off-road rates are over
the target agent of each scene (each vehicle-window once, the NGSIM convention), against the raw
observed positions; minADE_5 / minFDE_5 over 5 samples (deterministic methods: their one
prediction). The multi-agent table compares joint and independent EBM-IOC sampling on the scenes
with at least two agents, over all their agents.
"""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ebmcore import runs
from ebmcore.config import to_dict
from ebmcore.errors import DataError
from ebmcore.io import atomic_write

from . import ioc
from .config import IOCConfig
from .cost_inputs import build_inputs, future_states, to_recording_frame
from .lstm import LSTM_FILE, load_lstm, predict_lstm, train_lstm
from .metrics import ade_fde, collision_rate, min_ade_fde, offroad_rate, rmse_at


# ----------------------------------------------------------------------------- data

def load_split(cfg: IOCConfig, split: str):
    """(scene tensors, lane maps by recording) of one split of the configured cache, with
    ``cfg.data.history`` history frames: a cache prepared with more keeps its last ones
    (:func:`ebmtraj.data.scenes.trim_history`); one prepared with fewer is a DataError."""
    from .data.scenes import SceneDataset, trim_history

    ds = SceneDataset(cfg.data.root(), split)
    have, want = int(ds.tensors["history"]), cfg.data.history
    if have < want:
        raise DataError(f"{cfg.data.root()}: scenes prepared with {have} history frames, the config asks "
                        f"for data.history={want}; prepare them (`ebmtraj prepare <config>`)")
    return trim_history(ds.tensors, want), ds.lanes


def headways_for(cfg: IOCConfig, scenes: dict):
    """The virtual-leader headways (S, A, H) [m] of ``cfg.data.headway_leads`` from the scene
    cache (:func:`cached_headways`), or None when off."""
    return cached_headways(scenes, cfg.data.root()) if cfg.data.headway_leads else None


def cached_headways(scenes: dict, root) -> np.ndarray:
    """The scene cache's headways (S, A, H) [m] (``headway``, written by ``ebmtraj prepare``:
    recorded for us101-vehicles, derived from the complete traffic for the other data sets);
    a one-line DataError naming the cache folder ``root`` if it holds none."""
    if "headway" not in scenes:
        raise DataError(f"{root}: virtual leaders need the headways, but the scene cache holds "
                        f"none; prepare it again (`ebmtraj prepare <config>`)")
    return scenes["headway"].double().numpy()


def subset_scenes(scenes: dict, idx: torch.Tensor) -> dict:
    """The scenes ``idx`` of a split (per-scene tensors indexed, the rest kept)."""
    n = scenes["mask"].shape[0]
    return {k: (v[idx] if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == n else v)
            for k, v in scenes.items()}


def _pick(n: int, limit: int | None, seed: int) -> torch.Tensor:
    if limit is None or limit >= n:
        return torch.arange(n)
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=g)[:limit].sort().values


def training_rows(cfg: IOCConfig):
    """Target rows of the train split (optionally subsampled) and val rows for selection."""
    sc_tr, lanes_tr = load_split(cfg, "train")
    sc_tr = subset_scenes(sc_tr, _pick(sc_tr["mask"].shape[0], cfg.data.max_train, cfg.seed))
    sc_va, lanes_va = load_split(cfg, "val")
    sc_va = subset_scenes(sc_va, _pick(sc_va["mask"].shape[0], cfg.data.val_rows, cfg.seed + 1))
    if sc_tr["mask"].shape[0] == 0 or sc_va["mask"].shape[0] == 0:
        raise DataError(f"{cfg.data.root()}: the train or val split is empty")
    tr = build_inputs(sc_tr, lanes_tr, "target", cfg.inputs, headways_for(cfg, sc_tr))
    va = build_inputs(sc_va, lanes_va, "target", cfg.inputs, headways_for(cfg, sc_va))
    return sc_tr, tr, va


# ----------------------------------------------------------------------------- training

def fit_ioc(cfg: IOCConfig, log=print) -> dict:
    """Stage 1 (exact ML of the neural term) and stage 2 (analysis by synthesis) on the train
    split, model selection on the val split; writes ``runs/<name>/model.pt``."""
    torch.manual_seed(cfg.seed)
    run_dir = cfg.run_dir()
    runs.refuse_changed_resume(run_dir, to_dict(cfg))  # before stage 1, not once stage 2 opens the run
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    sc_tr, tr, va = training_rows(cfg)
    fs = future_states(sc_tr, tr)
    H, T = tr["hist"].shape[1], tr["future"].shape[1]
    model = ioc.build_model(cfg.model, H, T, ioc.control_scale(fs))
    data, recon = ioc.prepare_training(model, tr, fs, shrink=cfg.model.whiten_shrink)
    log(f"{len(recon)} training windows; observed controls reproduce the smoothed futures with "
        f"RMSE {float(recon.pow(2).mean().sqrt()):.3f} m (median {float(recon.median()):.3f} m)")
    cond_val = ioc.cond_of(va, model)

    def plog(step, value):
        if isinstance(value, str):
            log(f"pretrain step {step}: {value}")
        elif step % 1000 == 0:
            log(f"pretrain step {step}: NLL {value:.2f}")

    losses = ioc.pretrain_neural(model, data, steps=cfg.pretrain.steps, batch_size=cfg.pretrain.batch_size,
                                 lr=cfg.pretrain.lr, seed=cfg.seed, log=plog,
                                 val=(cond_val, va["future"]) if cfg.pretrain.early_stop else None,
                                 eval_every=cfg.pretrain.eval_every)
    ioc.stage2_parameters(model, cfg.stage2.params)
    summary = ioc.train(model, data, cfg.train, run_dir, val=(cond_val, va["future"]), full_config=cfg,
                        eval_every=cfg.evaluate.eval_every, pcfg=cfg.predict,
                        chains=ioc.stage2_chains(model, cfg.stage2.chains, cfg.stage2.gen_lr),
                        regulariser=ioc.nll_anchor(model, cfg.stage2.anchor) if cfg.stage2.anchor else None)
    for h in summary.get("val_history", []):
        log(f"step {h['step']}: val RMSE 1-4 s " + " / ".join(f"{v:.2f}" for v in h["rmse"]))
    summary.update(windows=len(recon), recon_rmse=float(recon.pow(2).mean().sqrt()),
                   recon_median=float(recon.median()), pretrain_nll=losses,
                   weights=model.cost.weights, total_s=time.time() - started)
    _write_json(run_dir / "train_summary.json", summary)
    return summary


def fit_lstm(cfg: IOCConfig, log=print) -> dict:
    """The LSTM baseline on the same rows; writes ``runs/<name>/lstm.pt``."""
    run_dir = cfg.run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    _, tr, va = training_rows(cfg)
    model = ioc.build_model(cfg.model, tr["hist"].shape[1], tr["future"].shape[1])
    for rows in (tr, va):
        rows["nominal"] = ioc.cond_of(rows, model)["nominal"]
    lc = cfg.lstm
    summary = train_lstm(tr, va, run_dir, hidden=lc.hidden, steps=lc.steps, batch_size=lc.batch_size,
                         lr=lc.lr, eval_every=lc.eval_every, seed=cfg.seed,
                         log=lambda s, t: log(f"lstm step {s}: val RMSE " + " / ".join(f"{v:.2f}" for v in t)))
    _write_json(run_dir / "lstm_summary.json", summary)
    return summary


# ----------------------------------------------------------------------------- prediction

def scene_layout(rows: dict, scenes: dict, pos_agent: torch.Tensor, heading_agent: torch.Tensor):
    """Rows' agent-frame predictions -> recording-frame tensors per scene.

    pos_agent (N,K,T,2), heading_agent (N,K,T) for the rows of ``build_inputs(rows='all')``.
    Returns positions (S,K,A,T,2) and headings (S,K,A,T) (zeros where no agent)."""
    S, A = scenes["mask"].shape
    N, K, T = heading_agent.shape
    origin = rows["origin"]
    pos = to_recording_frame(pos_agent.double().reshape(N, K * T, 2), origin).reshape(N, K, T, 2)
    head = heading_agent.double() + origin[:, 2, None, None]
    P = torch.zeros(S, K, A, T, 2, dtype=torch.float64)
    Hd = torch.zeros(S, K, A, T, dtype=torch.float64)
    P[rows["scene"], :, rows["agent"]] = pos
    Hd[rows["scene"], :, rows["agent"]] = head
    return P, Hd


def _heading_from_positions(pos: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
    """Headings (N,T) of a path (N,T,2) from its displacements (the first from ``first``)."""
    d = torch.diff(torch.cat([first[:, None], pos], 1), dim=1)
    h = torch.atan2(d[..., 1], d[..., 0])
    slow = d.norm(dim=-1) < 0.05
    return torch.where(slow, torch.zeros_like(h), h)


def predictions(cfg: IOCConfig, scenes: dict, lanes: dict, methods, log=print) -> dict:
    """Predict every agent of every scene with each method.

    Returns {method: {"pos": (S,K,A,T,2), "head": (S,K,A,T), "time_s": seconds}} in the recording
    frame; K = 5 for sampling methods, 1 otherwise."""
    rows = build_inputs(scenes, lanes, "all", cfg.inputs, headways_for(cfg, scenes))
    out = {}
    model = None
    if any(m.startswith("ebm") for m in methods) or "cv_nominal" in methods or "lstm" in methods:
        path = cfg.run_dir() / ioc.MODEL_FILE
        model = ioc.load_model(path)[0] if path.is_file() else None
        if model is None and any(m.startswith("ebm") for m in methods):
            raise DataError(f"{path}: no trained EBM-IOC model (run `ebmtraj train` first)")
        if model is not None and model.cost.history != rows["hist"].shape[1]:
            raise DataError(f"{path}: the model reads {model.cost.history} history frames, the scenes "
                            f"have {rows['hist'].shape[1]} (data.history); train it on this config")
        nominal_model = model or ioc.build_model(cfg.model, rows["hist"].shape[1], rows["future"].shape[1])
        rows["nominal"] = ioc.cond_of(rows, nominal_model)["nominal"]
    cond = ioc.cond_of(rows)
    for k in ("scene", "agent", "nbr_agent", "origin"):
        cond[k] = rows[k]
    H = int(scenes["history"])
    for name in methods:
        t0 = time.time()
        if name in ("cv", "ca"):
            from .baselines import BASELINES

            st = BASELINES[name](scenes["states"][:, :, :H].double(), int(scenes["future"]),
                                 float(scenes["dt"]))
            out[name] = {"pos": st[:, None, ..., :2], "head": st[:, None, ..., 3]}
        elif name == "cv_nominal":
            pos = rows["nominal"][:, None]
            out[name] = _layout(rows, scenes, pos, torch.zeros(pos.shape[:3]))
        elif name == "lstm":
            lstm = load_lstm(cfg.run_dir() / LSTM_FILE, history=rows["hist"].shape[1])
            pos = predict_lstm(lstm, rows)
            out[name] = _layout(rows, scenes, pos[:, None],
                                _heading_from_positions(pos, torch.zeros_like(pos[:, 0]))[:, None])
        elif name.startswith("ebm"):
            pc = cfg.predict
            mode = {"opt": "adam", "sample": "sample"}[name.split("_")[-1]]
            pc = replace(pc, mode=mode)
            joint = "_joint_" in name
            pred = ioc.predict_joint(model, cond, pc) if joint else ioc.predict(model, cond, pc)
            out[name] = _layout(rows, scenes, pred["states"][..., :2], pred["states"][..., 3])
        else:
            raise ValueError(f"unknown method {name!r}")
        out[name]["time_s"] = time.time() - t0
        log(f"predicted {name} in {out[name]['time_s']:.1f} s")
    return out


def _layout(rows, scenes, pos, head):
    P, Hd = scene_layout(rows, scenes, pos, head)
    return {"pos": P, "head": Hd}


# ----------------------------------------------------------------------------- evaluation

def metrics_table(pred: dict, scenes: dict, lanes: dict) -> dict:
    """Metrics of one method's predictions (see module docstring)."""
    H, T = int(scenes["history"]), int(scenes["future"])
    gt = scenes["positions_raw"][:, :, H:H + T].double()
    pos, head = pred["pos"].double(), pred["head"].double()
    K = pos.shape[1]
    point = pos.mean(1) if K > 1 else pos[:, 0]                  # (S,A,T,2)
    out = {"samples": K}
    out["rmse"] = rmse_at(point[:, 0], gt[:, 0])
    out["ade"], out["fde"] = ade_fde(point[:, 0], gt[:, 0])
    if K > 1:
        out["rmse_single_sample"] = rmse_at(pos[:, 0, 0], gt[:, 0])
    out["min_ade"], out["min_fde"] = min_ade_fde(pos[:, :5, 0], gt[:, 0])
    kw = dict(sizes=scenes["size"].double(), mask=scenes["mask"], ref_offset=scenes["ref_offset"].double())
    out["collision"] = collision_rate(pos[:, 0], head[:, 0], **kw)
    recs = scenes["recordings"]
    maps = [lanes.get(recs[int(r)]) for r in scenes["recording"]]
    if any(m is not None for m in maps):
        out["offroad"] = offroad_rate(pos[:, 0, 0], maps)
    return out


def multi_agent_table(pred: dict, scenes: dict, min_agents: int = 2) -> dict:
    """RMSE / ADE over all agents and collision rates on the scenes with >= min_agents agents."""
    sel = scenes["mask"].sum(1) >= min_agents
    H, T = int(scenes["history"]), int(scenes["future"])
    gt = scenes["positions_raw"][sel][:, :, H:H + T].double()
    pos, head = pred["pos"][sel].double(), pred["head"][sel].double()
    mask = scenes["mask"][sel]
    point = pos.mean(1) if pos.shape[1] > 1 else pos[:, 0]
    out = {"scenes": int(sel.sum()), "agents": int(mask.sum())}
    out["rmse_all_agents"] = rmse_at(point, gt, mask)
    out["ade_all_agents"], out["fde_all_agents"] = ade_fde(point, gt, mask)
    kw = dict(sizes=scenes["size"][sel].double(), mask=mask, ref_offset=scenes["ref_offset"][sel].double())
    out["collision"] = collision_rate(pos[:, 0], head[:, 0], **kw)
    if pos.shape[1] > 1:      # every sample index is one joint draw of the scene
        rates = [collision_rate(pos[:, k], head[:, k], **kw)["scene"] for k in range(pos.shape[1])]
        out["collision_scene_mean_over_samples"] = sum(rates) / len(rates)
    return out


DEFAULT_METHODS = ("cv", "ca", "cv_nominal", "lstm", "ebm_opt", "ebm_sample")
JOINT_METHODS = ("ebm_joint_opt", "ebm_joint_sample")


def evaluate(cfg: IOCConfig, split: str = "test", methods=None, log=print, tag: str = "") -> dict:
    """Every method on the identical scenes of ``split``; writes eval_<split><tag>.json / .md."""
    started = time.time()
    scenes, lanes = load_split(cfg, split)
    scenes = subset_scenes(scenes, _pick(scenes["mask"].shape[0], cfg.data.max_test, cfg.seed + 2))
    methods = list(methods or DEFAULT_METHODS)
    if methods == list(DEFAULT_METHODS):
        if not (cfg.run_dir() / LSTM_FILE).is_file():
            methods.remove("lstm")
        if cfg.evaluate.multi_agent:
            methods += list(JOINT_METHODS)
    preds = predictions(cfg, scenes, lanes, methods, log)
    gt_states = scenes["states"][:, None, :, int(scenes["history"]):]
    preds["ground_truth"] = {"pos": scenes["positions_raw"][:, None, :, int(scenes["history"]):].double(),
                             "head": gt_states[..., 3].double(), "time_s": 0.0}
    result = {"dataset": cfg.data.dataset, "split": split, "scenes": int(scenes["mask"].shape[0]),
              "agents": int(scenes["mask"].sum()), "methods": {}, "multi_agent": {}}
    for name, p in preds.items():
        result["methods"][name] = metrics_table(p, scenes, lanes)
        result["methods"][name]["predict_time_s"] = p["time_s"]
        if name in ("cv", "cv_nominal", "ebm_opt", "ebm_sample", "ground_truth") or "joint" in name:
            result["multi_agent"][name] = multi_agent_table(p, scenes, cfg.evaluate.min_agents)
    run_dir = cfg.run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    result["interaction_weight"] = cfg.predict.interaction_weight
    _write_json(run_dir / f"eval_{split}{tag}.json", result)
    atomic_write(run_dir / f"eval_{split}{tag}.md", lambda p: p.write_text(markdown(result)))
    if cfg.evaluate.record and split == "test" and not tag:
        from ebmcore.results import record

        record("ebmtraj", cfg.evaluate.record, results_payload(result, run_dir), started=started)
    return result


def results_payload(result: dict, run_dir: Path) -> dict:
    """The recorded figures of a test evaluation: RMSE at 1-4 s [m] of constant velocity, the
    LSTM and the minimum-cost EBM-IOC (with its ADE / FDE, the samples' minADE_5 and the share
    of agents colliding with another predicted agent), the joint minimum-cost prediction, and
    the validation mean RMSE of the stage-1 model and of the selected one (train_summary.json)."""
    m = result["methods"]
    rmse = lambda name: [m[name]["rmse"][h] for h in sorted(m[name]["rmse"])]
    test = {name: {"rmse": rmse(name)} for name in ("cv", "lstm") if name in m}
    if "ebm_opt" in m:
        test["ebm_opt"] = {"rmse": rmse("ebm_opt"), "ade": m["ebm_opt"]["ade"], "fde": m["ebm_opt"]["fde"],
                           "minade5": m.get("ebm_sample", {}).get("min_ade"),
                           "collision": m["ebm_opt"]["collision"]["agent"]}
    if "ebm_joint_opt" in m:
        test["ebm_joint_opt"] = {"rmse": rmse("ebm_joint_opt"),
                                 "collision": m["ebm_joint_opt"]["collision"]["agent"]}
    out = {"test": test, "scenes": result["scenes"], "agents": result["agents"]}
    path = run_dir / "train_summary.json"
    if path.is_file():
        summary = json.loads(path.read_text())
        hist = {h["step"]: sum(h["rmse"]) / len(h["rmse"]) for h in summary["val_history"]}
        out["val_mean_rmse"] = {"stage1": hist.get(0), "selected": summary["best_val"],
                                "selected_step": summary["best_step"]}
    return out


def markdown(result: dict) -> str:
    """The evaluation as markdown tables."""
    lines = [f"{result['dataset']} {result['split']}: {result['scenes']} scenes, {result['agents']} agents",
             "", "| method | RMSE 1 s | 2 s | 3 s | 4 s | ADE | FDE | minADE_5 | minFDE_5 | collision (agents) "
             "| off-road (traj.) | predict s |", "|" + "---|" * 12]
    for name, m in result["methods"].items():
        r = m["rmse"]
        off = m.get("offroad", {}).get("trajectory", float("nan"))
        lines.append(f"| {name} | " + " | ".join(f"{r[h]:.2f}" for h in sorted(r))
                     + f" | {m['ade']:.2f} | {m['fde']:.2f} | {m['min_ade']:.2f} | {m['min_fde']:.2f} | "
                     f"{m['collision']['agent']:.3f} | {off:.3f} | {m['predict_time_s']:.0f} |")
    if result["multi_agent"]:
        first = next(iter(result["multi_agent"].values()))
        lines += ["", f"Multi-agent: {first['scenes']} scenes with >= 2 agents, {first['agents']} agents", "",
                  "| method | RMSE 1 s | 2 s | 3 s | 4 s (all agents) | ADE | collision agents | collision scenes |",
                  "|" + "---|" * 8]
        for name, m in result["multi_agent"].items():
            r = m["rmse_all_agents"]
            lines.append(f"| {name} | " + " | ".join(f"{r[h]:.2f}" for h in sorted(r))
                         + f" | {m['ade_all_agents']:.2f} | {m['collision']['agent']:.3f} | "
                         f"{m['collision']['scene']:.3f} |")
    return "\n".join(lines) + "\n"


def _write_json(path: Path, obj) -> None:
    def default(o):
        if isinstance(o, torch.Tensor):
            return o.tolist()
        if isinstance(o, Path):
            return str(o)
        return str(o)

    text = json.dumps(obj, indent=1, default=default)
    atomic_write(path, lambda p: p.write_text(text))
