"""The full-size benchmark script stays runnable: its --tiny mode on the CPU (numbers meaningless, shape checked)."""

import json
import runpy
import sys

from conftest import REPO


def test_benchmark_script_runs_on_the_tiny_model(tmp_path, monkeypatch):
    out = tmp_path / "bench"
    monkeypatch.setattr(sys, "argv", ["full_size.py", "--tiny", "--cases", "2", "--steps", "2", "--size", "64",
                                      "--drivers", "parity-a,parity-b,server-none", "--out", str(out)])
    module = runpy.run_path(str(REPO / "benchmarks" / "full_size.py"), run_name="bench")
    assert module["main"]() == 0
    data = json.loads((out / "results.json").read_text())
    assert [r["case"] for r in data["runs"]["parity-a"]] == ["c1-square", "c2-mixed"]
    assert data["summary"]["outputs torch.equal across orders"] == {"c1-square": True, "c2-mixed": True}
    assert "server-none / parity-a wall ratio" in data["summary"] and (out / "results.md").is_file()
