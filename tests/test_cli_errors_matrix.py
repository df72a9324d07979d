"""The bad-input matrix: each case runs a real CLI and checks what the user sees (one line
``prog: error: ...``, exit status 2, no traceback) and that nothing is lost (the files the case
protects are byte-for-byte unchanged). docs/reliability.md lists the cases.

Cases marked ``isolate`` run the installed console script in a subprocess (one or more per
tool, and every case that needs a second process, a file-size limit or a fresh interpreter);
the rest call the same ``main`` in this process, which keeps the matrix fast. A module fixture
runs them all (the subprocesses in parallel); each test asserts one case.
"""
from __future__ import annotations

import hashlib
import io
import os
import resource
import shutil
import signal
import subprocess
import sys
import tarfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CONFIGS = REPO / "configs"

TINY_TEXTURE = {
    "name": "run", "kind": "image", "num_samples": 1,
    "data": {"source": "brick", "size": 16},
    "net": {"widths": [4], "kernels": [3], "strides": [2]},
    "train": {"steps": 2, "batch_size": 2, "log_every": 1, "ckpt_every": 1, "sample_every": 1,
              "progress": False, "tensorboard": False,
              "sampler": {"steps": 2, "step_size": 0.1}, "chains": {"kind": "short_run", "num_chains": 2}},
}


