"""Prediction from a learned EBM-IOC energy, for training-side evaluation and the planner alike.

:class:`RowEnergy` is the energy searched over the control sequences z (B, T, 2) of B rows
(agents, or copies of agents), in whitened coordinates (:class:`ebmtraj.cost.ControlParam`)::

    E(z) = C_theta(x(u(z)), u(z), e, h) + pair terms + |z|^2 / (2 sigma_ref^2)

with the cost's gradient (pair terms included) bounded per row to ``model.grad_clip``, as in
:meth:`ebmtraj.cost.IOCEnergy.energy`. The nominal trajectory and the history encoding are
computed once per energy, not at every step. Pair terms (:mod:`ebmtraj.interaction`) come in
two kinds:

* joint (``joint_weight``): each row's neighbour slots that hold another row of the batch
  (``nbr_row``) see that row's *current* trajectory; each row pays half of ``joint_weight``
  times its overlap + same-lane order penalties (every footprint grown by ``margin`` [m]), so
  a scene's rows sum to its joint energy;
* fixed (``fixed_weight``, planning one vehicle): the same penalties against the neighbours'
  constant-velocity extrapolations, the row's footprint grown by ``margin`` [m].

:func:`predict` runs the search of :class:`ebmtraj.model.PredictConfig` (closed-form start,
Adam, Langevin; :mod:`ebmtraj.search`) over rows, chunked; with ``joint=True`` whole scenes are
kept or replaced together and a deadline stops it anytime.
"""
from __future__ import annotations

import math
from dataclasses import replace

import torch

from ebmcore.errors import DataError

from .cost import IOCEnergy
from .interaction import (box_contact, disc_contact, footprint, heading_vectors, live_neighbours, live_tracks,
                          pair_index, pair_parts, pair_penalty_fast)
from .model import PredictConfig
from .search import anytime_search, clip_rows, generator_start, reference_start

HORIZONS = (10, 20, 30, 40)   # steps = 1, 2, 3, 4 s at 10 Hz
PAIR_KEYS = ("nbr_row", "rel_angle", "rel_shift")


def start_order(cond: dict, dt: float = 0.1) -> torch.Tensor:
    """(N, M) +1 where a neighbour's footprint centre starts ahead of the row's, -1 behind,
    along the row's heading (from the extrapolated ``nbr_pos`` / ``nbr_vel`` one step back)."""
    lon0 = cond["nbr_pos"][:, :, 0, 0] - cond["nbr_vel"][:, :, 0, 0] * dt + cond["ref"][:, None]
    return torch.where(lon0 >= 0, 1.0, -1.0)


def row_pair_parts(cond: dict, joint_weight, fixed_weight, margin) -> dict | None:
    """The control-independent parts (:func:`ebmtraj.interaction.pair_parts`) of the pair terms
    of :func:`row_forward` for the rows of ``cond``: footprints grown by ``margin`` (the fixed
    neighbours' not), start order (:func:`start_order`), the fixed neighbours' discs or the live
    slots' gather and rotation. None without pair terms."""
    if joint_weight:
        return pair_parts(cond["size"] + margin, cond["nbr_size"] + margin, cond["nbr_row"] >= 0,
                          start_order(cond), cond=cond)
    if fixed_weight:
        nbr_head = cond["nbr_heading"][..., None].expand(-1, -1, cond["nominal"].shape[1])
        return pair_parts(cond["size"] + margin, cond["nbr_size"], cond["nbr_valid"] > 0, start_order(cond),
                          nbr_centre=cond["nbr_pos"], nbr_heading=nbr_head)
    return None


