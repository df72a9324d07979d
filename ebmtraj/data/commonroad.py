"""CommonRoad scenarios (``commonroad-io``) as the tidy table plus a lane map.

Each dynamic obstacle with a rectangle shape and a ``TrajectoryPrediction`` becomes a vehicle:
its initial state followed by its trajectory's states, one row each. Obstacles without a
trajectory (some carry a ``SetBasedPrediction``), with another shape, and static obstacles are
skipped and listed in ``table.attrs['report'].skipped``. Positions are the shape's centre in the
scenario's map frame (metres), so ``ref_offset`` is 0.

Each scenario is its own ``recording`` in the table (its vehicles share its time steps). Scenarios
cut from one NGSIM recording share traffic, though (``USA_US101-10_1_T-1`` and
``USA_US101-10_3_T-1`` hold the same vehicles), so :func:`recording_of` groups scenario ids by
their map id, and splits go by that group.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from ebmcore.errors import DataError

from .lanes import LaneMap
from .schema import REQUIRED_FINITE, ReadReport, check_rows, empty_table, finalize

_ID = re.compile(r"^(?P<group>[A-Z]{3}_[^_]+?-\d+)_\d+_[A-Z]+(-\d+)?$")


def recording_of(scenario_id: str) -> str:
    """The recording group of a CommonRoad scenario id: ``USA_US101-10_3_T-1`` -> ``USA_US101-10``.

    Ids that do not follow the ``<country>_<map>-<n>_<config>_<tag>`` pattern are their own group.
    """
    m = _ID.match(str(scenario_id))
    return m.group("group") if m else str(scenario_id)


def read_commonroad(path: str | Path, *, on_bad: str = "raise",
                    max_speed: float | None = None) -> tuple[pd.DataFrame, LaneMap]:
    """Read one CommonRoad XML scenario: (tidy table, LaneMap of its lanelets).

    ``t`` is ``time_step * dt`` [s]; ``frame`` the time step; ``vehicle_id`` the obstacle id;
    ``row`` the state's index in the obstacle (0 = initial state). The table's ``recording`` is
    the scenario id (``table.attrs['group']``: its :func:`recording_of` group). A
    scenario without any usable vehicle gives an empty table (its report says why).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    from commonroad.common.file_reader import CommonRoadFileReader

    try:
        scenario, _ = CommonRoadFileReader(str(path)).open()
    except Exception as err:  # the reader raises many types on malformed XML
        raise DataError(f"{path}: cannot read the CommonRoad scenario: {err}") from err
    sid = str(scenario.scenario_id)
    report = ReadReport()
    rows = []
    for obs in scenario.static_obstacles:
        report.skipped.append({"source": str(path), "obstacle_id": int(obs.obstacle_id),
                               "reason": "static obstacle"})
    for obs in scenario.dynamic_obstacles:
        why = _unusable(obs)
        if why:
            report.skipped.append({"source": str(path), "obstacle_id": int(obs.obstacle_id),
                                   "reason": why})
            continue
        rows.extend(_obstacle_rows(obs, scenario.dt, sid, path))
    if rows:
        table = check_rows(pd.DataFrame(rows), path, on_bad=on_bad, numeric=REQUIRED_FINITE,
                           max_speed=60.0 if max_speed is None else max_speed, report=report)
        out = finalize(table)
    else:  # e.g. the S-1 scenarios: every obstacle set-based; all of them are in the report
        out = empty_table()
    out.attrs.update(report=report, reference_point="centre", frame="local", scenario=sid,
                     group=recording_of(sid),
                     sampling_s=float(scenario.dt))
    lanes = LaneMap.from_lanelet_network(scenario.lanelet_network, source=f"{path} lanelets")
    return out, lanes


def _unusable(obs) -> str:
    pred = obs.prediction
    if pred is None or not hasattr(pred, "trajectory") or pred.trajectory is None:
        return f"no trajectory ({type(pred).__name__})"
    if not hasattr(obs.obstacle_shape, "length"):
        return f"shape {type(obs.obstacle_shape).__name__} is not a rectangle"
    return ""


def _obstacle_rows(obs, dt: float, sid: str, path: Path) -> list[dict]:
    states = [obs.initial_state] + list(obs.prediction.trajectory.state_list)
    shape = obs.obstacle_shape
    kind = str(getattr(obs.obstacle_type, "value", obs.obstacle_type)).lower()
    v_class = {"motorcycle": 1, "car": 2, "truck": 3, "bus": 3}.get(kind, pd.NA)
    out = []
    for i, s in enumerate(states):
        pos = np.asarray(s.position, dtype=float)
        out.append({
            "recording": sid, "vehicle_id": int(obs.obstacle_id),
            "t": int(s.time_step) * float(dt), "frame": int(s.time_step),
            "x": pos[0], "y": pos[1], "length": float(shape.length), "width": float(shape.width),
            "ref_offset": 0.0, "v_class": v_class,
            "speed_raw": _num(getattr(s, "velocity", None)),
            "accel_raw": _num(getattr(s, "acceleration", None)),
            "source": str(path), "row": i,
        })
    return out


def _num(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")
