"""The full-size benchmark script stays runnable: its --tiny mode on the CPU (numbers meaningless, shape checked)."""

import json
import runpy
import sys

from conftest import REPO


def test_benchmark_script_runs_on_the_tiny_model(tmp_path, monkeypatch):
    out = tmp_path / "bench"
    monkeypatch.setattr(sys, "argv", ["full_size.py", "--tiny", "--cases", "2", "--steps", "2", "--size", "64",
                                      "--drivers", "parity-a,parity-b,parity-cfg2,server-none", "--out", str(out)])
    module = runpy.run_path(str(REPO / "benchmarks" / "full_size.py"), run_name="bench")
    assert module["main"]() == 0
    data = json.loads((out / "results.json").read_text())
    assert [r["case"] for r in data["runs"]["parity-a"]] == ["c1-square", "c2-mixed"]
    assert data["summary"]["outputs torch.equal across orders"] == {"c1-square": True, "c2-mixed": True}
    assert "server-none / parity-a wall ratio" in data["summary"] and (out / "results.md").is_file()
    assert data["summary"]["parity-cfg2 outputs torch.equal parity-a (one GPU)"] == {"c1-square": True, "c2-mixed": True}
    assert data["summary"]["server-none image identical to parity-a"] == {"c1-square": True, "c2-mixed": True}
    stock = [r["stock_denoise_s"] for r in data["runs"]["server-none"] if "stock_denoise_s" in r]
    assert len(stock) == 2 and all(s > 0 for s in stock)
    assert set(data["summary"]["parity-a denoise / the stock call's denoise (same inputs)"]) == {"c1-square", "c2-mixed"}


def test_case_parallel_script_runs_on_the_tiny_model(tmp_path):
    """Two worker processes on the CPU hand out cases dynamically; the same bits as one worker."""
    import subprocess

    out = tmp_path / "cp"
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "case_parallel.py"), "--tiny", "--cases", "2", "--steps", "2",
                    "--size", "64", "--workers", "1,2", "--out", str(out)], check=True, cwd=REPO, capture_output=True)
    data = json.loads((out / "results.json").read_text())
    assert [run["workers"] for run in data["runs"]] == [1, 2]
    assert sorted(r["case"] for r in data["runs"][1]["rows"]) == ["c1-square", "c2-mixed"]
    key = "outputs of the 2-worker run equal the 1-worker run's (sha256 of the decoded tensor)"
    assert data["summary"][key] == {"c1-square": True, "c2-mixed": True}
    assert data["summary"]["throughput 2 vs 1 worker(s), set-up excluded (busy wall)"] > 0