def row_forward(model: IOCEnergy, z: torch.Tensor, cond: dict, enc, joint_weight: float,
                fixed_weight: float, margin: float, gap: float = 2.0, parts: dict | None = None):
    """(cost incl. pair terms (B,), states (B,T,6), controls (B,T,2)) of z (B,T,2); ``gap`` [m]:
    the joint order penalty's bumper gap; ``parts``: :func:`row_pair_parts` of ``cond`` (None:
    computed here)."""
    states, u = model.rollout(z, cond)
    if not (joint_weight or fixed_weight):
        return model.cost(states, u, cond, cond["nominal"], enc=enc), states, u
    if parts is None:
        parts = row_pair_parts(cond, joint_weight, fixed_weight, margin)
    head = heading_vectors(states[..., 3])
    centre = footprint(states, cond["ref"], head)[0]
    if joint_weight:
        nbr_pos, nbr_vel, nbr_head = live_tracks(parts, centre, head, states[..., 2], cond["nbr_pos"],
                                                 cond["nbr_vel"])
        c2 = dict(cond, nbr_pos=nbr_pos, nbr_vel=nbr_vel)
        cost = model.cost(states, u, c2, cond["nominal"], enc=enc)
        pair = pair_penalty_fast(parts, centre, head, nbr_pos, nbr_head, gap)
        return cost + 0.5 * joint_weight * pair, states, u
    cost = model.cost(states, u, cond, cond["nominal"], enc=enc)
    return cost + fixed_weight * pair_penalty_fast(parts, centre, head, cond["nbr_pos"]), states, u


_COMPILED: dict = {}


def _compiled(fn):
    """``torch.compile`` of ``fn``, once per process (shape-specialised)."""
    if fn not in _COMPILED:
        _COMPILED[fn] = torch.compile(fn, dynamic=False)
    return _COMPILED[fn]


class RowEnergy:
    """The search energy of the rows of ``cond`` (see module docstring).

    ``compile=True`` evaluates the forward pass through ``torch.compile`` (a one-off compilation
    of minutes per input shape, then a few fused kernels)."""

    def __init__(self, model: IOCEnergy, cond: dict, *, joint_weight: float = 0.0,
                 fixed_weight: float = 0.0, margin: float = 0.0, compile: bool = False,
                 gap: float = 2.0):
        self.model, self.compile = model, compile
        self.weights = (float(joint_weight), float(fixed_weight), float(margin), float(gap))
        cond = dict(cond)
        with torch.no_grad():
            cond["nominal"] = model.nominal(cond)
            self.enc = model.cost.neural.encode(cond) if model.cost.use_neural else None
            self.parts = row_pair_parts(cond, *self.weights[:3])
        self.cond = cond
        self.last = None

    def forward(self, z: torch.Tensor):
        fn = _compiled(row_forward) if self.compile else row_forward
        return fn(self.model, z, self.cond, self.enc, *self.weights, self.parts)

    def prior(self, z: torch.Tensor) -> torch.Tensor:
        sigma = self.model.sigma_ref
        return z.new_zeros(z.shape[0]) if sigma is None else z.pow(2).flatten(1).sum(1) / (2 * sigma ** 2)

    def energy_and_grad(self, z: torch.Tensor):
        """(energy (B,), gradient (B,T,2) with the cost's part clipped per row)."""
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            cost = self.forward(z)[0]
            (g,) = torch.autograd.grad(cost.sum(), z)
        z = z.detach()
        g = clip_rows(g, float(self.model.grad_clip or 0.0))
        if self.model.sigma_ref is not None:
            g = g + z / self.model.sigma_ref ** 2
        return cost.detach() + self.prior(z), g

    def energy(self, z: torch.Tensor) -> torch.Tensor:
        """Energy (B,) of z (B,T,2) without a gradient (the search's last evaluation); keeps
        (z, states, controls) as ``last``, so the search's result need not be rolled out again."""
        z = z.detach()
        with torch.no_grad():
            cost, states, u = self.forward(z)
        self.last = (z, states, u)
        return cost + self.prior(z)

    def rollout(self, z: torch.Tensor):
        """(states (B,T,6), controls (B,T,2)) of z (B,T,2) without a gradient (``last``'s when
        z is the last evaluated one)."""
        if self.last is not None and self.last[0].shape == z.shape and torch.equal(self.last[0], z):
            return self.last[1:]
        with torch.no_grad():
            return self.model.rollout(z.detach(), self.cond)

    def evaluate(self, z: torch.Tensor):
        """(energy (B,), cost (B,), states (B,T,6), controls (B,T,2)) without gradients."""
        z = z.detach()
        with torch.no_grad():
            cost, states, u = self.forward(z)
        return cost + self.prior(z), cost, states, u