class Hostile:
    """Unpickling this would create the file ``path``: proof that code ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@dataclass
class Case:
    """One bad input: how to prepare it, the command, the message it must give, what must survive."""

    id: str
    argv: Callable[[Path], list[str]]
    expect: str
    setup: Callable[[Path], None] | None = None
    keep: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()  # files that must not exist afterwards (code that must not run)
    fsize_limit: int | None = None
    debug: bool = False
    holder: bool = False  # a second real process holds the run folder's lock
    isolate: bool = False  # run the console script in a subprocess


# ---------------------------------------------------------------- setups


def texture_config(folder: Path, **changes) -> Path:
    cfg = yaml.safe_load(yaml.safe_dump(TINY_TEXTURE))
    cfg["out_dir"] = str(folder)
    for key, value in changes.items():
        node = cfg
        *path, last = key.split(".")
        for part in path:
            node = node[part]
        node[last] = value
    path = folder / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


_TRAINED: list[Path] = []  # the one texture run trained for the module, copied by each case


def trained_texture(folder: Path) -> None:
    """A finished 2-step texture run in folder/run and its config in folder/cfg.yaml."""
    from ebmcore import convnet_tasks

    texture_config(folder)
    if not _TRAINED:
        template = folder.parent / "trained-texture"
        template.mkdir()
        convnet_tasks.train(convnet_tasks.load_experiment(texture_config(template)))
        _TRAINED.append(template / "run")
    shutil.copytree(_TRAINED[0], folder / "run")


def with_checkpoint(make: Callable[[dict, Path], object]) -> Callable[[Path], None]:
    """Setup: a trained texture run whose checkpoint is replaced by ``make(state, folder)``."""
    def setup(folder: Path) -> None:
        trained_texture(folder)
        ckpt = folder / "run" / "checkpoint.pt"
        state = torch.load(ckpt, weights_only=True)
        out = make(state, folder)
        if isinstance(out, bytes):
            ckpt.write_bytes(out)
        else:
            torch.save(out, ckpt)
    return setup


def truncated(state, folder):
    raw = (folder / "run" / "checkpoint.pt").read_bytes()
    return raw[: len(raw) // 2]


def hostile(state, folder):
    return {**state, "model": Hostile(folder / "pwned")}


def other_model(state, folder):
    model = dict(state["model"])
    first = next(iter(model))
    model[first] = torch.zeros(3, 3)
    return {**state, "model": model}


def write(name: str, text: str) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return setup


def voxel_run(checkpoint: Callable[[Path], object]) -> Callable[[Path], None]:
    """Setup: folder/vox with a VoxelNet config.yaml and the given checkpoint."""
    def setup(folder: Path) -> None:
        from ebm3d.config import load_experiment
        from ebmcore.config import save_config

        run = folder / "vox"
        run.mkdir()
        save_config(load_experiment(CONFIGS / "voxelnet_chair_cpu.yaml"), run / "config.yaml")
        torch.save(checkpoint(folder), run / "checkpoint.pt")
    return setup


OFF_CUBE = ("OFF\n8 6 0\n" + "".join(f"{x} {y} {z}\n" for x in (0, 1) for y in (0, 1) for z in (0, 1))
            + "4 0 1 3 2\n4 4 6 7 5\n4 0 4 5 1\n4 2 3 7 6\n4 0 2 6 4\n4 1 5 7 3\n")


def modelnet_layout(folder: Path) -> Path:
    src = folder / "src"
    for cls in ("box", "crate"):
        for split in ("train", "test"):
            (src / cls / split).mkdir(parents=True)
            (src / cls / split / f"{cls}_1.off").write_text(OFF_CUBE)
    return src


def prepared_out(folder: Path) -> None:
    from data_prep.modelnet import main

    assert main(["--source", str(modelnet_layout(folder)), "--out", str(folder / "out"),
                 "--points", "0", "--resolution", "8", "--quiet"]) == 0


def truncated_zip(folder: Path) -> None:
    src = modelnet_layout(folder)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(src.rglob("*.off")):
            zf.write(path, path.relative_to(src).as_posix())
    raw = buf.getvalue()
    (folder / "data.zip").write_bytes(raw[: len(raw) // 2])


def symlink_tar(folder: Path) -> None:
    with tarfile.open(folder / "data.tar", "w") as tf:
        info = tarfile.TarInfo("box/train/evil.off")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)


# ---------------------------------------------------------------- the cases


def ebmcore(*args):
    return [str(BIN / "ebmcore"), *args]


def cfg_of(folder):
    return str(folder / "cfg.yaml")


CASES = [
    Case("ebmcore-config-missing", lambda f: ebmcore("train", str(f / "missing.yaml")), "does not exist"),
    Case("ebmcore-unknown-key-after-option",
         lambda f: ebmcore("train", str(texture_config(f)), "--fresh", "train.stpes=3"),
         "unknown config key train.stpes"),
    Case("ebmcore-yaml-syntax", lambda f: ebmcore("train", str(f / "bad.yaml")), "YAML syntax error",
         setup=write("bad.yaml", "name: x\ntrain: [1, 2\n")),
    Case("ebmcore-yaml-python-tag", lambda f: ebmcore("train", str(f / "evil.yaml")),
         "refused the YAML tag !!python/object/apply:os.system",
         setup=write("evil.yaml", "name: !!python/object/apply:os.system ['touch pwned']\n"), absent=("pwned",)),
    Case("ebmcore-override-python-tag",
         lambda f: ebmcore("train", str(texture_config(f)), "name=!!python/object/apply:os.system [x]"),
         "refused the YAML tag"),
    Case("ebmcore-checkpoint-truncated", lambda f: ebmcore("sample", str(f / "run")),
         "truncated or corrupt checkpoint", setup=with_checkpoint(truncated), keep=("run/checkpoint.pt",)),
    Case("ebmcore-checkpoint-hostile-sample", lambda f: ebmcore("sample", str(f / "run")),
         "not a plain-weights checkpoint", setup=with_checkpoint(hostile), keep=("run/checkpoint.pt",),
         absent=("pwned",)),
    Case("ebmcore-checkpoint-hostile-resume", lambda f: ebmcore("train", cfg_of(f), "train.steps=4"),
         "not a plain-weights checkpoint", setup=with_checkpoint(hostile), keep=("run/checkpoint.pt",),
         absent=("pwned",)),
    Case("ebmcore-checkpoint-other-model-sample", lambda f: ebmcore("sample", str(f / "run")),
         "a checkpoint of another model", setup=with_checkpoint(other_model), keep=("run/checkpoint.pt",)),
    Case("ebmcore-checkpoint-other-model-resume", lambda f: ebmcore("train", cfg_of(f), "train.steps=4"),
         "a checkpoint of another model", setup=with_checkpoint(other_model), keep=("run/checkpoint.pt",)),
    Case("ebmcore-resume-other-data", lambda f: ebmcore("train", cfg_of(f), "data.source=grass"),
         "data.source ('brick' -> 'grass')", setup=trained_texture,
         keep=("run/checkpoint.pt", "run/metrics.csv", "run/config.yaml")),
    Case("ebmcore-fresh-bad-value", lambda f: ebmcore("train", cfg_of(f), "--fresh", "data.size=4"),
         "data.size: 4 is below the minimum", setup=trained_texture,
         keep=("run/checkpoint.pt", "run/metrics.csv", "run/config.yaml")),
    Case("ebmcore-run-folder-locked", lambda f: ebmcore("train", cfg_of(f), "train.steps=4"),
         "is in use by another training (PID", setup=trained_texture, holder=True,
         keep=("run/checkpoint.pt", "run/metrics.csv", "run/config.yaml")),
    Case("ebmcore-step-size-zero", lambda f: ebmcore("train", str(texture_config(f)), "train.sampler.step_size=0"),
         "step_size: 0", absent=("run",)),
    Case("ebmcore-divergence", lambda f: ebmcore("train", str(texture_config(f)), "train.guard.max_energy=1.0e-9",
                                                "train.guard.max_retries=0"),
         "training diverged at step 1"),
    Case("ebmcore-disk-full", lambda f: ebmcore("train", cfg_of(f), "train.steps=4"), "cannot write",
         setup=trained_texture, fsize_limit=1500, keep=("run/checkpoint.pt",), isolate=True),
    Case("ebmcore-debug-shows-traceback", lambda f: ebmcore("train", str(f / "missing.yaml"), "--debug"),
         "does not exist", debug=True),
    Case("ebm3d-fresh-data-path-typo",
         lambda f: [str(BIN / "ebm3d"), "train", str(CONFIGS / "voxelnet_chair_cpu.yaml"), "--fresh",
                    f"out_dir={f}", "name=vox", f"data.path={f / 'typo'}"],
         "data folder not found", setup=write("vox/checkpoint.pt", "old"), keep=("vox/checkpoint.pt",), isolate=True),
    Case("ebm3d-unknown-key", lambda f: [str(BIN / "ebm3d"), "train", str(CONFIGS / "voxelnet_chair_cpu.yaml"),
                                         "--seed", "1", "model.chanels=[2]"],
         "unknown config key model.chanels"),
    Case("ebm3d-checkpoint-hostile", lambda f: [str(BIN / "ebm3d"), "sample", str(f / "vox")],
         "not a plain-weights checkpoint", setup=voxel_run(lambda f: {"model": Hostile(f / "pwned")}),
         keep=("vox/checkpoint.pt",), absent=("pwned",)),
    Case("ebm3d-pointnet-unknown-key", lambda f: [str(BIN / "ebm3d"), "train", str(CONFIGS / "pointnet_demo.yaml"),
                                                  "train.stpes=1"], "unknown config key train.stpes"),
    Case("ebmtraj-config-error", lambda f: [str(BIN / "ebmtraj"), "train", str(CONFIGS / "ioc_demo.yaml"),
                                            "model.basis=spline"], "basis", isolate=True),
    Case("ebmtraj-yaml-python-tag", lambda f: [str(BIN / "ebmtraj"), "train", str(f / "evil.yaml")],
         "refused the YAML tag", setup=write("evil.yaml", "seed: !!python/object/apply:os.system ['touch pwned']\n"),
         absent=("pwned",)),
    Case("modelnet-out-overwrite",
         lambda f: [sys.executable, "-m", "data_prep.modelnet", "--source", str(f / "src"), "--out", str(f / "out"),
                    "--points", "16", "--resolution", "8", "--quiet"],
         "refusing to overwrite", setup=prepared_out, keep=("out/data.pt", "out/manifest.json"), isolate=True),
    Case("modelnet-truncated-zip",
         lambda f: [sys.executable, "-m", "data_prep.modelnet", "--source", str(f / "data.zip"),
                    "--work", str(f / "work"), "--quiet"],
         "truncated or corrupt zip archive", setup=truncated_zip),
    Case("modelnet-symlink-member",
         lambda f: [sys.executable, "-m", "data_prep.modelnet", "--source", str(f / "data.tar"),
                    "--work", str(f / "work"), "--quiet"],
         "is a symlink to '/etc/passwd'", setup=symlink_tar),
]


# ---------------------------------------------------------------- running them


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _limit(fsize: int | None):
    def preexec():
        if fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    return preexec


def _start_holder(run: Path) -> subprocess.Popen:
    """A real second process that holds ``run``'s lock until killed."""
    code = "import sys, time; from ebmcore.runs import lock_run; lock_run(sys.argv[1]); print('locked', flush=True); time.sleep(300)"
    proc = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def _snapshot(case: Case, folder: Path) -> dict:
    return {name: _digest(folder / name) for name in case.keep}


