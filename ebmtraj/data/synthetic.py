"""A short synthetic traffic recording in the raw NGSIM 18-column format, from highway-env.

``highway-env``'s ``highway-v0`` builds a straight multi-lane road and spawns vehicles (seeded
through ``env.reset(seed=...)``); every vehicle, the ego included (replaced by an
:class:`~highway_env.vehicle.behavior.IDMVehicle`), then drives by IDM (longitudinal) and MOBIL
(lane changes). The road is stepped directly at 10 Hz (``road.act(); road.step(0.1)``) and every
vehicle is written each frame as NGSIM writes it:

* Local_Y = highway-env x of the front bumper, Local_X = highway-env y (+ half a lane, so the
  left road edge is 0; highway-env's lane 0 is the leftmost, y grows to the right of travel),
  both in feet; Global_X / Global_Y repeat Local_X / Local_Y (this road has no map frame);
* Lane_ID = highway-env lane index + 1 (1 = leftmost, as on US-101); v_Class 2;
* v_Vel, v_Acc in ft/s, ft/s^2; Preceding / Following ids (0 = none); Space_Headway (ft, front
  bumper to front bumper); Time_Headway (s; 9999.99 when stopped, 0 without a leader);
* Global_Time in ms from a fixed synthetic epoch, Frame_ID from 1.

The readers then read it like real data (:func:`ebmtraj.data.ngsim.read_ngsim_raw`);
``ebmtraj.data.prepare`` prepares the ``synthetic`` dataset from it. Command line::

    python -m data_prep.synthetic_traffic out.txt --seed 0 --duration 60 --vehicles 30
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ebmcore.io import atomic_write

FT = 0.3048
EPOCH_MS = 1_000_000_000_000  # synthetic recording start (Global_Time of frame 1)
DT = 0.1


def simulate(*, seed: int = 0, duration_s: float = 60.0, vehicles: int = 30,
             lanes: int = 4) -> list[dict]:
    """Run highway-env IDM/MOBIL traffic; one dict per vehicle per frame (SI units)."""
    import gymnasium as gym
    import highway_env  # noqa: F401  (registers highway-v0)
    from highway_env.vehicle.behavior import IDMVehicle

    env = gym.make("highway-v0", config={
        "lanes_count": lanes, "vehicles_count": vehicles, "simulation_frequency": 10,
        "policy_frequency": 10, "duration": duration_s, "vehicles_density": 1.0})
    env.reset(seed=seed)
    base = env.unwrapped
    road = base.road
    ego = base.vehicle
    idm = IDMVehicle.create_from(ego)
    road.vehicles[road.vehicles.index(ego)] = idm
    ids = {id(v): i + 1 for i, v in enumerate(road.vehicles)}
    lane_width = float(road.network.get_lane(idm.lane_index).width_at(0))
    rows = []
    prev_speed = {id(v): float(v.speed) for v in road.vehicles}
    for frame in range(1, int(round(duration_s / DT)) + 1):
        if frame > 1:
            road.act()
            road.step(DT)
        for v in road.vehicles:
            front, rear = road.neighbour_vehicles(v, v.lane_index)
            speed = float(v.speed)
            nose = np.asarray(v.position) + v.LENGTH / 2 * np.array([np.cos(v.heading),
                                                                     np.sin(v.heading)])
            gap = 0.0
            if front is not None:
                gap = float(front.position[0] - v.position[0])
            rows.append({
                "vid": ids[id(v)], "frame": frame, "x": float(nose[0]),
                "y": float(nose[1]) + lane_width / 2, "length": float(v.LENGTH),
                "width": float(v.WIDTH), "speed": speed,
                "accel": (speed - prev_speed[id(v)]) / DT if frame > 1 else 0.0,
                "lane": int(v.lane_index[2]) + 1,
                "preceding": ids[id(front)] if front is not None else 0,
                "following": ids[id(rear)] if rear is not None else 0,
                "headway": gap,
            })
            prev_speed[id(v)] = speed
    env.close()
    return rows


def write_recording(path: str | Path, *, seed: int = 0, duration_s: float = 60.0,
                    vehicles: int = 30, lanes: int = 4) -> Path:
    """Simulate and write the raw 18-column NGSIM text file (feet) atomically; returns path."""
    rows = simulate(seed=seed, duration_s=duration_s, vehicles=vehicles, lanes=lanes)
    x0 = min(r["x"] for r in rows) - 10.0  # Local_Y starts near 0 like a camera section
    total = {}
    for r in rows:
        total[r["vid"]] = total.get(r["vid"], 0) + 1
    lines = []
    for r in sorted(rows, key=lambda r: (r["vid"], r["frame"])):
        lx, ly = r["y"] / FT, (r["x"] - x0) / FT
        speed_ft = r["speed"] / FT
        headway_ft = r["headway"] / FT
        th = 0.0 if not r["preceding"] else (9999.99 if r["speed"] <= 0.01
                                             else r["headway"] / r["speed"])
        lines.append(
            f"{r['vid']} {r['frame']} {total[r['vid']]} {EPOCH_MS + (r['frame'] - 1) * 100} "
            f"{lx:.3f} {ly:.3f} {lx:.3f} {ly:.3f} {r['length'] / FT:.1f} "
            f"{r['width'] / FT:.1f} 2 {speed_ft:.2f} {r['accel'] / FT:.2f} {r['lane']} "
            f"{r['preceding']} {r['following']} {headway_ft:.2f} {th:.2f}")
    text = "\n".join(lines) + "\n"
    return atomic_write(path, lambda p: p.write_text(text))