def repeat_rows(cond: dict, k: int) -> dict:
    """Each row k times in a row (row i -> rows i*k .. i*k+k-1); copy j of a row sees copy j of
    its live neighbours."""
    out = {key: v.repeat_interleave(k, dim=0) for key, v in cond.items()}
    if "nbr_row" in out:
        row, copy = out["nbr_row"], torch.arange(out["nbr_row"].shape[0]) % k
        out["nbr_row"] = torch.where(row >= 0, row * k + copy[:, None], row)
    return out


def first_copies(cond: dict, energy: RowEnergy, k: int) -> tuple[dict, tuple | None]:
    """(cond with its nominal, neural encoding) of the rows of ``cond`` from ``energy``, built on
    those rows repeated k times (:func:`repeat_rows`), so that one energy serves the start of
    the search and its k chains per row (the encoding is computed once)."""
    if k == 1:
        return energy.cond, energy.enc
    enc = None if energy.enc is None else (energy.enc[0][::k], energy.enc[1])
    return dict(cond, nominal=energy.cond["nominal"][::k]), enc


def search_rows(model: IOCEnergy, cond: dict, cfg: PredictConfig, *, make_energy,
                groups: torch.Tensor | None = None, generator: torch.Generator | None = None,
                deadline: float | None = None, extra_starts: torch.Tensor | None = None,
                chains: int = 1, seconds_per_row: float = 0.0, start: torch.Tensor | None = None) -> dict:
    """The search of ``cfg`` for the rows of ``cond``: start, Adam, then descent or sampling.

    ``make_energy(cond) -> RowEnergy``; ``groups`` (N,) int64 rows kept together (scenes);
    'adam' mode only: ``extra_starts`` (N, E, T, 2) more chains per row (a warm start) and
    ``chains - 1`` more at the start plus N(0, init_std^2), each searched alongside the start.
    ``seconds_per_row``: the expected time of one evaluation per row, so that no evaluation
    starts that would end past the ``deadline``. ``start`` (N,T,2): where the search starts in
    place of ``cfg.init``'s start (its Adam steps still run). Returns ``z`` (N,K,T,2), ``states`` (N,K,T,6),
    ``controls`` (N,K,T,2), ``energy`` and ``cost`` (N,K) as the search evaluated them (NaN
    where the deadline left no evaluation), ``iterations``, ``deadline_hit`` and
    ``seconds_per_row`` (measured seconds of one evaluation per row; None without one) and
    ``search_seconds`` (spent in evaluations)."""
    gen = generator or torch.Generator().manual_seed(cfg.seed)
    n = cond["x0"].shape[0]
    k = 1   # chains per row of the Adam search: the start, the extra starts, the noisy ones
    if cfg.mode == "adam" and (extra_starts is not None or chains > 1):
        k = 1 + (0 if extra_starts is None else extra_starts.shape[1]) + chains - 1
    energy = make_energy(cond if k == 1 else repeat_rows(cond, k))
    own_cond, own_enc = first_copies(cond, energy, k)
    fixed_start, start = start, cond["x0"].new_zeros(n, model.cost.steps, 2)
    if fixed_start is not None:
        start = fixed_start.to(start.dtype)
    elif cfg.init == "generator" and model.cost.use_neural:
        with torch.no_grad():
            start = generator_start(model, own_cond, own_enc)
    elif cfg.init in ("reference", "mincost") and model.cost.use_neural:
        start = reference_start(model, own_cond, own_enc)
    hit, iters, spent, evals = False, 0, 0.0, 0

    best_e = None

    def run(e, z0, k, **kw):
        nonlocal hit, iters, best_e, spent, evals
        g = None if groups is None else groups.repeat_interleave(k) * k + torch.arange(len(z0)) % k
        r = anytime_search(e.energy_and_grad, z0, energy_fn=e.energy, groups=g, deadline=deadline, generator=gen,
                           expected=seconds_per_row * len(z0), **kw)
        hit, iters, spent = hit or r.deadline_hit, iters + r.iterations, spent + r.seconds
        evals += r.iterations * len(z0)
        best_e = r.energy
        return r.z

    if k > 1:
        T = model.cost.steps
        noisy = start[:, None] + cfg.init_std * torch.randn((n, chains - 1, T, 2), generator=gen)
        extra = start.new_zeros(n, 0, T, 2) if extra_starts is None else extra_starts.to(start.dtype)
        start = torch.cat([start[:, None], extra, noisy], 1).flatten(0, 1)
    if cfg.mode == "adam" or (cfg.mode == "sample" and cfg.init in ("mincost", "generator")):
        start = run(energy, start, k, steps=cfg.opt_steps, optimiser="adam", lr=cfg.adam_lr)
    if cfg.mode == "adam":
        z = start
    elif cfg.mode == "descent":
        z = run(energy, start, 1, steps=cfg.steps, optimiser="langevin", step_size=cfg.step_size)
    else:
        k = cfg.samples
        energy = make_energy(repeat_rows(cond, k)) if k > 1 else energy
        start = start.repeat_interleave(k, dim=0)
        z0 = start + cfg.init_std * start_noise(n, k, start.shape[1:], gen, start.dtype, kind=cfg.sample_starts)
        z = run(energy, z0, k, steps=cfg.steps, optimiser="langevin", step_size=cfg.step_size,
                noise=True)
    if best_e is None or len(best_e) != len(z):                      # not searched: evaluate
        best_e = energy.evaluate(z)[0] if deadline is None else torch.full(z.shape[:1], math.inf)
    states, u = energy.rollout(z)
    e = torch.where(torch.isinf(best_e), torch.full_like(best_e, math.nan), best_e)
    c = e - energy.prior(z)
    view = lambda x: x.view(n, k, *x.shape[1:])
    return {"z": view(z), "states": view(states), "controls": view(u), "energy": view(e),
            "cost": view(c), "iterations": iters, "deadline_hit": hit,
            "seconds_per_row": spent / evals if evals else None, "search_seconds": spent}