def _run_isolated(case: Case, folder: Path) -> dict:
    before = _snapshot(case, folder)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    env.pop("EBM_DEBUG", None)
    proc = subprocess.run(case.argv(folder), cwd=folder, env=env, capture_output=True, text=True, timeout=240,
                          preexec_fn=_limit(case.fsize_limit))
    return {"rc": proc.returncode, "stderr": proc.stderr, "before": before, "after": _snapshot(case, folder)}


def _main_of(argv: list[str]) -> tuple[Callable, list[str]]:
    """The ``main`` a console script (or ``python -m``) calls, and its arguments."""
    if argv[1:3] == ["-m", "data_prep.modelnet"]:
        from data_prep.modelnet import main
        return main, argv[3:]
    module = {"ebmcore": "ebmcore.cli", "ebm3d": "ebm3d.cli", "ebmtraj": "ebmtraj.cli"}[Path(argv[0]).name]
    return __import__(module, fromlist=["main"]).main, argv[1:]


def _run_in_process(case: Case, folder: Path) -> dict:
    before = _snapshot(case, folder)
    main, args = _main_of(case.argv(folder))
    err = io.StringIO()
    cwd = os.getcwd()
    try:
        os.chdir(folder)
        with redirect_stderr(err), redirect_stdout(io.StringIO()):
            try:
                rc = main(args)
            except SystemExit as exit_:
                rc = exit_.code
    finally:
        os.chdir(cwd)
    return {"rc": rc, "stderr": err.getvalue(), "before": before, "after": _snapshot(case, folder)}


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    folders, holders = {}, []
    for case in CASES:
        folder = tmp_path_factory.mktemp(case.id)
        if case.setup:
            case.setup(folder)
        if case.holder:
            holders.append(_start_holder(folder / "run"))
        folders[case.id] = folder
    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            futures = {c.id: pool.submit(_run_isolated, c, folders[c.id]) for c in CASES if c.isolate}
            results = {c.id: _run_in_process(c, folders[c.id]) for c in CASES if not c.isolate}
            results.update({k: f.result() for k, f in futures.items()})
    finally:
        for proc in holders:
            proc.kill()
            proc.wait()
    return results, folders


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(matrix, case):
    results, folders = matrix
    r = results[case.id]
    lines = [line for line in r["stderr"].splitlines() if line.strip() and not line.startswith("note: ")]
    prog = "data_prep.modelnet" if "data_prep.modelnet" in case.argv(folders[case.id]) else \
        Path(case.argv(folders[case.id])[0]).name
    assert r["rc"] == 2, r["stderr"][-2000:]
    assert lines[-1].startswith(f"{prog}: error: "), r["stderr"][-2000:]
    assert case.expect in lines[-1], lines[-1]
    if case.debug:
        assert "Traceback (most recent call last)" in r["stderr"]
    else:
        assert len(lines) == 1 and "Traceback" not in r["stderr"], r["stderr"][-2000:]
        assert "weights_only" not in r["stderr"]
    for name in case.keep:
        assert r["after"][name] is not None and r["after"][name] == r["before"][name], f"{name} changed or lost"
    for name in case.absent:
        assert not (folders[case.id] / name).exists(), f"{name} exists"
