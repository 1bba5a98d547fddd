"""A run end to end on the tiny model: baselines written then matched, errors kept to their case, the report."""

import json

import numpy as np
from PIL import Image

from parity.cases.suite import load_cases
from parity.report.summary import markdown
from parity.results.format import read_json
from parity.results.record import Status
from parity.run.session import ParitySession, RunOptions, safe_name

SUITE = """
base_model: tiny
loras: [{path: loras/tiny.safetensors}]
sample:
  width: 64
  height: 64
  sample_steps: 2
  guidance_scale: 1  # one transformer pass per step: these tests are about the session's bookkeeping, not CFG
  neg: ""
  walk_seed: true
  seed: 10
  samples:
    - {name: a, prompt: "a hat", ctrl_img_1: inputs/square.png}
    - {name: b, prompt: "a <script>alert(1)</script> hat", ctrl_img_1: inputs/square.png, network_multiplier: 0.5}
"""


def run(cases, out, update=False):
    session = ParitySession(RunOptions(out_dir=out, update=update))
    results = [session.run_case(c) for c in cases]
    paths = session.finish()
    return results, paths


def test_first_run_writes_baselines_and_fails_then_passes(write_case, workdir, cpu_set):
    cases = load_cases(write_case(SUITE))
    first, _ = run(cases, workdir / "out1")
    assert [r.status for r in first] == [Status.FAIL, Status.FAIL]
    assert all("baseline was missing" in r.reason for r in first)
    assert (workdir / "baselines" / "suite" / cpu_set / "a.png").is_file()

    second, paths = run(cases, workdir / "out2")
    assert [r.status for r in second] == [Status.PASS, Status.PASS]
    assert second[0].metrics.ssim == 1.0 and second[0].metrics.max_abs_diff == 0
    data = json.loads(paths.results_json.read_text())
    assert data["schema_version"] == 1 and data["run"]["complete"] is True
    assert data["counts"] == {"pass": 2, "fail": 0, "error": 0, "skip": 0}
    case = data["cases"][0]
    assert case["status"] == "pass" and case["metrics"]["psnr"] == "inf"
    assert case["effective"]["seed"] == 10 and data["cases"][1]["effective"]["lora_scale"] == 0.5
    for key in ("output", "baseline", "diff"):
        assert (paths.results_json.parent / case["paths"][key]).is_file()
    # model_load only where a case loaded the model (the test session shares one loaded tiny model)
    assert {"text_encode", "vae_encode", "denoise", "decode", "compare", "total"} <= case["timings"].keys()
    html = paths.index_html.read_text()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert data["run"]["unused_baselines"] == []


def test_baselines_no_case_uses_are_reported_never_deleted(write_case, workdir, cpu_set):
    """Found over every case of the run's case files, even when the run selected one (b's image is in use)."""
    cases = load_cases(write_case(SUITE))
    run(cases, workdir / "out1")  # writes a.png and b.png
    folder = workdir / "baselines" / "suite"
    stray = [folder / cpu_set / "renamed-sample.png", folder / "unkeyed-old.png"]
    for path in stray:
        path.write_bytes((folder / cpu_set / "a.png").read_bytes())
    (folder / cpu_set / "notes.txt").write_text("not a baseline")
    (result,), paths = run(cases[:1], workdir / "out2")
    assert result.status is Status.PASS
    data = json.loads(paths.results_json.read_text())
    assert data["run"]["unused_baselines"] == [str(stray[1]), str(stray[0])]
    assert all(path.is_file() for path in stray)  # never deleted
    run_info, results = read_json(paths.results_json)
    assert f"- `{stray[0]}`" in markdown(run_info, results) and "never deletes them" in markdown(run_info, results)
    assert "unused baselines" in paths.index_html.read_text()


def test_a_changed_baseline_fails_with_metrics_and_update_rewrites_it(write_case, workdir, cpu_set):
    cases = load_cases(write_case(SUITE))[:1]
    run(cases, workdir / "out1")
    baseline = workdir / "baselines" / "suite" / cpu_set / "a.png"
    pixels = np.asarray(Image.open(baseline)).copy()
    pixels[:32] = 255 - pixels[:32]
    Image.fromarray(pixels).save(baseline)

    (result,), _ = run(cases, workdir / "out2")
    assert result.status is Status.FAIL and result.metrics.ssim < 0.9 and "SSIM" in result.reason
    assert (workdir / "out2" / result.paths.diff).is_file()
    assert np.array_equal(np.asarray(Image.open(baseline)), pixels)  # not rewritten without asking

    (result,), _ = run(cases, workdir / "out3", update=True)
    assert result.status is Status.FAIL and "rewritten" in result.reason
    (result,), _ = run(cases, workdir / "out4")
    assert result.status is Status.PASS


