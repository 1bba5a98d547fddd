"""The benchmark scripts stay runnable: their --tiny modes on the CPU (numbers meaningless, shape and bits checked)."""

import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from paths import REPO

BENCH = REPO / "benchmarks"
# Two one-picture cases: the scripts' machinery is the same for any count of pictures, and each picture is ~4k
# tokens at ~1 MP (three would make these the slowest tests of the suite).
TINY = ["--tiny", "--cases", "c1-square,c1-portrait", "--steps", "2", "--size", "64"]


def _full_size(*argv: str) -> dict:
    """full_size.py run in this process with `argv`; its results.json (argv holds --out)."""
    module = runpy.run_path(str(BENCH / "full_size.py"), run_name="bench")
    saved, sys.argv = sys.argv, ["full_size.py", *argv]
    try:
        assert module["main"]() == 0
    finally:
        sys.argv = saved
    out = argv[argv.index("--out") + 1]
    return json.loads((Path(out) / "results.json").read_text())


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """full_size.py --tiny run once in this process: every driver on the same two cases."""
    out = tmp_path_factory.mktemp("bench")
    return out, _full_size(*TINY, "--drivers", "parity-a,parity-b,parity-cfg2,server-none", "--out", str(out))


def test_benchmark_script_runs_on_the_tiny_model(bench):
    out, data = bench
    assert [r["case"] for r in data["runs"]["parity-a"]] == ["c1-square", "c1-portrait"]
    assert data["summary"]["outputs torch.equal across orders"] == {"c1-square": True, "c1-portrait": True}
    assert "server-none / parity-a wall ratio" in data["summary"] and (out / "results.md").is_file()
    assert data["summary"]["parity-cfg2 outputs torch.equal parity-a (one GPU)"] == {"c1-square": True, "c1-portrait": True}
    assert data["summary"]["server-none image identical to parity-a"] == {"c1-square": True, "c1-portrait": True}
    stock = [r["stock_denoise_s"] for r in data["runs"]["server-none"] if "stock_denoise_s" in r]
    assert len(stock) == 2 and all(s > 0 for s in stock)
    assert set(data["summary"]["parity-a denoise / the stock call's denoise (same inputs)"]) == {"c1-square", "c1-portrait"}


def test_benchmark_script_loads_a_saved_folder_and_reads_weights_back(tmp_path):
    """--folder: the model saved once, every driver loading it from there; with no room for the weight copy
    (--copy-room-gb 0) parity's restore reads the checkpoint back. (The server-style driver's agreement is the
    `bench` fixture's; left out here, it would add two ~1 MP encodes.)"""
    data = _full_size("--tiny", "--cases", "c1-square,c2-square", "--steps", "2", "--size", "64", "--drivers", "parity-a",
                      "--folder", str(tmp_path / "model"), "--copy-room-gb", "0", "--out", str(tmp_path / "out"))
    assert (tmp_path / "model" / "model_index.json").is_file() and data["meta"]["folder"] == str(tmp_path / "model")
    first, second = data["runs"]["parity-a"]
    assert any("reads them back from the checkpoint" in note for note in first["copy_notes"])
    assert second["lora_scale"] == 0.7 and second["scale_switch_s"] > 0


def test_case_parallel_workers_render_the_in_process_bits(bench, tmp_path):
    """Two worker processes (as xdist workers on two GPUs) take the cases one at a time; every case's decoded
    output equals the one rendered in this process by full_size.py's parity-a driver, on the same weights."""
    _, data = bench
    out = tmp_path / "cp"
    subprocess.run([sys.executable, str(BENCH / "case_parallel.py"), *TINY, "--workers", "2", "--out", str(out)],
                   check=True, cwd=REPO, capture_output=True)
    result = json.loads((out / "results.json").read_text())
    (run,) = result["runs"]
    assert run["workers"] == 2 and set(run["set_up_s"]) == {"0", "1"}
    assert sorted(c for cases in run["cases_per_worker"].values() for c in cases) == ["c1-portrait", "c1-square"]
    assert result["meta"]["weights_sample_sha256"] == data["meta"]["weights_sample_sha256"]
    in_process = {r["case"]: r["decoded_sha256"] for r in data["runs"]["parity-a"]}
    assert {r["case"]: r["decoded_sha256"] for r in run["rows"]} == in_process


