"""Scene pictures: lanes, history, ground truth, K predicted samples and the minimum-cost path.

:func:`render_scene` draws one scene with matplotlib (Agg, headless) and writes a PNG;
``ebmtraj view`` calls it. Inputs are in the recording frame (metres); by default the picture is
drawn in the target's frame (origin at its last history position, x along its direction of
travel then), so a highway runs left to right. The view is cropped around the target's history
and futures, with equal axes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def render_scene(path: str | Path, *, lanes=None, history=None, future=None, samples=None,
                 min_cost=None, others=None, others_future=None, title: str = "",
                 extra: dict | None = None, agent_frame: bool = True, dpi: int = 120) -> Path:
    """Write a PNG of one scene.

    lanes: a :class:`~ebmtraj.data.lanes.LaneMap` (or None); history (H,2), future (T,2): the
    target's observed positions; samples (K,T,2): predicted samples; min_cost (T,2): the
    minimum-cost prediction; others (M,H,2) / others_future (M,T,2): the neighbours' history and
    observed futures; extra: {label: (T,2)} more predictions (baselines). All in metres, in the
    recording frame; ``agent_frame`` draws them in the target's frame (needs ``history``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    pts = [np.asarray(a, dtype=float).reshape(-1, 2) for a in (history, future, samples, min_cost)
           if a is not None]
    if not pts:
        raise ValueError("render_scene needs at least one trajectory to frame the view")
    move = _agent_frame(history) if agent_frame and history is not None and len(history) >= 2 else \
        (lambda a: None if a is None else np.asarray(a, dtype=float))
    history, future, samples, min_cost = map(move, (history, future, samples, min_cost))
    others, others_future = move(others), move(others_future)
    extra = {k: move(v) for k, v in (extra or {}).items()}
    lane_lines = [] if lanes is None else [move(np.asarray(line.coords)) for lane in lanes.lanes
                                           for line in (lane.left, lane.right, lane.centre) if line is not None]
    lo, hi = frame_limits(np.concatenate([move(p) for p in pts]), lane_lines)
    fig, ax = plt.subplots(figsize=figure_size(lo, hi))
    if lanes is not None:
        for lane in lanes.lanes:
            c = move(np.asarray(lane.centre.coords))
            ax.plot(c[:, 0], c[:, 1], color="0.75", lw=0.8, ls="--", zorder=1)
            for side in (lane.left, lane.right):
                if side is not None:
                    b = move(np.asarray(side.coords))
                    ax.plot(b[:, 0], b[:, 1], color="0.45", lw=0.8, zorder=1)
    if others is not None:
        for k, h in enumerate(np.asarray(others)):
            ax.plot(h[:, 0], h[:, 1], color="tab:gray", lw=2, zorder=2, label="neighbours" if k == 0 else None)
            if others_future is not None:
                f = np.asarray(others_future)[k]
                ax.plot(f[:, 0], f[:, 1], color="tab:gray", lw=1, ls=":", zorder=2)
    if samples is not None:
        for k, s in enumerate(np.asarray(samples)):
            ax.plot(s[:, 0], s[:, 1], color="tab:orange", lw=0.9, alpha=0.7, zorder=3,
                    label=f"samples (K={len(samples)})" if k == 0 else None)
    for label, p in (extra or {}).items():
        ax.plot(p[:, 0], p[:, 1], lw=1.2, ls="-.", zorder=4, label=label)
    if min_cost is not None:
        m = np.asarray(min_cost)
        ax.plot(m[:, 0], m[:, 1], color="tab:red", lw=2.2, zorder=5, label="minimum cost")
    if history is not None:
        h = np.asarray(history)
        ax.plot(h[:, 0], h[:, 1], color="tab:blue", lw=3, zorder=6, label="history")
        ax.scatter(h[-1:, 0], h[-1:, 1], color="tab:blue", s=25, zorder=7)
    if future is not None:
        f = np.asarray(future)
        ax.plot(f[:, 0], f[:, 1], color="tab:green", lw=2.2, zorder=5, label="ground truth")
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("along travel [m]" if agent_frame else "x [m]")
    ax.set_ylabel("lateral [m]" if agent_frame else "y [m]")
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, borderaxespad=0.0)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def _agent_frame(history):
    """A map of (..., 2) points into the frame of the history's last point and direction."""
    h = np.asarray(history, dtype=float)
    d = h[-1] - h[-2] if np.linalg.norm(h[-1] - h[-2]) > 1e-3 else h[-1] - h[0]
    ang = np.arctan2(d[1], d[0]) if np.linalg.norm(d) > 1e-6 else 0.0
    c, s = np.cos(ang), np.sin(ang)
    rot = np.array([[c, s], [-s, c]])

    def move(a):
        if a is None:
            return None
        a = np.asarray(a, dtype=float)
        return (a - h[-1]) @ rot.T

    return move


def frame_limits(points: np.ndarray, lane_lines=(), margin: float = 10.0, side: float = 2.0):
    """Axis limits (lo (2,), hi (2,)) [m] framing a scene: along x, the trajectories' points
    (n, 2) plus ``margin``; across, the points and the lane lines ((k, 2) each) inside that x
    window, plus ``side``. No range is added to fill the figure: a narrow road stays narrow."""
    lo_x, hi_x = points[:, 0].min() - margin, points[:, 0].max() + margin
    ys = [points[:, 1]]
    for line in lane_lines:
        ys.append(line[(line[:, 0] >= lo_x) & (line[:, 0] <= hi_x), 1])
        if len(line) >= 2 and np.all(np.diff(line[:, 0]) > 0):     # where it crosses the window edges
            ys.append(np.interp([lo_x, hi_x], line[:, 0], line[:, 1], left=np.nan, right=np.nan))
    y = np.concatenate(ys)
    y = y[np.isfinite(y)]
    return np.array([lo_x, y.min() - side]), np.array([hi_x, y.max() + side])


def figure_size(lo, hi, width: float = 10.0, min_height: float = 1.2, max_height: float = 8.0):
    """(width, height) [in] whose axes keep the scene's aspect (equal axes)."""
    span = np.asarray(hi, float) - np.asarray(lo, float)
    return width, float(np.clip(width * span[1] / max(span[0], 1e-6), min_height, max_height)) + 0.8
