"""pytest plugin (entry point `pytest11: parity`): each sample of a case file is a test item marked `parity`.

Opt-in: it collects case files only under the roots a project names (ini `parity_cases`, `--parity-cases`, or
`config.addinivalue_line("parity_cases", ...)` in its conftest's pytest_configure); with none it does nothing, so
installing parity never changes another project's run. Hooks only delegate to PytestParity, which owns the run
(one ParitySession, so the model loads once).
"""

from __future__ import annotations

import os
import shlex
from itertools import pairwise
from pathlib import Path

import pytest

from parity.cases.suite import CASE_SUFFIXES, load_cases
from parity.core.environment import env_changes, reproducible_cpu_math
from parity.core.errors import CaseFileError
from parity.core.visible import visible
from parity.facts.case import Case
from parity.judge.compare import describe
from parity.judge.diagnose import cause_text
from parity.results.record import CaseResult, Status
from parity.run.planner import parse_shard, schedule

from .options import add_pytest_options, assign_devices, check_offload, option_value

PARITY_KEY = pytest.StashKey["PytestParity"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    add_pytest_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "parity: one sample of a parity case file (reference inference vs stored image)")
    _check_root(config)
    config.stash[PARITY_KEY] = PytestParity(config)


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    return parent.config.stash[PARITY_KEY].collect_file(file_path, parent)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    config.stash[PARITY_KEY].plan_items(items)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[PARITY_KEY].finish(interrupted=exitstatus == pytest.ExitCode.INTERRUPTED)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    config.stash[PARITY_KEY].summary(terminalreporter)


def _valued_flags() -> set[str]:
    from .options import OPTIONS

    return {"--parity-cases", *(f"--parity-{o.name}" for o in OPTIONS if not o.flag)}


def _check_root(config: pytest.Config) -> None:
    """pytest picks its root directory and config file from the command line before any plugin is loaded, so the
    value of `--parity-out PATH` (two words) looks like a test path to it: when PATH exists outside the folder
    pytest runs in (a second run's report folder, a model folder), pytest looks for its config file from there,
    misses the project's and roots the run there (`-m parity` then collects nothing). Refused with the fix, unless
    the config file pytest read is one above the folder it runs in (a workspace's parent config file that pytest
    adopts instead of the project's is not caught) or was named with -c."""
    if config.option.inifilename:  # `-c FILE`: pytest reads that file and roots the run at its folder
        return
    args = [*shlex.split(os.environ.get("PYTEST_ADDOPTS", "")), *map(str, config.invocation_params.args)]
    root, here = config.rootpath.resolve(), Path(config.invocation_params.dir).resolve()
    if config.inipath is not None and here.is_relative_to(config.inipath.parent.resolve()):
        return
    flags = _valued_flags()
    for flag, value in pairwise(args):
        taken = (here / value).resolve()
        if flag in flags and taken.exists() and not taken.is_relative_to(here):
            raise pytest.UsageError(
                f"parity: pytest took {value!r}, the value of {flag}, for a test path and made {str(root)!r} its root "
                f"directory (it reads the command line before plugins load), so this project's settings (markers, "
                f"parity_cases, addopts) would not be read. Write the option with '=': {flag}={value}"
            )


