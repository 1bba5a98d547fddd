"""The pytest plugin, driven through pytester: items, marker, options and their ini twins, regeneration.

Inner runs are in-process (the test session's loaded tiny model serves them all). pytester drops the modules an
inner run imported first, and a second import of torch's C extensions would crash the process, so the `warm`
fixture first runs a whole session here: every module an inner run needs is then imported already.
"""

import json
import shutil

import pytest
from paths import INPUTS, case_folder

SUITE = """
loras: [{path: loras/tiny.safetensors}]
sample:
  width: 64
  height: 64
  sample_steps: 2
  guidance_scale: 1  # one transformer pass per step: these tests are about the plugin, not CFG
  neg: ""
  samples:
    - {name: first, prompt: "a hat", ctrl_img_1: inputs/square.png}
    - {name: second, prompt: "a cat", ctrl_img_1: inputs/square.png, network_multiplier: 0.5}
"""


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    """One session end to end in this process (render, baseline, compare, report, the plugin's failure text);
    hypothesis too, whose pytest plugin imports it in every inner run otherwise."""
    import hypothesis  # noqa: F401

    from parity import plugin  # noqa: F401
    from parity.cases.suite import load_cases
    from parity.run.session import ParitySession, RunOptions

    root = tmp_path_factory.mktemp("warm")
    case_folder(root)
    (root / "suite.yaml").write_text(SUITE)
    session = ParitySession(RunOptions(out_dir=root / "out"))
    session.run_all(load_cases(root / "suite.yaml"))


@pytest.fixture
def project(pytester, warm):
    case_folder(pytester.path / "cases")
    (pytester.path / "cases" / "suite.yaml").write_text(SUITE)
    (pytester.path / "tests").mkdir()
    (pytester.path / "tests" / "test_unit.py").write_text("def test_unit():\n    assert True\n")
    (pytester.path / "other.yaml").write_text("not: a case\n")  # outside parity_cases: never collected
    pytester.makeini("[pytest]\nparity_cases = cases\nparity_out = out\n")
    return pytester


def test_each_sample_is_an_item_marked_parity(project):
    result = project.runpytest_inprocess("--collect-only", "-q", "-m", "parity")
    result.stdout.fnmatch_lines(["cases/suite.yaml::first", "cases/suite.yaml::second", "*2/3 tests collected (1 deselected)*"])


def test_missing_baselines_are_written_and_fail_then_pass(project, cpu_set):
    result = project.runpytest_inprocess("-m", "parity")
    result.assert_outcomes(failed=2, deselected=1)
    result.stdout.fnmatch_lines(
        [
            "*FAIL: suite::first: baseline was missing: written to *first.png*",
            "*baseline: *first.png",
            "*- parity -*",
            "0 passed, 2 failed, 0 errors — report: *index.html",
        ]
    )
    assert (project.path / "baselines" / "suite" / cpu_set / "first.png").is_file()
    result = project.runpytest_inprocess("-m", "parity")
    result.assert_outcomes(passed=2, deselected=1)
    data = json.loads((project.path / "out" / "results.json").read_text())
    assert [c["status"] for c in data["cases"]] == ["pass", "pass"]


def test_update_rewrites_and_fails_and_the_cli_option_beats_the_ini(project):
    project.runpytest_inprocess("-m", "parity")
    result = project.runpytest_inprocess("-m", "parity", "--parity-update", "--parity-out", "elsewhere")
    result.assert_outcomes(failed=2, deselected=1)
    result.stdout.fnmatch_lines(["*baseline rewritten on request*"])
    assert (project.path / "elsewhere" / "index.html").is_file()


