"""Under pytest-xdist (the README's test command): a run never stops without its reason.

The crash reported as `INTERNALERROR … assert not crashitem` / `no tests ran` was a worker that raised while
collecting: the parity plugin's claim on its report folder (`<parity_out>/gwN/.parity-run.lock`) failed because
another pytest run in the same checkout held it, and the plugin raised a UsageError there. pytest still reports a
worker's collection after that (pytest_collection_finish runs in a `finally:`), xdist schedules tests on it, the
worker ends, and xdist asserts. Reproduced by starting a second `pytest -n 2 --dist loadfile` in a checkout while
the first ran (the first test of the refused worker was named as the crash item, and nothing else).
"""

import os
import subprocess
import sys

import pytest
from paths import REPO, case_folder

from parity.run.outdir import OutputLock

SUITE = """
loras: [{path: loras/tiny.safetensors}]
sample:
  width: 64
  height: 64
  sample_steps: 2
  guidance_scale: 1
  samples:
    - {name: first, prompt: "a hat", ctrl_img_1: inputs/square.png}
    - {name: second, prompt: "a cat", ctrl_img_1: inputs/square.png}
"""


def test_a_report_folder_another_run_holds_fails_the_cases_with_the_holder_and_the_rest_runs(pytester):
    case_folder(pytester.path / "cases")
    (pytester.path / "cases" / "suite.yaml").write_text(SUITE)
    pytester.makepyfile(test_unit="def test_unit():\n    assert True\n")
    pytester.makeini("[pytest]\nparity_cases = cases\nparity_out = out\n")
    held = [OutputLock.acquire(pytester.path / "out" / f"gw{i}", "the other run's pytest") for i in range(2)]
    try:
        result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider")
    finally:
        for lock in held:
            lock.release()
    text = result.stdout.str()
    assert "INTERNALERROR" not in text and "assert not crashitem" not in text
    result.assert_outcomes(passed=1, failed=2)
    assert "parity: another parity run is writing its report to" in text and "the other run's pytest" in text


INJECTED = """
import os, time
import pytest

def pytest_collection_modifyitems(config, items):
    if getattr(config, "workerinput", {}).get("workerid") == "gw0":
        time.sleep(4)  # gw1 is scheduled first, as when the other worker's collection is slower
        raise pytest.UsageError("injected: the report folder is another run's")
"""


@pytest.mark.parametrize("named", [False, True], ids=["xdist-alone", "with-worker_deaths"])
def test_a_worker_that_ends_early_names_itself_the_test_and_the_cause(pytester, named):
    """Without the reporter (xdist alone) the output is the reported one: the crash item and no reason. With it, the
    worker, its exit status, the test it had not run and the exception are named before xdist's assert."""
    pytester.makeconftest(INJECTED)
    pytester.makepyfile(test_a="def test_one():\n    pass\n\ndef test_two():\n    pass\n",
                        test_b="def test_three():\n    pass\n")
    args = ["-n", "2", "--dist", "loadfile", "-p", "no:cacheprovider"] + (["-p", "worker_deaths"] if named else [])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), *sys.path])}
    done = subprocess.run([sys.executable, "-m", "pytest", *args], cwd=pytester.path, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    text = done.stdout + done.stderr
    assert "assert not crashitem" in text  # xdist's own end of such a run, either way
    said = "[gw0] worker ended its session with exit status 4 (USAGE_ERROR) before running test_"
    cause = ": while collecting: UsageError: injected: the report folder is another run's"
    assert (said in text and cause in text) is named, text