def test_case_parallel_joins_runs_of_separate_commands(tmp_path, capsys):
    """--join: one summary over runs measured apart (throughput, same bits), refused across different weights."""
    module = runpy.run_path(str(BENCH / "case_parallel.py"), run_name="case_parallel")

    def part(name, workers, wall, busy, sha, weights="w"):
        rows = [{"case": c, "decoded_sha256": s, "outside_denoise_s": 0.5, "worker": 0, "device": "cpu", "wall_s": 1,
                 "denoise_s": 1, "peak_memory_gb": None} for c, s in sha.items()]
        run = {"workers": workers, "devices": ["cpu"] * workers, "suite_wall_s": wall, "set_up_s": {}, "busy_wall_s": busy,
               "cases_per_worker": {}, "rows": rows}
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"meta": {"weights_sample_sha256": weights}, "runs": [run], "summary": {}}))
        return path

    one = part("one", 1, 100.0, 80.0, {"a": "x", "b": "y"})
    two = part("two", 2, 55.0, 40.0, {"a": "x", "b": "z"})
    assert module["join"]([one, two], tmp_path / "joined", "") == 0
    summary = json.loads((tmp_path / "joined" / "results.json").read_text())["summary"]
    assert summary["throughput 2 vs 1 worker(s), set-up included"] == round(100 / 55, 3)
    assert summary["throughput 2 vs 1 worker(s), set-up excluded (busy wall)"] == 2.0
    assert summary["outputs of the 2-worker run equal the 1-worker run's (sha256 of the decoded tensor)"] == {"a": True, "b": False}
    other = part("other", 2, 50.0, 40.0, {"a": "x"}, weights="v")
    assert module["join"]([one, other], tmp_path / "refused", "") == 2
    assert "different weights" in capsys.readouterr().err


def test_disk_load_script_times_both_loads_of_a_folder(tmp_path, monkeypatch):
    """disk_load.py --tiny: both drivers load the tiny model's folder in alternating order, and the summary gives
    their ratio (the real run saves and loads the full-size checkpoint on a GPU machine)."""
    import parity.render.pool

    monkeypatch.setattr(parity.render.pool, "POOL", None)  # as in the script's own process: every load from disk
    module = runpy.run_path(str(BENCH / "disk_load.py"), run_name="disk_load")
    assert module["main"](["--tiny", "--repeats", "2", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "results.json").read_text())
    assert [(r["repeat"], r["driver"]) for r in result["rows"]] == [(0, "plain"), (0, "parity"), (1, "parity"), (1, "plain")]
    assert all(r["seconds"] > 0 for r in result["rows"]) and result["meta"]["folder_bytes"] > 0
    summary = result["summary"]
    assert len(summary["per repeat parity / plain"]) == 2 and summary["parity / plain (medians)"] > 0
    assert summary["every load read from disk (page cache dropped)"] is False


def test_read_back_script_restores_every_targeted_weight_exactly_both_ways(tmp_path):
    """read_back.py --tiny: the tiny transformer saved, loaded, its targeted linears zeroed and read back from the
    files both ways, each restore checked against the loaded weights' fingerprints."""
    module = runpy.run_path(str(BENCH / "read_back.py"), run_name="read_back")
    assert module["main"](["--tiny", "--folder", str(tmp_path / "t"), "--out", str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [r["how"] for r in result["rows"]] == ["direct", "staged", "staged", "direct"]
    assert all(r["exact"] for r in result["rows"]) and result["summary"]["every restore exact"] is True
    assert result["meta"]["targeted"] == 2 * 14  # two tiny blocks, 14 linears each


def test_quantized_script_diagnoses_a_quantized_preview_suite(tmp_path):
    """quantized.py --tiny: previews drawn on the trainer's quantized model (qfloat8 on both parts), `run` fails
    them, `run --diagnose` names the quantization, and the full preview wiring reproduces every preview."""
    pytest.importorskip("optimum.quanto", reason="the trainer's quantization library: pip install 'parity[trainer]'")
    module = runpy.run_path(str(BENCH / "quantized.py"), run_name="bench")
    assert module["main"](["--tiny", "--cases", "c1-square", "--steps", "2", "--size", "64", "--out", str(tmp_path / "out")]) == 0
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert (data["draw"]["exit"], data["run"]["exit"], data["diagnose"]["exit"]) == (0, 1, 1)
    (verdict,) = data["verdicts"]
    assert "mismatch explained by:" in verdict and "transformer quantization" in verdict, verdict
    assert verdict.endswith("full preview max |diff| 0")
    assert (tmp_path / "out" / "results.md").is_file()