def test_a_failing_case_prints_metrics_and_every_path(project, cpu_set):
    project.runpytest_inprocess("-m", "parity")
    from PIL import Image

    baseline = project.path / "baselines" / "suite" / cpu_set / "first.png"
    Image.new("RGB", (64, 64), (0, 0, 0)).save(baseline)
    result = project.runpytest_inprocess("-m", "parity")
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
    result = project.runpytest_inprocess("-m", "parity", "--collect-only")
    result.stdout.fnmatch_lines(["*invalid case file*broken.yaml*", "*broken.yaml:2: sample.sample_stepz: unknown key (did you mean 'sample_steps'?)*Fix:*"])
    assert result.ret != 0


def test_unit_tests_run_without_touching_the_model(project):
    result = project.runpytest_inprocess("tests")
    result.assert_outcomes(passed=1)
    assert not (project.path / "out").exists()


def test_junit_xml_from_pytest_carries_the_metrics(project, cpu_set):
    project.runpytest_inprocess("-m", "parity")
    from PIL import Image

    Image.new("RGB", (64, 64), (0, 0, 0)).save(project.path / "baselines" / "suite" / cpu_set / "first.png")
    project.runpytest_inprocess("-m", "parity", "--junitxml", "junit.xml")
    xml = (project.path / "junit.xml").read_text()
    assert '<failure message="FAIL: suite::first: SSIM' in xml
    assert "PSNR" in xml and "diff.png" in xml


def test_items_are_grouped_by_scale_and_sharded(project):
    (project.path / "cases" / "suite.yaml").write_text(
        SUITE + '    - {name: third, prompt: "a dog", ctrl_img_1: inputs/square.png}\n'
    )
    result = project.runpytest_inprocess("--collect-only", "-q", "-m", "parity")
    result.stdout.fnmatch_lines(["cases/suite.yaml::first", "cases/suite.yaml::third", "cases/suite.yaml::second"])
    result = project.runpytest_inprocess("--collect-only", "-q", "-m", "parity", "--parity-shard", "2/2")
    result.stdout.fnmatch_lines(["cases/suite.yaml::second", "*1/4 tests collected (3 deselected)*"])


def test_cfg_parallel_run_matches_the_pinned_one_device_baselines(project):
    suite = project.path / "cases" / "suite.yaml"
    suite.write_text(suite.read_text().replace("guidance_scale: 1 ", "guidance_scale: 4 "))  # CFG: passes on the copy
    project.runpytest_inprocess("-m", "parity")  # pins the baselines, one device
    result = project.runpytest_inprocess("-m", "parity", "--parity-cfg-device", "cpu")
    result.assert_outcomes(passed=2, deselected=1)
    data = json.loads((project.path / "out" / "results.json").read_text())
    assert data["run"]["environment"]["cfg_device"] == "cpu"
    result = project.runpytest_inprocess("-m", "parity", "--parity-cfg-device", "cuda:1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*parity: device 'cpu' and CFG device 'cuda:1' must both be GPUs (or both cpu)*"])


