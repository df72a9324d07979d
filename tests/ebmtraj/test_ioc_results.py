"""The recorded figures of an EBM-IOC test evaluation (docs/results/ebmtraj.json sections)."""
from __future__ import annotations

import json

from ebmtraj.experiment import results_payload


def _method(rmse, ade=1.0, fde=2.0, min_ade=0.9, collision=0.01):
    return {"rmse": {1.0: rmse[0], 2.0: rmse[1], 3.0: rmse[2], 4.0: rmse[3]}, "ade": ade, "fde": fde,
            "min_ade": min_ade, "collision": {"agent": collision, "scene": 2 * collision}}


def test_payload_holds_the_issue_keys_in_horizon_order(tmp_path):
    result = {"scenes": 3, "agents": 7, "methods": {
        "cv": _method([0.7, 1.8, 3.3, 5.2]), "lstm": _method([0.6, 1.6, 2.9, 4.4]),
        "ebm_opt": _method([0.6, 1.5, 2.7, 4.2], ade=1.4, fde=3.4, collision=0.011),
        "ebm_sample": _method([0.6, 1.5, 2.7, 4.2], min_ade=1.2),
        "ebm_joint_opt": _method([0.6, 1.5, 2.8, 4.3], collision=0.004)}}
    summary = {"best_val": 2.1, "best_step": 150,
               "val_history": [{"step": 0, "rmse": [1.0, 2.0, 3.0, 4.0]}, {"step": 150, "rmse": [1, 2, 2, 3.4]}]}
    (tmp_path / "train_summary.json").write_text(json.dumps(summary))
    out = results_payload(result, tmp_path)
    assert out["test"]["cv"]["rmse"] == [0.7, 1.8, 3.3, 5.2]
    assert out["test"]["ebm_opt"] == {"rmse": [0.6, 1.5, 2.7, 4.2], "ade": 1.4, "fde": 3.4, "minade5": 1.2,
                                      "collision": 0.011}
    assert out["test"]["ebm_joint_opt"] == {"rmse": [0.6, 1.5, 2.8, 4.3], "collision": 0.004}
    assert out["val_mean_rmse"] == {"stage1": 2.5, "selected": 2.1, "selected_step": 150}
    # no training summary (baselines only): no validation figures
    assert "val_mean_rmse" not in results_payload(result, tmp_path / "elsewhere")