class PytestParity:
    """Plugin state for one pytest run: which YAML files are cases, the run's session, the report."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self._roots: list[Path] | None = None
        self._session = None
        self.report_paths = None
        self.refused: str | None = None  # why this worker's cases cannot run (its report folder is another run's)
        worker = getattr(config, "workerinput", {}).get("workerid")
        try:  # every --parity-* value is checked here: a bad one is a usage error, never an internal error
            self.devices = assign_devices(
                str(option_value(config, "device")),
                option_value(config, "cfg-device") or None,
                int(worker.removeprefix("gw")) if worker else None,  # one xdist worker per GPU (or GPU pair)
            )
            check_offload(option_value(config, "offload") or None)
            spec = option_value(config, "shard")
            self.shard = parse_shard(str(spec)) if spec else None
        except ValueError as exc:
            raise pytest.UsageError(f"parity: {exc}") from None

    @property
    def roots(self) -> list[Path]:
        """The folders and files the project declared as case files (read after every pytest_configure, so a
        conftest may add some); none: the plugin stays out of the run."""
        if self._roots is None:
            declared = self.config.getoption("parity_cases") or self.config.getini("parity_cases")
            self._roots = [(self.config.rootpath / r).resolve() for r in declared]
            if self._roots:
                reproducible_cpu_math()  # before any case computes (parity/environment.py)
        return self._roots

    def is_case_file(self, path: Path) -> bool:
        if path.suffix not in CASE_SUFFIXES or not self.roots:
            return False
        resolved = path.resolve()
        return any(resolved == root or root in resolved.parents for root in self.roots)

    def collect_file(self, path: Path, parent: pytest.Collector):
        if self.is_case_file(path):
            return CaseFile.from_parent(parent, path=path)
        return None

    @property
    def session(self):
        if self._session is None:
            from parity.run.session import ParitySession, RunOptions

            out = Path(str(option_value(self.config, "out")))
            worker = getattr(self.config, "workerinput", {}).get("workerid")
            if worker:
                out = out / worker
            device, cfg_device = self.devices
            self._session = ParitySession(
                RunOptions(
                    out_dir=out if out.is_absolute() else self.config.rootpath / out,
                    device=device,
                    cfg_device=cfg_device,
                    base_model=option_value(self.config, "base-model") or None,
                    offload=option_value(self.config, "offload") or None,
                    update=bool(option_value(self.config, "update")),
                    diagnose=bool(option_value(self.config, "diagnose")),
                    self_contained=bool(option_value(self.config, "self-contained")),
                    command="pytest " + " ".join(self.config.invocation_params.args),
                )
            )
        return self._session

    def plan_items(self, items: list[pytest.Item]) -> None:
        """Parity items grouped by model, LoRA and scale (each fused once), then cut to this shard; other items
        keep their places."""
        cases = [item for item in items if isinstance(item, CaseItem)]
        if not cases:
            return
        if not self.config.option.collectonly:
            self._claim()
        planned, dropped = schedule(cases, self.shard, case_of=lambda item: item.case)
        if not self.config.option.collectonly and self.refused is None:
            self.session.expect([item.case for item in planned])
        if dropped:
            self.config.hook.pytest_deselected(items=dropped)
        slots = iter(planned)
        reordered = []
        for item in items:
            if not isinstance(item, CaseItem):
                reordered.append(item)
            elif (planned_item := next(slots, None)) is not None:
                reordered.append(planned_item)
        items[:] = reordered

    def _claim(self) -> None:
        """Hold the report folder before the first case: unusable, or held by another run (another pytest in the
        same checkout), stops the run now with the reason. Not so in an xdist worker: pytest reports a worker's
        collection even when this hook raises (pytest_collection_finish runs in a `finally:`), xdist schedules
        tests on it, the worker ends, and xdist stops the whole run at `assert not crashitem` without a word of
        why. There each case fails with the reason instead, and the other tests run."""
        from parity.run.outdir import OutDirError

        try:
            self.session.claim()
        except OutDirError as exc:
            self._session = None  # nothing ran, nothing to report: the folder stays the other run's
            if not hasattr(self.config, "workerinput"):
                raise pytest.UsageError(f"parity: {exc}") from None
            self.refused = f"parity: {exc}"

    def finish(self, interrupted: bool) -> None:
        if self._session is not None:
            self.report_paths = self._session.finish(complete=not interrupted)

    def summary(self, reporter) -> None:
        if self.report_paths is None:
            return
        tally = {s: sum(1 for r in self._session.results if r.status is s) for s in Status}
        reporter.write_sep("-", "parity")
        skipped = f", {tally[Status.SKIP]} skipped" if tally[Status.SKIP] else ""
        reporter.write_line(
            f"{tally[Status.PASS]} passed, {tally[Status.FAIL]} failed, {tally[Status.ERROR]} errors{skipped} — "
            f"report: {self.report_paths.index_html}"
        )
        for reason in dict.fromkeys(r.reason for r in self._session.results if r.status is Status.SKIP):
            reporter.write_line(reason, yellow=True)
        for path in self._session.unused_baselines:
            reporter.write_line(visible(f"no case uses this baseline any more (left in place): {path}"), yellow=True)


class CaseFile(pytest.File):
    """A case file: one test item per sample."""

    def collect(self):
        try:
            cases = load_cases(self.path)
        except CaseFileError as exc:
            self.config.stash[PARITY_KEY].session.add_invalid_file(self.path, exc)
            raise InvalidCaseFile(str(exc)) from None
        for case in cases:
            yield CaseItem.from_parent(self, name=case.name, case=case)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, InvalidCaseFile):
            return f"invalid case file {self.path}:\n{excinfo.value}"
        return super().repr_failure(excinfo, style)


class CaseItem(pytest.Item):
    """One sample: render with the reference wiring, compare with its baseline."""

    def __init__(self, *, case: Case, **kwargs):
        super().__init__(**kwargs)
        self.case = case
        self.add_marker("parity")

    def runtest(self) -> None:
        refused = self.config.stash[PARITY_KEY].refused
        if refused is not None:
            raise CaseRefused(refused)
        result = self.config.stash[PARITY_KEY].session.run_case(self.case)
        if result.status is Status.SKIP:
            pytest.skip(result.reason)
        if result.status is not Status.PASS:
            session = self.config.stash[PARITY_KEY].session
            raise CaseNotPassed(result, session.options.out_dir, session.run_environment())

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, CaseRefused):
            return str(excinfo.value)
        if isinstance(excinfo.value, CaseNotPassed):
            return describe_failure(excinfo.value.result, excinfo.value.out_dir, excinfo.value.run_env)
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, None, f"parity case {self.case.id}"


class InvalidCaseFile(Exception):
    pass


class CaseRefused(Exception):
    """This run cannot render cases at all (its report folder is held by another run): said on each case."""


class CaseNotPassed(Exception):
    def __init__(self, result: CaseResult, out_dir: Path, run_env: dict | None = None):
        self.result = result
        self.out_dir = out_dir
        self.run_env = run_env or {}
        super().__init__(result.reason)


def describe_failure(result: CaseResult, out_dir: Path, run_env: dict | None = None) -> str:
    """The failure text: verdict, every metric against its threshold, every image path."""
    lines = [f"{result.status.value.upper()}: {result.id}: {result.reason}"]
    if result.metrics is not None and result.thresholds is not None:
        lines.append("  " + describe(result.metrics, result.thresholds))
    if result.baseline_choice:
        lines.append(f"  compared with {result.baseline_choice}")
    changes = env_changes(result.baseline_environment, run_env or {})
    if changes:
        lines.append("  the baseline was made elsewhere: " + "; ".join(changes))
    if result.effective is not None:
        e = result.effective
        lines.append(
            f"  effective: {e.width}x{e.height}, seed {e.seed}, {e.steps} steps, guidance {e.guidance_scale:g}, "
            f"LoRA scale {e.lora_scale}"
        )
    for label, value in (
        ("case file", result.suite_file),
        ("baseline", result.paths.baseline_source),
        ("output", result.paths.output and out_dir / result.paths.output),
        ("diff", result.paths.diff and out_dir / result.paths.diff),
        ("report", out_dir / "index.html"),
    ):
        if value:
            lines.append(f"  {label}: {value}")
    if result.diagnosis is not None:
        lines.append(f"  diagnosis: {result.diagnosis.verdict}")
        for row in result.diagnosis.ranked:
            lines.append(f"    {cause_text(row, result.metrics)}")
    if result.error and result.error != result.reason:
        lines.append(result.error)
    return "\n".join(lines)
