"""Run folders, the divergence guard's bookkeeping, leftovers and log-friendly progress bars."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import torch
import yaml

from ebmcore import cli, runs
from ebmcore.config import from_dict
from ebmcore.energy import FunctionEnergy
from ebmcore.errors import ConfigError, DataError, DivergenceError
from ebmcore.io import safe_extract
from ebmcore.learning import TrainConfig, Trainer
from ebmcore.sampling import langevin
from ebmcore.tracking import read_metrics

from .toy import make_trainer, ring, toy_config

REPO = Path(__file__).resolve().parents[2]
EBMCORE = str(Path(sys.executable).parent / "ebmcore")
TEXTURE = {"name": "run", "kind": "image", "num_samples": 1, "data": {"source": "brick", "size": 16},
           "net": {"widths": [4], "kernels": [3], "strides": [2]},
           "train": {"steps": 2, "batch_size": 2, "log_every": 1, "ckpt_every": 1, "sample_every": 1,
                     "progress": False, "tensorboard": False, "sampler": {"steps": 2, "step_size": 0.1},
                     "chains": {"kind": "short_run", "num_chains": 2}}}


def _texture_config(folder: Path) -> Path:
    path = folder / "cfg.yaml"
    path.write_text(yaml.safe_dump({**TEXTURE, "out_dir": str(folder)}))
    return path


def _steps(run: Path) -> list[int]:
    with open(run / "metrics.csv") as fh:
        return [int(float(row["step"])) for row in csv.DictReader(fh)]


def _wait_for(predicate, timeout: float = 120.0) -> None:
    end = time.time() + timeout
    while not predicate():
        assert time.time() < end, "timed out"
        time.sleep(0.05)


def _popen(*args) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([EBMCORE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=REPO)


# ---------------------------------------------------------------- lock


def _holder(run: Path) -> subprocess.Popen:
    """A real second process that holds ``run``'s lock until killed."""
    code = ("import sys, time; from ebmcore.runs import lock_run; lock_run(sys.argv[1]); "
            "print('locked', flush=True); time.sleep(300)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_training_is_refused_and_a_killed_owner_leaves_a_stale_lock(tmp_path, capsys):
    cfg = _texture_config(tmp_path)
    run = tmp_path / "run"
    owner = _holder(run)
    try:
        assert cli.main(["train", str(cfg)]) == 2
        assert f"is in use by another training (PID {owner.pid}" in capsys.readouterr().err
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    assert not (run / "metrics.csv").exists()
    assert (run / runs.LOCK_FILE).is_file()  # SIGKILL left the lock file behind
    assert cli.main(["train", str(cfg)]) == 0
    assert f"took over a stale lock of PID {owner.pid}" in capsys.readouterr().err
    assert _steps(run) == [1, 2] and not (run / runs.LOCK_FILE).exists()


# ---------------------------------------------------------------- --fresh


def test_fresh_run_killed_before_its_first_checkpoint_loses_nothing_and_mixes_nothing(tmp_path, capsys):
    cfg = _texture_config(tmp_path)
    run = tmp_path / "run"
    assert cli.main(["train", str(cfg)]) == 0
    old = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    fresh = _popen("train", str(cfg), "--fresh", "train.steps=100000", "train.ckpt_every=100000")
    try:
        _wait_for(lambda: (run / "metrics.csv").is_file() and not (run / "checkpoint.pt").exists())
    finally:
        fresh.send_signal(signal.SIGKILL)
        fresh.wait()
    (aside,) = tmp_path.glob("run.previous-*")
    assert f"{run} -> {aside}" in fresh.stderr.read()
    assert {p.name: p.read_bytes() for p in aside.iterdir() if p.is_file()} == old  # nothing lost
    assert not (run / "checkpoint.pt").exists()
    assert cli.main(["train", str(cfg), "train.steps=3"]) == 0
    assert _steps(run) == [1, 2, 3]  # the new run only, each step once


def test_resume_compares_only_what_defines_the_model_and_data():
    saved = {"name": "a", "data": {"source": "brick", "workers": 1}, "net": {"widths": [4]},
             "train": {"steps": 10}}
    assert runs.defining_differences(saved, {**saved, "train": {"steps": 99}, "name": "a"}) == []
    assert runs.defining_differences(saved, {**saved, "data": {"source": "brick", "workers": 8}}) == []
    assert runs.defining_differences(saved, {**saved, "data": {"source": "grass", "workers": 1},
                                             "net": {"widths": [8]}}) == ["data.source", "net.widths"]


# ---------------------------------------------------------------- leftovers


def test_orphaned_temporary_files_are_removed_at_the_next_start(tmp_path):
    make_trainer(tmp_path, toy_config(steps=2)).fit()
    orphans = [tmp_path / ".checkpoint.pt.k1ll3d.tmp", tmp_path / "samples" / ".step000001.pt.x7.tmp"]
    for path in orphans:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"half a checkpoint")
    keep = tmp_path / "notes.tmp"  # not an atomic-write temporary: left alone
    keep.write_text("mine")
    make_trainer(tmp_path, toy_config(steps=3)).fit()
    assert not any(p.exists() for p in orphans) and keep.exists()


