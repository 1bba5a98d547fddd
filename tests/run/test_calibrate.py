"""Measured tolerances: the proposal from a floor, the calibration file, and `parity calibrate` end to end: it
measures, writes next to the class's baselines, and the next run judges by it (and says so in the report)."""

import json
import math

import pytest
import yaml

from parity.cli import main
from parity.core.errors import CaseRunError
from parity.judge import calibration
from parity.judge.calibration import MARGIN, Calibration, CaseCalibration, Measurement, propose, worst
from parity.judge.compare import Metrics


def metrics(ssim=1.0, psnr=math.inf, max_abs=0, mean=0.0):
    return Metrics(ssim, psnr, max_abs, mean, 0.0, 4.0)


def test_a_floor_gets_twice_its_distance_from_identical():
    t = propose(metrics(ssim=0.999, psnr=50.0, max_abs=3, mean=0.2))
    assert t.ssim_min == pytest.approx(1 - MARGIN * 0.001)
    assert t.psnr_min == pytest.approx(50.0 - 20 * math.log10(MARGIN), abs=0.01)
    assert t.mean_abs_diff_max == pytest.approx(0.4)
    assert t.max_abs_diff_max is None and t.pixel_tolerance is None  # left to the case file and the defaults


def test_an_identical_floor_still_leaves_a_minimum_margin():
    t = propose(metrics())
    assert t.ssim_min == 1 - calibration.MIN_SSIM_GAP and t.psnr_min == calibration.MAX_PSNR
    assert t.mean_abs_diff_max == calibration.MIN_MEAN_GAP


def test_the_floor_is_the_worst_metric_by_metric():
    floor = worst([metrics(ssim=0.99, psnr=60.0, max_abs=1, mean=0.1), metrics(ssim=0.999, psnr=40.0, max_abs=5, mean=0.05)])
    assert (floor.ssim, floor.psnr, floor.max_abs_diff, floor.mean_abs_diff) == (0.99, 40.0, 5, 0.1)


def test_the_file_round_trips_and_a_broken_one_names_itself(tmp_path):
    entry = CaseCalibration(metrics(ssim=0.9999, psnr=70.5), propose(metrics(ssim=0.9999, psnr=70.5)),
                            {"repeat": metrics(), "kernels": metrics(ssim=0.9999, psnr=70.5)})
    cal = Calibration("cpu-float32-avx2", "2026-12-01", calibration.MARGIN_TEXT,
                      (Measurement("repeat", "twice", True), Measurement("kernels", "other kernels", True)),
                      {"a": entry}, {"device": "cpu"})
    path = tmp_path / "cpu-float32-avx2" / "calibration.yaml"
    calibration.write(str(path), cal)
    back = calibration.read(str(path))
    assert back.cases["a"].thresholds == entry.thresholds and back.cases["a"].measured["repeat"].psnr == math.inf
    assert back.measurements == cal.measurements and back.env_class == "cpu-float32-avx2"
    assert calibration.read(str(tmp_path / "missing.yaml")) is None
    path.write_text("format: 99\n")
    with pytest.raises(CaseRunError, match="calibration.yaml cannot be read.*parity calibrate"):
        calibration.read(str(path))


# Text to image, no CFG: these tests are about calibration's bookkeeping, which is the same for every model, and
# an edit model would encode its control picture at ~1 MP in each of the two processes.
PINNED = """
model: qwen_image
loras: [{path: loras/tiny.safetensors}]
sample:
  width: 64
  height: 64
  sample_steps: 2
  guidance_scale: 1
  neg: ""
  samples:
    - {name: a, prompt: "a hat", psnr_min: 20}
"""


def test_calibrate_writes_next_to_the_set_and_the_next_run_judges_by_it(write_case, workdir, cpu_set, capsys, monkeypatch):
    path = write_case(PINNED)
    preview = write_case(
        PINNED.replace("loras:", "baseline_kind: preview\nloras:").replace("a hat\", ", "a hat\", baseline: p.jpg, ")
        + '    - {name: r, prompt: "a hat", seed: -1, baseline: p.jpg}\n',  # server refuses
        "previews.yaml",
    )
    (path.parent / "p.jpg").write_bytes((workdir / "cases" / "inputs" / "square.png").read_bytes())
    assert main(["calibrate", str(path), str(preview)]) == 0
    out = capsys.readouterr().out
    assert "kernels: rendered in a second process with ATEN_CPU_CAPABILITY=" in out and "| floor: SSIM" in out
    written = workdir / "baselines" / "suite" / cpu_set / "calibration.yaml"
    data = yaml.safe_load(written.read_text())
    assert data["environment_class"] == cpu_set and set(data["cases"]) == {"a"}
    assert set(data["cases"]["a"]["measured"]) == {"repeat", "kernels"}
    assert data["cases"]["a"]["measured"]["repeat"]["psnr"] == math.inf  # a repeat on one machine is exact
    preview_data = yaml.safe_load((workdir / "baselines" / "previews" / cpu_set / "calibration.yaml").read_text())
    assert set(preview_data["cases"]) == {"a"} and "skipped previews::r: the reference server refuses it (seed -1" in out
    measured = preview_data["cases"]["a"]["measured"]
    assert set(measured) == {"repeat", "kernels", "encoding"}
    # JPEG previews are judged after the trainer's encoding: the encoding itself is reported, not a floor
    assert measured["encoding"]["ssim"] < 1 and not preview_data["measurements"]["encoding"]["feeds_thresholds"]
    assert preview_data["cases"]["a"]["floor"]["ssim"] > measured["encoding"]["ssim"]

    import parity.run.calibrate

    before = written.read_bytes()
    monkeypatch.setattr(parity.run.calibrate, "_other_kernels", lambda *args: ({}, None))  # no second process this time
    assert main(["calibrate", str(path), "--dry-run"]) == 0
    assert "parity: would write" in capsys.readouterr().out and written.read_bytes() == before

    assert main(["run", str(path), "--out", str(workdir / "first")]) == 1  # writes the set
    assert main(["run", str(path), "--out", str(workdir / "second")]) == 0
    (a,) = json.loads((workdir / "second" / "results.json").read_text())["cases"]
    assert a["threshold_sources"]["ssim_min"] == "calibrated" and a["thresholds"]["ssim_min"] == data["cases"]["a"]["thresholds"]["ssim_min"]
    assert a["threshold_sources"]["psnr_min"] == "sample" and a["thresholds"]["psnr_min"] == 20  # a person's value wins
    assert float(a["noise_floor"]["psnr"]) == data["cases"]["a"]["floor"]["psnr"] and a["calibration_file"].endswith("calibration.yaml")
    assert a["baseline_set"] == cpu_set and a["environment_class"] == cpu_set
    html = (workdir / "second" / "index.html").read_text()
    assert "noise floor (calibrated)" in html and "margin beyond the floor" in html and "calibrated" in html
    assert f"compared with set {cpu_set} (this environment&#39;s own)" in html
