"""Recorded sections brought over from another checkout's results file (stamps unchanged), and dropped."""
import json
import subprocess
import sys

import pytest

from ebmcore.results import adopt, drop, record


def test_adopt_copies_sections_with_their_stamps(tmp_path):
    other, here = tmp_path / "other", tmp_path / "here"
    record("demo", "a", {"x": 1.5}, command="cmd a", results_dir=other)
    record("demo", "b", {"x": 2.5}, command="cmd b", results_dir=other)
    record("demo", "kept", {"x": 0.0}, command="cmd kept", results_dir=here)
    path = adopt(other / "demo.json", ["a"], results_dir=here)
    data = json.loads(path.read_text())
    assert set(data) == {"a", "kept"}
    assert data["a"] == json.loads((other / "demo.json").read_text())["a"]
    assert data["a"]["command"] == "cmd a" and "commit" in data["a"]


def test_adopt_refuses_a_missing_section_naming_the_file(tmp_path):
    record("demo", "a", {"x": 1}, command="cmd", results_dir=tmp_path / "other")
    with pytest.raises(KeyError, match="no section zzz"):
        adopt(tmp_path / "other" / "demo.json", ["zzz"], results_dir=tmp_path)
    out = subprocess.run([sys.executable, "-m", "ebmcore.results", "adopt", str(tmp_path / "other" / "demo.json"),
                          "zzz"], capture_output=True, text=True)
    assert out.returncode == 2 and "demo.json" in out.stderr and "Traceback" not in out.stderr


def test_drop_removes_only_the_named_sections(tmp_path):
    record("demo", "old", {"x": 1}, command="cmd old", results_dir=tmp_path)
    record("demo", "kept", {"x": 2}, command="cmd kept", results_dir=tmp_path)
    data = json.loads(drop("demo", ["old"], results_dir=tmp_path).read_text())
    assert set(data) == {"kept"} and data["kept"]["x"] == 2
    with pytest.raises(KeyError, match="no section old"):
        drop("demo", ["old"], results_dir=tmp_path)