def test_one_broken_case_does_not_stop_the_suite(write_case, workdir):
    cases = load_cases(write_case(SUITE))
    (workdir / "cases" / "inputs" / "square.png").write_bytes(b"")  # both cases use it; break it after loading
    results, paths = run(cases, workdir / "out")
    assert [r.status for r in results] == [Status.ERROR, Status.ERROR]
    assert "control image cannot be read" in results[0].reason and "square.png" in results[0].reason
    assert paths.index_html.is_file()


def test_a_sample_the_server_refuses_is_an_error_row_and_the_others_run(write_case, workdir, cpu_set):
    """The trainer drew a sample at guidance 32; the reference server's request schema refuses it: that case is an
    error row saying so (nothing rendered, no baseline written); the suite's other case runs."""
    text = SUITE.replace("network_multiplier: 0.5}", "network_multiplier: 0.5, guidance_scale: 32}")
    results, _ = run(load_cases(write_case(text)), workdir / "out")
    assert [r.status for r in results] == [Status.FAIL, Status.ERROR]  # a: baseline written for review
    assert "the reference server refuses this request: guidance_scale 32 is outside" in results[1].reason
    assert "(0..20)" in results[1].reason and "Fix:" in results[1].reason
    assert not (workdir / "baselines" / "suite" / cpu_set / "b.png").exists()


def test_case_folders_never_escape_the_output_folder():
    assert safe_name("../../etc/passwd") == "_.._etc_passwd"
    assert "/" not in safe_name("suite::a/b") and safe_name("..") == "_"


def test_a_nan_output_is_an_error_row_not_a_baseline(write_case, workdir):
    # One step with the Qwen scheduler config (shift_terminal 0.02) divides zero by zero: NaN latents.
    cases = load_cases(write_case(SUITE.replace("sample_steps: 2", "sample_steps: 1")))[:1]
    (result,), _ = run(cases, workdir / "out")
    assert result.status is Status.ERROR and "NaN" in result.reason and "at least 2 steps" in result.error
    assert not (workdir / "baselines").exists()


def test_a_diagnosis_that_raises_leaves_the_verdict_and_notes_why(write_case, workdir, monkeypatch):
    """--diagnose on a failing case whose diagnosis cannot finish (a variant that fails to render, here simulated):
    the case stays FAIL with its metrics, and a note says why no cause is named."""
    import parity.run.session as session_module

    cases = load_cases(write_case(SUITE))[:1]
    run(cases, workdir / "first")  # writes the baseline
    baseline = next((workdir / "baselines" / "suite").rglob("a.png"))
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(baseline)

    def broken(*args, **kwargs):
        raise RuntimeError("a variant failed to render\nwith a second line")

    monkeypatch.setattr(session_module, "diagnose", broken)
    session = ParitySession(RunOptions(out_dir=workdir / "out", diagnose=True))
    result = session.run_case(cases[0])
    session.finish()
    assert result.status is Status.FAIL and result.metrics is not None and result.error is None
    assert result.diagnosis is None and "SSIM" in result.reason
    note = "the diagnosis failed, so no cause is named (RuntimeError: a variant failed to render); the comparison's verdict stands"
    assert note in result.notes


def test_a_named_baseline_that_is_missing_is_an_error_row_and_nothing_is_written(write_case, workdir):
    text = SUITE.replace('ctrl_img_1: inputs/square.png}', 'ctrl_img_1: inputs/square.png, baseline: refs/a.png}', 1)
    cases = load_cases(write_case(text))[:1]
    (result,), _ = run(cases, workdir / "out")
    assert result.status is Status.ERROR and "refs/a.png that suite::a names" in result.reason
    assert "does not exist; nothing was written" in result.reason and "--update" in result.reason
    assert not (workdir / "cases" / "refs").exists() and not (workdir / "baselines").exists()
    (result,), _ = run(cases, workdir / "out2", update=True)
    assert result.status is Status.FAIL and (workdir / "cases" / "refs" / "a.png").is_file()
    (result,), _ = run(cases, workdir / "out3")
    assert result.status is Status.PASS and result.baseline_choice.startswith("the file the case names")