def start_noise(n: int, k: int, shape, generator: torch.Generator, dtype=torch.float32,
                *, kind: str) -> torch.Tensor:
    """(n*k, *shape) offsets of the K sampling chains of n rows from their start, before the
    factor ``init_std`` (row i's chains are rows i*k .. i*k+k-1). ``kind``
    (``PredictConfig.sample_starts``): 'iid' (each N(0, I)); 'antithetic' (pairs +e, -e of one N(0, I)
    draw e, the last chain alone when K is odd): every direction a chain explores, another
    explores the opposite way, so the chains spread on both sides of the start (the minimum
    cost) and their mean stays near it; 'mode' (chain 0 at the start itself, the rest
    antithetic pairs)."""
    if kind not in ("iid", "antithetic", "mode"):
        raise ValueError(f"sample starts must be iid, antithetic or mode, got {kind!r}")
    if kind == "iid":
        return torch.randn((n * k, *shape), generator=generator, dtype=dtype)
    lead = 1 if kind == "mode" else 0
    pairs = (k - lead) // 2
    e = torch.randn((n, pairs, *shape), generator=generator, dtype=dtype)
    parts = [torch.zeros((n, lead, *shape), dtype=dtype), torch.stack([e, -e], 2).flatten(1, 2)]
    if (k - lead) % 2:
        parts.append(torch.randn((n, 1, *shape), generator=generator, dtype=dtype))
    return torch.cat(parts, 1).flatten(0, 1)