@pytest.mark.parametrize("kind, expect", [
    ("symlink", "is a symlink to '../../outside'"),
    ("hardlink", "is a hardlink to '../outside'"),
    ("device", "is a device, FIFO or other special file"),
])
def test_archive_messages_name_the_real_problem(tmp_path, kind, expect):
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tf:
        info = tarfile.TarInfo("d/member")
        if kind == "device":
            info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
        else:
            info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
            info.linkname = "../../outside" if kind == "symlink" else "../outside"
        tf.addfile(info)
    with pytest.raises(DataError, match=expect):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out" / "d").exists()


# ---------------------------------------------------------------- divergence guard


def _poison_once_at(step_to_poison):
    done = []

    def callback(trainer, step, metrics):
        if step == step_to_poison and not done:
            done.append(step)
            with torch.no_grad():
                next(trainer.model.parameters()).fill_(float("nan"))
    return callback


def test_guard_names_the_step_and_metrics_hold_each_step_once(tmp_path, capsys):
    trainer = make_trainer(tmp_path, toy_config(steps=20, **{"guard.snapshot_every": 5}))
    trainer.callbacks.append(_poison_once_at(12))
    trainer.fit()
    assert "detected at step 13; restored the state of step 10" in capsys.readouterr().out
    assert _steps(tmp_path) == list(range(1, 21))
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == list(range(1, 21))


def test_divergence_error_names_the_step_it_was_detected_at(tmp_path):
    trainer = make_trainer(tmp_path, toy_config(steps=20, **{"guard.max_retries": 0}))
    trainer.callbacks.append(_poison_once_at(6))
    with pytest.raises(DivergenceError, match="training diverged at step 7 "):
        trainer.fit()


def test_a_huge_finite_loss_does_not_pass_the_guard(tmp_path):
    """Energies of about 4e5 stay under max_energy, but energy_reg makes the loss about 3e11."""
    model = FunctionEnergy(lambda x: 3.9e5 + x.sum(1))
    cfg = toy_config(steps=3, **{"optim.energy_reg": 1.0, "guard.max_retries": 1})
    model.dummy = torch.nn.Parameter(torch.zeros(1))
    with pytest.raises(DivergenceError, match=r"loss .* above guard.max_loss"):
        Trainer(model, ring(64, seed=1), cfg, tmp_path).fit()


# ---------------------------------------------------------------- sampler and config


def test_a_sampler_step_size_of_zero_is_an_error():
    with pytest.raises(ConfigError, match="sampler.step_size: 0"):
        from_dict(TrainConfig, {"sampler": {"steps": 10, "step_size": 0}})
    assert from_dict(TrainConfig, {"sampler": {"steps": 0, "step_size": 0}}).sampler.step_size == 0
    with pytest.raises(ConfigError, match="step_size is 0"):
        langevin(lambda x: (x ** 2).sum(1), torch.zeros(2, 2), steps=5, step_size=0.0)


# ---------------------------------------------------------------- progress in logs


def test_progress_bar_in_a_log_writes_a_few_lines_not_every_update(tmp_path, capsys):
    trainer = make_trainer(tmp_path, toy_config(steps=150, progress=True))
    trainer.callbacks.append(lambda t, step, m: time.sleep(0.01))
    trainer.fit()
    err = capsys.readouterr().err
    redraws = err.count("\r") + err.count("\n")
    assert "150/150" in err and redraws <= 4, err


# ---------------------------------------------------------------- the demo's pictures


def test_sample_grows_the_texture_and_shows_it_beside_the_observed_one(tmp_path):
    import imageio.v3 as iio

    cfg = _texture_config(tmp_path)
    assert cli.main(["train", str(cfg)]) == 0
    assert cli.main(["sample", str(tmp_path / "run"), "--n", "1", "--size", "64", "--steps", "2"]) == 0
    picture = iio.imread(tmp_path / "run" / "synthesis_beside_observed.png")
    assert picture.shape[:2] == (2 * 64 + 4, 2 * (16 + 8 + 64) + 4)  # 16 px, gap 8, 64 px; 2x; 2 px frame
    assert iio.imread(tmp_path / "run" / "synthesis.png").shape[:2] == (64 + 4, 64 + 4)


def test_a_metrics_row_cut_short_by_a_kill_or_full_disk_is_dropped_at_resume(tmp_path):
    make_trainer(tmp_path, toy_config(steps=5, ckpt_every=5)).fit()
    with open(tmp_path / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 6, "loss": 0.1')  # the write a full disk cut short
    make_trainer(tmp_path, toy_config(steps=7, ckpt_every=5)).fit()
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == list(range(1, 8))
    assert _steps(tmp_path) == list(range(1, 8))
