"""The evaluation harness shared by the planner's closed-loop evaluations.

:mod:`ebmtraj.eval.harness` holds what every evaluation repeats: the command-line options of a
planner run, loading the planner from them, episode records and latency summaries, the JSON
report and the one-line error entry. The environments use it: highway-env
(:mod:`ebmtraj.closed_loop`, ``ebmtraj evaluate-closed-loop``) and the CommonRoad scenarios
(:mod:`ebmtraj.commonroad_planning`, ``ebmtraj plan-commonroad``).
"""
