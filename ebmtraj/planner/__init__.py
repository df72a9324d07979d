"""Learned planners for driving stacks: a small, dependency-light API over an EBM-IOC cost.

Importing this package loads torch, numpy, shapely and the cost itself -- no training code,
data readers, pandas, Open3D or trimesh.

Quick use::

    from ebmtraj.planner import Planner, AgentState
    planner = Planner.from_checkpoint("runs/ioc/model.pt")          # weights only, checked
    ego = AgentState(x=0.0, y=0.0, heading=0.0, speed=25.0, length=5.0, width=2.0)
    plan = planner.plan(ego, history, neighbours, lanes, horizon=4.0)
    plan.positions, plan.headings, plan.speeds, plan.controls, plan.cost, plan.fallback

Input conventions
-----------------
* Frame: any planar right-handed metric world frame; x, y [m]; heading [rad] counter-clockwise
  from +x. Plans come back in the same frame.
* Reference point: an agent's position is its reference point; ``AgentState.ref`` is the
  distance [m] from it back to the footprint centre (0 = centre, as CommonRoad and
  highway-env; ``length/2`` for NGSIM's front bumper; negative for a rear axle).
* Timing: 10 Hz. ``history`` is (H, 2) past positions of the reference point at 0.1 s spacing,
  oldest first, the last row at the current time (= the current position). The model reads the
  last ``planner.history_frames`` (10) rows; fewer are padded at constant velocity (flagged).
  The plan's ``t`` is 0.1 .. horizon seconds after the current time.
* Units: m, s, rad, m/s, m/s^2; steering is the front-wheel angle [rad]; controls are the
  change of acceleration [m/s^2] and of steering [rad] per 0.1 s step.
* Neighbours: their current states; the cost extrapolates them at constant velocity (as in
  training). Lanes: centre lines oriented along travel, with widths [m] (see
  :class:`LaneSet`).

Bad input
---------
Non-finite or impossible states, malformed histories or lanes, empty scenes and horizons beyond
the trained one (or not multiples of 0.1 s) raise :class:`PlannerInputError` /
:class:`HorizonError` naming the argument. An ego off every lane, no lanes, or a non-finite
model output give a flagged fallback (``Trajectory.fallback`` says why, ``.policy`` which:
constant velocity or lane keeping), or raise with ``on_bad_input='raise'``.
"""
from .checkpoint import PLANNER_VERSION, load_checkpoint, save_planner_checkpoint
from .core import MODES, Planner, PlannerConfig
from .inputs import LaneSet, fit_state
from .types import (AgentState, HorizonError, PlannerInputError, Scene, SceneAgent, Trajectory,
                    TrajectorySamples)

__all__ = ["AgentState", "HorizonError", "LaneSet", "MODES", "PLANNER_VERSION", "Planner",
           "PlannerConfig", "PlannerInputError", "Scene", "SceneAgent", "Trajectory",
           "TrajectorySamples", "fit_state", "load_checkpoint", "save_planner_checkpoint"]
