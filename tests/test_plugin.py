"""The pytest plugin, driven through pytester: items, marker, options and their ini twins, regeneration.

Every inner run is a subprocess: an in-process pytester run drops the modules first imported inside it, and
importing torch's C extensions a second time in one process crashes it.
"""

import json
import shutil

import pytest
from conftest import INPUTS, TINY_LORA

SUITE = """
loras: [{path: loras/tiny.safetensors}]
sample:
  width: 64
  height: 64
  sample_steps: 2
  neg: ""
  samples:
    - {name: first, prompt: "a hat", ctrl_img_1: inputs/square.png}
    - {name: second, prompt: "a cat", ctrl_img_1: inputs/square.png, network_multiplier: 0.5}
"""


@pytest.fixture
def project(pytester):
    shutil.copytree(INPUTS, pytester.path / "cases" / "inputs")
    (pytester.path / "cases" / "loras").mkdir()
    shutil.copy(TINY_LORA, pytester.path / "cases" / "loras" / "tiny.safetensors")
    (pytester.path / "cases" / "suite.yaml").write_text(SUITE)
    (pytester.path / "tests").mkdir()
    (pytester.path / "tests" / "test_unit.py").write_text("def test_unit():\n    assert True\n")
    (pytester.path / "other.yaml").write_text("not: a case\n")  # outside parity_cases: never collected
    pytester.makeini("[pytest]\nparity_out = out\n")
    return pytester


def test_each_sample_is_an_item_marked_parity(project):
    result = project.runpytest_subprocess("--collect-only", "-q", "-m", "parity")
    result.stdout.fnmatch_lines(["cases/suite.yaml::first", "cases/suite.yaml::second", "*2/3 tests collected (1 deselected)*"])


def test_missing_baselines_are_written_and_fail_then_pass(project):
    result = project.runpytest_subprocess("-m", "parity")
    result.assert_outcomes(failed=2, deselected=1)
    result.stdout.fnmatch_lines(
        [
            "*FAIL: suite::first: baseline was missing: written to *first.png*",
            "*baseline: *first.png",
            "*- parity -*",
            "0 passed, 2 failed, 0 errors — report: *index.html",
        ]
    )
    assert (project.path / "baselines" / "suite" / "first.png").is_file()
    result = project.runpytest_subprocess("-m", "parity")
    result.assert_outcomes(passed=2, deselected=1)
    data = json.loads((project.path / "out" / "results.json").read_text())
    assert [c["status"] for c in data["cases"]] == ["pass", "pass"]


def test_update_rewrites_and_fails_and_the_cli_option_beats_the_ini(project):
    project.runpytest_subprocess("-m", "parity")
    result = project.runpytest_subprocess("-m", "parity", "--parity-update", "--parity-out", "elsewhere")
    result.assert_outcomes(failed=2, deselected=1)
    result.stdout.fnmatch_lines(["*baseline rewritten on request*"])
    assert (project.path / "elsewhere" / "index.html").is_file()


def test_a_failing_case_prints_metrics_and_every_path(project):
    project.runpytest_subprocess("-m", "parity")
    from PIL import Image

    baseline = project.path / "baselines" / "suite" / "first.png"
    Image.new("RGB", (64, 64), (0, 0, 0)).save(baseline)
    result = project.runpytest_subprocess("-m", "parity")
    result.assert_outcomes(failed=1, passed=1, deselected=1)
    result.stdout.fnmatch_lines(
        [
            "*FAIL: suite::first: SSIM * < 0.995*",
            "*SSIM * PSNR * mean |diff|*",
            "*case file: *suite.yaml",
            "*baseline: *first.png",
            "*output: */out/cases/suite__first/output.png",
            "*diff: */out/cases/suite__first/diff.png",
        ]
    )


def test_an_invalid_case_file_is_a_collection_error_naming_field_and_fix(project):
    (project.path / "cases" / "broken.yaml").write_text("sample:\n  sample_stepz: 3\n  prompts: [a]\n")
    result = project.runpytest_subprocess("-m", "parity", "--collect-only")
    result.stdout.fnmatch_lines(["*invalid case file*broken.yaml*", "*broken.yaml:2: sample.sample_stepz: unknown key (did you mean 'sample_steps'?)*Fix:*"])
    assert result.ret != 0


def test_unit_tests_run_without_touching_the_model(project):
    result = project.runpytest_subprocess("tests")
    result.assert_outcomes(passed=1)
    assert not (project.path / "out").exists()


def test_junit_xml_from_pytest_carries_the_metrics(project):
    project.runpytest_subprocess("-m", "parity")
    from PIL import Image

    Image.new("RGB", (64, 64), (0, 0, 0)).save(project.path / "baselines" / "suite" / "first.png")
    project.runpytest_subprocess("-m", "parity", "--junitxml", "junit.xml")
    xml = (project.path / "junit.xml").read_text()
    assert '<failure message="FAIL: suite::first: SSIM' in xml
    assert "PSNR" in xml and "diff.png" in xml


def test_items_are_grouped_by_scale_and_sharded(project):
    (project.path / "cases" / "suite.yaml").write_text(
        SUITE + '    - {name: third, prompt: "a dog", ctrl_img_1: inputs/square.png}\n'
    )
    result = project.runpytest_subprocess("--collect-only", "-q", "-m", "parity")
    result.stdout.fnmatch_lines(["cases/suite.yaml::first", "cases/suite.yaml::third", "cases/suite.yaml::second"])
    result = project.runpytest_subprocess("--collect-only", "-q", "-m", "parity", "--parity-shard", "2/2")
    result.stdout.fnmatch_lines(["cases/suite.yaml::second", "*1/4 tests collected (3 deselected)*"])


def test_cfg_parallel_run_matches_the_pinned_one_device_baselines(project):
    project.runpytest_subprocess("-m", "parity")  # pins the baselines, one device
    result = project.runpytest_subprocess("-m", "parity", "--parity-cfg-device", "cpu")
    result.assert_outcomes(passed=2, deselected=1)
    data = json.loads((project.path / "out" / "results.json").read_text())
    assert data["run"]["environment"]["cfg_device"] == "cpu"
    result = project.runpytest_subprocess("-m", "parity", "--parity-cfg-device", "cuda:1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*parity: device 'cpu' and CFG device 'cuda:1' must both be GPUs (or both cpu)*"])