def predict(model: IOCEnergy, cond: dict, cfg: PredictConfig, *, joint: bool = False,
            deadline: float | None = None, compile: bool = False) -> dict[str, torch.Tensor]:
    """Predictions per row of ``cond`` (the tensors of :mod:`ebmtraj.cost_inputs`): ``z``
    (N,K,T,2), ``states`` (N,K,T,6) in the agent frame, ``energy`` and ``cost`` (N,K); K =
    ``cfg.samples`` for 'sample', else 1; ``deadline_hit``.

    ``joint=True``: the joint multi-agent energy over the rows of each scene (rows sorted by
    ``scene``, with ``agent`` and ``nbr_agent``; chunks never split a scene), weight
    ``cfg.interaction_weight``, order gap ``cfg.pair_gap``; with ``cfg.joint_start`` =
    'independent' its search starts at the independent minimum-cost controls and runs
    ``cfg.joint_steps`` Adam steps on the joint energy, and (mode 'adam') only scenes where the
    independent plans bring two vehicles into contact (:func:`scene_contact`) take the joint
    result, in rounds until they are apart (:func:`repair_contacts`): a repair of the
    independent plans that leaves the others as they are. Joint sampling (mode 'sample') runs
    at most one round (``cfg.repair_round_steps``) of those joint steps on every scene before
    its chains."""
    model.eval()
    if joint and "nbr_row" not in cond:
        cond = dict(cond, **pair_index(cond["scene"], cond["agent"], cond["nbr_agent"], cond["origin"]))
    keys = [k for k in cond if k not in ("scene", "agent", "nbr_agent", "origin", "future")]
    k = cfg.samples if cfg.mode == "sample" else 1
    gen = torch.Generator().manual_seed(cfg.seed)
    parts, hit = [], False
    for sl in _chunks(cond, max(1, cfg.chunk // k), joint):
        c = {key: cond[key][sl] for key in keys if joint or key not in PAIR_KEYS}
        groups = None
        if joint:
            c["nbr_row"] = torch.where(c["nbr_row"] >= 0, c["nbr_row"] - sl.start, c["nbr_row"])
            groups = torch.unique(cond["scene"][sl], return_inverse=True)[1]
        res = predict_rows(model, c, cfg, joint=joint, groups=groups, generator=gen,
                           deadline=deadline, compile=compile)
        parts.append(res)
        hit = hit or parts[-1]["deadline_hit"]
    out = {key: torch.cat([p[key] for p in parts]) for key in ("z", "states", "controls", "energy", "cost")}
    out["deadline_hit"] = hit
    return out


def predict_rows(model: IOCEnergy, c: dict, cfg: PredictConfig, *, joint: bool = False,
                 groups: torch.Tensor | None = None, generator: torch.Generator | None = None,
                 deadline: float | None = None, compile: bool = False, fixed_weight: float = 0.0,
                 margin: float = 0.0, **search_kw) -> dict:
    """The prediction of ``cfg`` for one batch of rows ``c`` (a chunk of :func:`predict`, or
    the planner's rows): :func:`search_rows` on the row energy, with the joint repair of
    ``cfg.joint_start = 'independent'`` (see :func:`predict`). ``joint``: rows carry live slots
    (``nbr_row`` ...) and ``groups`` their scenes; ``fixed_weight`` / ``margin``: pair terms
    against fixed neighbours (planning one vehicle); ``search_kw``: more :func:`search_rows`
    arguments (``extra_starts``, ``chains``, ``seconds_per_row``). Returns its dict."""
    make = lambda cc: RowEnergy(model, cc, joint_weight=cfg.interaction_weight if joint else 0.0,
                                fixed_weight=fixed_weight, margin=margin, compile=compile,
                                gap=cfg.pair_gap)
    if not (joint and cfg.joint_start == "independent"):
        return search_rows(model, c, cfg, make_energy=make, groups=groups, generator=generator,
                           deadline=deadline, **search_kw)
    indep = lambda cc: RowEnergy(model, cc, compile=compile)
    solo = replace(cfg, mode="adam", samples=1)
    alone = search_rows(model, c, solo, make_energy=indep, generator=generator, deadline=deadline,
                        seconds_per_row=search_kw.get("seconds_per_row", 0.0))
    ccfg = replace(cfg, opt_steps=cfg.opt_steps if cfg.joint_steps is None else cfg.joint_steps)
    if cfg.mode != "adam":          # joint sampling: one repair round of joint Adam steps first
        scfg = replace(ccfg, opt_steps=min(ccfg.opt_steps, cfg.repair_round_steps))
        return search_rows(model, c, scfg, make_energy=make, groups=groups, generator=generator,
                           deadline=deadline, start=alone["z"][:, 0], **search_kw)
    joint_energy = lambda cc, weight, gap_margin: RowEnergy(
        model, cc, joint_weight=weight, fixed_weight=fixed_weight, margin=gap_margin, compile=compile,
        gap=cfg.pair_gap)
    return repair_contacts(model, c, ccfg, alone, joint_energy, groups, generator=generator,
                           deadline=deadline, **search_kw)


def repair_contacts(model: IOCEnergy, c: dict, cfg: PredictConfig, alone: dict, make_energy,
                    groups: torch.Tensor, **search_kw) -> dict:
    """The joint repair (mode 'adam'): the independent minimum-cost result ``alone`` of the
    rows ``c`` (N rows, K = 1; ``make_energy(cond, weight, margin) -> RowEnergy``, the joint
    energy of some rows), with the scenes (``groups`` (N,)) where it brings two vehicles
    into contact (:func:`scene_contact`) replaced by the joint search of ``cfg`` from their
    independent controls.

    The contact test is ``cfg.repair_contact`` ('box': the footprint rectangles,
    as the collision metric tests them). The ``cfg.joint_steps`` joint Adam steps run in rounds
    of ``cfg.repair_round_steps``: after each round the contact test runs
    again, and only the scenes still in contact go on, from where the round left them, with the
    pair weight multiplied by ``cfg.repair_growth``; scenes out of contact keep
    the round's result. ``cfg.repair_margin`` [m] grows the footprints of the
    joint energy's pair terms: the three covering discs of a 4.5 x 1.8 m car miss its corners
    (the end disc's radius is 1.13 m, the corner 1.27 m from its centre), so a corner-to-corner
    overlap would have no overlap gradient; grown by 0.36 m or more they reach them. Live slots only
    hold rows of the same scene, so the contact scenes are searched on their own (their rows
    alone: the same per-row updates and per-scene choices as in the whole batch); without a
    contact no joint evaluation runs."""
    round_steps, growth = cfg.repair_round_steps, cfg.repair_growth
    margin, contact = cfg.repair_margin, cfg.repair_contact
    total = cfg.opt_steps
    out = {key: alone[key].clone() for key in ("z", "states", "controls", "energy", "cost")}
    out.update(iterations=alone["iterations"], deadline_hit=alone["deadline_hit"],
               seconds_per_row=alone["seconds_per_row"], search_seconds=alone["search_seconds"],
               repair_rounds=0)
    hit = scene_contact(out["states"][:, 0], c, groups, test=contact)
    done, rnd, weight = 0, 0, cfg.interaction_weight
    while bool(hit.any()) and (done < total or total == 0 and rnd == 0):
        steps = min(round_steps, total - done) if round_steps > 0 else total - done
        rows = hit.nonzero().squeeze(1)
        kw = {k: (v[rows] if k == "extra_starts" and v is not None else v) for k, v in search_kw.items()}
        cc = subset_rows(c, rows)
        make = lambda cond, w=weight: make_energy(cond, w, margin)
        res = search_rows(model, cc, replace(cfg, opt_steps=steps, interaction_weight=weight), make_energy=make,
                          groups=groups[rows], start=out["z"][rows, 0], **kw)
        out["iterations"] = res["iterations"]
        out["deadline_hit"] = out["deadline_hit"] or res["deadline_hit"]
        out["seconds_per_row"] = res["seconds_per_row"] or out["seconds_per_row"]
        out["search_seconds"] += res["search_seconds"]
        for key in ("z", "states", "controls", "energy", "cost"):
            out[key][rows] = res[key]
        done, rnd, weight = done + steps, rnd + 1, weight * growth
        out["repair_rounds"] = rnd
        if steps == 0 or res["deadline_hit"]:
            break
        still = scene_contact(res["states"][:, 0], cc, groups[rows], test=contact)
        hit = torch.zeros_like(hit)
        hit[rows] = still
    return out


def subset_rows(cond: dict, rows: torch.Tensor) -> dict:
    """The rows ``rows`` (R,) int64 of ``cond`` (every value (N, ...)), live slots (``nbr_row``)
    renumbered; slots holding a row outside ``rows`` become empty (-1)."""
    out = {k: v[rows] for k, v in cond.items()}
    if "nbr_row" in out:
        new = torch.full((len(cond["x0"]),), -1, dtype=torch.int64)
        new[rows] = torch.arange(len(rows))
        nbr = out["nbr_row"]
        out["nbr_row"] = torch.where(nbr >= 0, new[nbr.clamp_min(0)], nbr)
    return out


def scene_contact(states: torch.Tensor, cond: dict, groups: torch.Tensor, margin: float = 0.0,
                  test: str = "disc") -> torch.Tensor:
    """(N,) bool: rows of scenes (``groups`` (N,)) where some row's states (N,T,6) bring its
    footprint into contact with another row's (live slots of ``cond``) at some step; ``margin``
    [m] grows every footprint's length and width. ``test``: 'disc' (the covering discs of
    :func:`ebmtraj.interaction.disc_contact`, which reach past the rectangle's sides and ends
    but miss its corners), 'box' (the rectangles themselves, as the collision metric tests them,
    :func:`ebmtraj.interaction.box_contact`) or 'either'."""
    centre, psi = footprint(states, cond["ref"])
    nbr_pos, _, nbr_head, live = live_neighbours(cond, centre, psi, states[..., 2])
    args = (centre, psi, cond["size"] + margin, nbr_pos, nbr_head, cond["nbr_size"] + margin, live)
    if test not in ("disc", "box", "either"):
        raise ValueError(f"contact test must be disc, box or either, got {test!r}")
    hit = disc_contact(*args) if test != "box" else torch.zeros_like(live[:, 0])
    if test != "disc":
        hit = hit | box_contact(*args)
    per_scene = torch.zeros(int(groups.max()) + 1, dtype=torch.int64).index_add_(0, groups, hit.long())
    return per_scene[groups] > 0


def predict_joint(model: IOCEnergy, cond: dict, cfg: PredictConfig, **kw) -> dict[str, torch.Tensor]:
    """:func:`predict` with the joint multi-agent energy."""
    return predict(model, cond, cfg, joint=True, **kw)


def _chunks(cond: dict, rows: int, keep_scenes: bool):
    """Row slices of about ``rows``; with ``keep_scenes``, never splitting one scene."""
    n = cond["x0"].shape[0]
    if not keep_scenes:
        return [slice(lo, min(lo + rows, n)) for lo in range(0, n, rows)]
    scene = cond["scene"]
    if n > 1 and bool((scene[1:] < scene[:-1]).any()):
        raise DataError("multi-agent rows must be sorted by scene")
    cuts = [0]
    while cuts[-1] < n:
        hi = min(cuts[-1] + rows, n)
        while 0 < hi < n and scene[hi] == scene[hi - 1]:
            hi += 1
        cuts.append(hi)
    return [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:])]


def positions(pred: dict) -> torch.Tensor:
    """Predicted recorded-point positions (N,K,T,2) in the agent frame."""
    return pred["states"][..., :2]


def rmse_table(pos: torch.Tensor, future: torch.Tensor, horizons=HORIZONS) -> list[float]:
    """RMSE [m] at each horizon step over rows; pos (N,T,2) or (N,K,T,2) (K averaged first)."""
    if pos.dim() == 4:
        pos = pos.mean(1)
    err2 = ((pos - future) ** 2).sum(-1)
    return [float(err2[:, h - 1].mean().sqrt()) for h in horizons]
