"""``ebmtraj train|evaluate|predict|view`` end to end on a small real cache (one CommonRoad
scenario cut into train / val / test), with tiny step counts."""
from __future__ import annotations

import json

import numpy as np
from PIL import Image

from ebmtraj.cli import main

from .ioc_helpers import small_cache


def _config(tmp_path):
    cache = small_cache()
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(f"""
name: tiny
runs: {tmp_path / 'runs'}
data: {{dataset: commonroad, cache: {cache}, val_rows: 16, max_test: 12}}
pretrain: {{steps: 60, batch_size: 32}}
train:
  steps: 4
  batch_size: 16
  log_every: 2
  ckpt_every: 4
  progress: false
  tensorboard: false
  sampler: {{steps: 4, step_size: 0.15}}
  chains: {{kind: data}}
predict: {{samples: 3, steps: 3, opt_steps: 3}}
evaluate: {{eval_every: 2}}
lstm: {{hidden: 16, steps: 20, eval_every: 10}}
""")
    return cfg


def test_train_evaluate_predict_view(tmp_path, capsys):
    cfg = _config(tmp_path)
    assert main(["train", str(cfg)]) == 0
    run = tmp_path / "runs" / "tiny"
    for name in ("model.pt", "lstm.pt", "train_summary.json", "metrics.csv", "config.yaml"):
        assert (run / name).is_file(), name
    assert main(["evaluate", str(cfg)]) == 0
    res = json.loads((run / "eval_test.json").read_text())
    for method in ("cv", "ca", "cv_nominal", "lstm", "ebm_opt", "ebm_sample", "ebm_joint_opt",
                   "ebm_joint_sample"):
        m = res["methods"][method]
        assert all(np.isfinite(v) for v in m["rmse"].values()), method
        assert 0.0 <= m["collision"]["agent"] <= 1.0
    assert res["methods"]["ebm_sample"]["samples"] == 3
    capsys.readouterr()
    assert main(["predict", str(cfg), "--index", "0"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert np.asarray(out["ebm_sample"]["target_positions"]).shape == (3, 40, 2)
    assert main(["view", str(cfg), "--index", "1", "--out", str(tmp_path / "v.png")]) == 0
    img = np.asarray(Image.open(tmp_path / "v.png").convert("L"), dtype=float)
    assert img.std() > 10


def test_bad_config_and_index_are_clear_errors(tmp_path, capsys):
    cfg = _config(tmp_path)
    assert main(["train", str(cfg), "model.basis=spline"]) == 2
    assert "basis" in capsys.readouterr().err
    assert main(["view", str(cfg), "--index", "100000"]) == 2
    assert "outside" in capsys.readouterr().err


def test_help_lists_every_command():
    from ebmtraj.cli import PLANNER_COMMANDS, build_parser

    text = build_parser().format_help()
    for name in ("prepare", "train", "predict", "evaluate", "view", *PLANNER_COMMANDS):
        assert name in text, name


def test_the_library_does_not_import_data_prep():
    """data_prep calls the library; nothing in ebmtraj imports data_prep back."""
    import subprocess
    import sys

    code = ("import sys, ebmtraj.cli, ebmtraj.data.prepare, ebmtraj.data.synthetic, ebmtraj.experiment\n"
            "print([m for m in sys.modules if m.split('.')[0] == 'data_prep'])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_changed_run_is_refused_and_fresh_sets_the_old_one_aside(tmp_path, capsys):
    cfg = _config(tmp_path)
    assert main(["train", str(cfg), "--model", "ioc"]) == 0
    run = tmp_path / "runs" / "tiny"
    old = (run / "model.pt").read_bytes()
    capsys.readouterr()
    assert main(["train", str(cfg), "--model", "ioc", "data.val_rows=8"]) == 2
    refused = capsys.readouterr()
    assert "--fresh" in refused.err
    assert "training windows" not in refused.out  # refused before stage 1 starts
    assert (run / "model.pt").read_bytes() == old
    assert main(["train", str(cfg), "--model", "ioc", "data.val_rows=8", "--fresh"]) == 0
    aside = list((tmp_path / "runs").glob("tiny.previous-*"))
    assert len(aside) == 1 and (aside[0] / "model.pt").read_bytes() == old
    assert (run / "model.pt").is_file()
    capsys.readouterr()
    assert main(["train", str(cfg), "--model", "lstm", "--fresh"]) == 2
    assert "--fresh" in capsys.readouterr().err
    assert len(list((tmp_path / "runs").glob("tiny.previous-*"))) == 1