def test_an_unrelated_project_runs_unchanged(pytester, warm):
    """parity installed, a project that never asked for it: its cases/ YAML is not collected, nothing is written."""
    (pytester.path / "cases").mkdir()
    (pytester.path / "cases" / "config.yaml").write_text("anything: [1, 2]\nsample_stepz: 3\n")
    (pytester.path / "test_mine.py").write_text("def test_mine():\n    assert True\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert " parity " not in result.stdout.str()  # no summary section (the header lists installed plugins)
    # nothing written (other plugins may leave their dot-folders, e.g. pytest-benchmark's .benchmarks)
    assert sorted(p.name for p in pytester.path.iterdir() if not p.name.startswith(".")) == ["cases", "test_mine.py"]


def test_a_conftest_can_opt_in(pytester, warm):
    case_folder(pytester.path / "cases")
    (pytester.path / "cases" / "suite.yaml").write_text(SUITE)
    pytester.makeconftest('def pytest_configure(config):\n    config.addinivalue_line("parity_cases", "cases")\n')
    result = pytester.runpytest_inprocess("--collect-only", "-q")
    result.stdout.fnmatch_lines(["cases/suite.yaml::first", "cases/suite.yaml::second"])


@pytest.mark.parametrize(
    "args, ini, message",
    [
        (("--parity-shard", "3/2"), "", "*parity: shard '3/2': i must be between 1 and n*"),
        (("--parity-shard", "half"), "", "*parity: shard must look like i/n*"),
        ((), "parity_shard = 0/4\n", "*parity: shard '0/4': i must be between 1 and n*"),
        (("--parity-device", "tpu"), "", "*parity: device must be cpu, cuda or cuda:N, not 'tpu'*"),
    ],
)
def test_a_bad_option_value_is_a_usage_error(project, args, ini, message):
    if ini:
        project.makeini(f"[pytest]\nparity_cases = cases\nparity_out = out\n{ini}")
    result = project.runpytest_inprocess("-m", "parity", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


def test_an_existing_folder_given_as_two_words_is_refused_with_the_fix(project, tmp_path_factory):
    """pytest would take the value for a test path and root the run there (nothing collected): said, with '='."""
    elsewhere = tmp_path_factory.mktemp("reports")  # outside the project, as a second run's report folder is
    result = project.runpytest_inprocess("-m", "parity", "--parity-out", str(elsewhere), "--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*the value of --parity-out, for a test path*Write the option with '=': --parity-out={elsewhere}*"])
    assert project.runpytest_inprocess("-m", "parity", f"--parity-out={elsewhere}", "--collect-only").ret == pytest.ExitCode.OK


def test_an_environment_without_its_own_set_is_skipped_with_one_line(project, cpu_set):
    """Sets exist only for a GPU class: on the CPU nothing is compared or written, and one line says how to make
    this class's set."""
    other = project.path / "baselines" / "suite" / "cuda-bfloat16-sm90"
    other.mkdir(parents=True)
    for name in ("first", "second"):
        shutil.copy(INPUTS / "square.png", other / f"{name}.png")
    result = project.runpytest_inprocess("-m", "parity", "-rs")
    result.assert_outcomes(skipped=2, deselected=1)
    line = f"*no baseline set for this environment ({cpu_set})*it has sets for cuda-bfloat16-sm90*--parity-update*"
    result.stdout.fnmatch_lines(["*0 passed, 0 failed, 0 errors, 2 skipped*", line])
    assert not (project.path / "baselines" / "suite" / cpu_set).exists()
    result = project.runpytest_inprocess("-m", "parity", "--parity-update")
    result.assert_outcomes(failed=2, deselected=1)
    assert (project.path / "baselines" / "suite" / cpu_set / "first.png").is_file()


def test_a_fallback_set_is_named_with_how_its_environment_differs(project, cpu_set):
    """No set of this class, one of a neighbouring kernel set: the cases are compared with it, and a failure says
    which set that was and what differs from the environment it was made in."""
    neighbour = "cpu-float32-default" if cpu_set != "cpu-float32-default" else "cpu-float32-avx2"
    folder = project.path / "baselines" / "suite" / neighbour
    folder.mkdir(parents=True)
    made = {"versions": {"torch": "0.0.1"}, "device": "cpu", "dtype": "float32", "cpu_capability": neighbour.split("-")[-1],
            "environment_class": neighbour}
    for name in ("first", "second"):
        shutil.copy(INPUTS / "square.png", folder / f"{name}.png")  # not what the tiny model renders: both fail
        (folder / f"{name}.png.env.json").write_text(json.dumps(made))
    result = project.runpytest_inprocess("-m", "parity")
    result.assert_outcomes(failed=2, deselected=1)
    result.stdout.fnmatch_lines([
        f"*compared with set {neighbour}, the nearest to this environment ({cpu_set}), which has none*",
        f"*the baseline was made elsewhere: torch: baseline 0.0.1, this run *cpu capability: baseline {neighbour.split('-')[-1]}*",
    ])
    assert not (project.path / "baselines" / "suite" / cpu_set).exists()  # a fallback is compared, never written
