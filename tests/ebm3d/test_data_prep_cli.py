"""``python -m data_prep.modelnet``: archives, checksum-checked download, refusal of unsafe members."""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest

from data_prep.modelnet import main
from ebmcore.paths import data_root, dataset_dir

OFF_DIR = dataset_dir("modelnet10-off-sample")
pytestmark = pytest.mark.skipif(OFF_DIR is None, reason=f"{data_root()}/modelnet10-off-sample absent")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EBM_CACHE", str(tmp_path / "cache"))


ARGS = ["--resolution", "16", "--points", "64", "--val-fraction", "0", "--quiet"]


@pytest.fixture()
def archive(tmp_path) -> Path:
    """A zip like the official one: ModelNet10/<class>/train/*.off, a truncated mesh, __MACOSX junk."""
    path = tmp_path / "ModelNet10.zip"
    src = OFF_DIR / "ModelNet10" / "bathtub" / "train"
    with zipfile.ZipFile(path, "w") as zf:
        for n in (2, 5):
            zf.write(src / f"bathtub_{n:04d}.off", f"ModelNet10/bathtub/train/bathtub_{n:04d}.off")
        zf.write(src / "bathtub_0002.off", "ModelNet10/bathtub/test/bathtub_0107.off")
        text = (src / "bathtub_0002.off").read_text()
        zf.writestr("ModelNet10/bathtub/train/bathtub_0099.off", text[:300])
        zf.writestr("__MACOSX/ModelNet10/._bathtub", b"\x00\x05\x16\x07")
    return path


def test_cli_builds_from_archive_and_reports_skips(archive, tmp_path, capsys):
    before = hashlib.sha256(archive.read_bytes()).hexdigest()
    rc = main(["--source", str(archive), "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out"), *ARGS])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "prepared 3 shapes, 1 skipped" in out
    assert "bathtub/train/bathtub_0099.off" in out and "truncated" in out
    assert "voxels 16^3 (3, 1, 16, 16, 16)" in out and "points (3, 64, 3)" in out
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["counts"]["test"] == {"bathtub": 1}
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == before
    # a second run reuses both the extraction and the cache
    stamp = (tmp_path / "out" / "data.pt").stat().st_mtime_ns
    assert main(["--source", str(archive), "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out"), *ARGS]) == 0
    assert (tmp_path / "out" / "data.pt").stat().st_mtime_ns == stamp


def _evil_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ModelNet10/bathtub/train/a.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")
        zf.writestr("../evil", "escaped")
    return path


def _evil_tar(path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        data = b"escaped"
        info = tarfile.TarInfo("ModelNet10/../../evil")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("make", [_evil_zip, _evil_tar])
def test_cli_refuses_members_outside_the_target(tmp_path, capsys, make):
    bad = make(tmp_path / ("evil.zip" if make is _evil_zip else "evil.tar.gz"))
    work = tmp_path / "work"
    rc = main(["--source", str(bad), "--work", str(work), "--out", str(tmp_path / "out"), *ARGS])
    err = capsys.readouterr().err
    assert rc == 2
    assert "refused" in err and "outside" in err and str(bad) in err
    assert not any(p.name == "evil" for p in tmp_path.rglob("*"))
    assert not (tmp_path / "out").exists()


def test_download_checks_the_checksum(archive, tmp_path, capsys):
    good = hashlib.sha256(archive.read_bytes()).hexdigest()
    url = archive.as_uri()  # file:// stands in for the network, same code path
    work = tmp_path / "work"
    rc = main(["--download", "--url", url, "--sha256", "0" * 64, "--work", str(work), *ARGS])
    assert rc == 2 and "does not match" in capsys.readouterr().err
    assert not list(work.glob("*.zip*"))  # nothing kept from a failed check
    rc = main(["--download", "--url", url, "--sha256", good, "--work", str(work), "--out", str(tmp_path / "out"), *ARGS])
    assert rc == 0, capsys.readouterr().err
    assert (work / "ModelNet10.zip").is_file()
    assert main(["--download", "--url", url, "--work", str(work), *ARGS]) == 2
    assert "--sha256" in capsys.readouterr().err
