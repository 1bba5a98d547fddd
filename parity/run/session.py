"""A run's state: renders cases, settles baselines, compares, records results and writes the report.

The CLI and the pytest plugin both drive one ParitySession; neither does any of this work itself.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from parity.cases.suite import SuiteLoad
from parity.core import envclass
from parity.core.envclass import EnvClass
from parity.core.environment import fingerprint
from parity.core.errors import CaseFileError, ParityError
from parity.core.images import OutputEncoding, encode_output, open_with_notes, save_png
from parity.core.thresholds import Thresholds, ThresholdSource, layered
from parity.facts.case import Case
from parity.judge.baselines import (
    BaselineAction,
    BaselineChoice,
    choose,
    missing_set_message,
    read_fingerprint,
    set_path,
    settle,
    unused,
)
from parity.judge.calibration import calibrated_classes, calibration_path
from parity.judge.calibration import read as read_calibration
from parity.judge.compare import Metrics, check, compare, heatmap, measure
from parity.judge.diagnose import diagnose, wiring_rows
from parity.judge.verdict import case_status
from parity.models.knobs import Knob, Setting
from parity.results.format import write_json
from parity.results.record import CasePaths, CaseResult, JpegCheck, ReportPaths, RunInfo, Status
from parity.run.loras import LoraBook
from parity.run.outdir import OutputLock
from parity.run.planner import schedule

PNG = Setting(OutputEncoding.PNG, OutputEncoding.PNG.value)


@dataclass(frozen=True)
class RunOptions:
    out_dir: Path
    device: str = "cpu"
    cfg_device: str | None = None
    base_model: str | None = None
    offload: str | None = None  # every case's offload mode, over the case files' (core.offload.CHOICES)
    update: bool = False
    diagnose: bool = False
    self_contained: bool = False
    command: str = ""


@dataclass
class ParitySession:
    options: RunOptions
    results: list[CaseResult] = field(default_factory=list)
    started: str = field(default_factory=lambda: _now())
    report_seconds: float = 0.0
    _engine: object = None
    _run_class: EnvClass | None = None
    _calibrations: dict = field(default_factory=dict)
    _lock: OutputLock | None = None
    _suite_files: dict[str, None] = field(default_factory=dict)  # the case files of the cases run, in order
    unused_baselines: tuple[str, ...] = ()  # found when the report is written
    _expected: list[Case] | None = None  # the planned cases, in order, for the engine (see Engine.expect)
    loras: LoraBook = field(default_factory=LoraBook)  # the LoRA audit of every LoRA the run's case files name

    def claim(self) -> None:
        """Check the report folder and hold it for this run (OutDirError: unusable, or another run holds it).
        Done before the first case renders; released when the report is written."""
        if self._lock is None:
            self._lock = OutputLock.acquire(self.options.out_dir, self.options.command)

    @property
    def engine(self):
        if self._engine is None:
            from parity.render.engine import Engine

            self._engine = Engine(
                self.options.device, self.options.base_model, self.options.cfg_device, offload=self.options.offload
            )
            if self._expected is not None:
                self._engine.expect(self._expected, self.options.diagnose)
        return self._engine

    def expect(self, cases: list[Case]) -> None:
        """The cases this run will render, in order (the engine plans its memory by them)."""
        self._expected = list(cases)
        if self._engine is not None:
            self._engine.expect(self._expected, self.options.diagnose)

    def run_case(self, case: Case) -> CaseResult:
        """Render, settle the baseline, compare; any failure becomes this case's error row."""
        self.claim()
        self._suite_files[case.suite_file] = None
        self.loras.saw_case(case)
        start = time.perf_counter()
        try:
            result = self._run(case)
        except ParityError as exc:
            result = self._error(case, str(exc))
        except Exception as exc:  # noqa: BLE001 (one broken case never stops the suite; the traceback is kept)
            if _out_of_memory(exc):
                self._free()
                result = self._error(
                    case,
                    f"CUDA ran out of memory in this case ({str(exc).splitlines()[0]}); the model was unloaded to "
                    "free it and the next case loads it again. Fix: a smaller size or fewer control images, or a "
                    "GPU with more memory",
                )
            else:
                detail = "".join(traceback.format_exception(exc))
                result = self._error(case, f"{type(exc).__name__}: {exc}\n{detail}")
        result.timings["total"] = time.perf_counter() - start
        self._record(result)
        return result

    def run_all(self, cases: list[Case], progress=iter, on_result=None) -> tuple[bool, ReportPaths]:
        """Run cases in order; Ctrl-C stops between cases. The report is written either way (marked incomplete
        when interrupted). Returns (complete, report paths)."""
        complete = False
        self.claim()
        self.expect(cases)
        try:
            for case in progress(cases):
                result = self.run_case(case)
                if on_result is not None:
                    on_result(result)
            complete = True
        except KeyboardInterrupt:
            pass
        return complete, self.finish(complete=complete)

    def plan(self, loads: list[SuiteLoad], shard: tuple[int, int] | None = None) -> list[Case]:
        """The cases to run, in the planner's order and cut to `shard` (i, n); each unusable case file becomes
        one error row now, and the other files run. Every LoRA named gets its audit now, before any pixel."""
        for load in loads:
            if load.error is not None:
                self.add_invalid_file(load.path, load.error)
            for case in load.cases:
                self.loras.saw_case(case)
        cases, _ = schedule([case for load in loads for case in load.cases], shard)
        return cases

    def add_invalid_file(self, path: Path, error: CaseFileError) -> CaseResult:
        """An unusable case file becomes one error row; the other files still run. Its LoRAs are audited all the
        same (a file the server refuses is the commonest reason)."""
        for lora in error.loras:
            self.loras.saw_file(lora, error.training)
        result = CaseResult(
            id=f"{path.stem}::(case file)",
            suite=path.stem,
            suite_file=str(path),
            name="(case file)",
            status=Status.ERROR,
            reason=f"invalid case file: {len(error.problems)} problem(s)",
            error=str(error),
        )
        self._record(result)
        return result

    def finish(self, complete: bool = True) -> ReportPaths:
        """Write results.json and index.html (also after an interruption, marked incomplete)."""
        from parity.report.html import write_report

        self.claim()
        try:
            self.unused_baselines = self._unused_baselines()
            run = replace(self._run_info(complete), unused_baselines=self.unused_baselines)
            out = self.options.out_dir
            start = time.perf_counter()
            index = write_report(out, run, self.results, self.options.self_contained)
            self.report_seconds = time.perf_counter() - start
            write_json(out / "results.json", replace(run, report_seconds=round(self.report_seconds, 3)), self.results)
            if self._engine is not None:
                self._engine.close()
        finally:
            self._lock.release()
            self._lock = None
        return ReportPaths(out / "results.json", index)

    def _run(self, case: Case) -> CaseResult:
        choice = choose(case, self.run_class)
        if choice.missing_set and not self.options.update:
            return self._skipped(case, choice)
        rendered = self.engine.render(case)
        self.loras.loaded(case, self.engine.loaded_lora())
        timings = dict(rendered.timings)
        folder = self._case_dir(case)
        start = time.perf_counter()
        save_png(rendered.image, folder / "output.png")
        decision = settle(case, choice, rendered.image, self.options.update, self._baseline_environment())
        baseline_image, baseline_notes = open_with_notes(decision.path, "baseline")
        baseline = np.asarray(baseline_image, dtype=np.uint8)
        tolerance = self._tolerance(case, choice)
        limits = tolerance.limits
        comparison = compare(rendered.image, baseline, limits)
        jpeg = jpeg_check(rendered.image, baseline, limits) if _is_jpeg(decision.path) and comparison.metrics else None
        paths = self._keep_images(case, folder, decision.path, rendered.image, baseline, comparison)
        timings["compare"] = time.perf_counter() - start
        reference, preview = self.engine.wirings(case)
        status, reason = case_status(decision, choice, comparison, jpeg)
        # a baseline written now is this output: nothing to explain
        written = decision.action in (BaselineAction.WRITTEN, BaselineAction.REWRITTEN)
        diagnosis, diagnosis_notes = None, ()
        if status is Status.FAIL and self.options.diagnose and not written:
            start = time.perf_counter()
            diagnosis, diagnosis_notes = self._diagnose(case, reference, preview, baseline, comparison.metrics, limits)
            timings["diagnose"] = time.perf_counter() - start
            if diagnosis is not None:
                reason = f"{diagnosis.verdict} — {reason}"
        return CaseResult(
            **{k: v for k, v in _case_fields(case).items() if k not in ("notes", "thresholds")},
            thresholds=limits,
            status=status,
            reason=reason,
            metrics=comparison.metrics,
            violations=comparison.violations,
            output_size=comparison.output_size,
            baseline_size=comparison.baseline_size,
            paths=paths,
            baseline_action=decision.action,
            timings=timings,
            jpeg=jpeg,
            wiring=wiring_rows(reference, preview),
            diagnosis=diagnosis,
            notes=(*case.notes, *rendered.notes, *baseline_notes, *tolerance.notes, *diagnosis_notes),
            baseline_environment=read_fingerprint(decision.path),
            peak_memory_gb=rendered.peak_memory_gb,
            peak_memory_by_device=rendered.peak_memory_by_device,
            offload=rendered.offload,
            environment_class=self.run_class.key,
            baseline_set=(choice.run_class if written else choice.set_class).key if (written or choice.set_class) else None,
            baseline_choice=f"set {choice.run_class.key} (written by this run)" if written else choice.describe(),
            threshold_sources={k: v.value for k, v in tolerance.sources.items()},
            noise_floor=tolerance.floor,
            calibration_file=tolerance.path,
        )

    def _diagnose(self, case: Case, reference, preview, baseline, metrics, limits):
        """The diagnosis of a failing case, or (None, its failure as a note): the comparison's verdict stands either
        way (a variant that cannot render, a model that runs out of memory, must not turn a FAIL into an error)."""
        try:
            return diagnose(reference, preview, baseline, metrics, limits, self._renderer(case)), ()
        except Exception as exc:  # noqa: BLE001 (any failure of the diagnosis is said beside the verdict)
            if _out_of_memory(exc):
                self._free()
            first = str(exc).splitlines()[0] if str(exc) else ""
            return None, (f"the diagnosis failed, so no cause is named ({type(exc).__name__}: {first}); the comparison's verdict stands",)

    def _keep_images(self, case: Case, folder: Path, baseline_path: str, output, baseline, comparison) -> CasePaths:
        """The case folder's copies for the report: the baseline, the control images, the difference heatmap
        (output.png is saved first, before the baseline is settled)."""
        kept = folder / f"baseline{Path(baseline_path).suffix.lower() or '.png'}"
        shutil.copyfile(baseline_path, kept)
        controls = []
        for i, source in enumerate(case.effective.control_images, start=1):
            copy = folder / f"control-{i}{Path(source).suffix.lower()}"
            shutil.copyfile(source, copy)
            controls.append(self._rel(copy))
        diff = None
        if comparison.metrics is not None:
            save_png(heatmap(output, baseline, comparison.heatmap_scale), folder / "diff.png")
            diff = self._rel(folder / "diff.png")
        return CasePaths(
            output=self._rel(folder / "output.png"),
            baseline=self._rel(kept),
            diff=diff,
            baseline_source=os.path.abspath(baseline_path),
            controls=tuple(controls),
        )

    @property
    def run_class(self) -> EnvClass:
        """This run's environment class (the engine's device, dtype and kernels)."""
        if self._run_class is None:
            self._run_class = envclass.from_device_info(self.engine.describe())
        return self._run_class

    def _tolerance(self, case: Case, choice: BaselineChoice) -> Tolerance:
        """The limits in force for a case: its case file's, else those calibrated for the class it is compared with
        (its own, else the nearest calibrated one), else the defaults."""
        preferred = choice.set_class or choice.run_class
        available = calibrated_classes(case.baselines_dir)
        target = preferred if preferred in available else envclass.nearest(preferred, available)
        entry, path, notes = None, None, []
        if target is not None:
            path = calibration_path(case.baselines_dir, target)
            if path not in self._calibrations:
                self._calibrations[path] = read_calibration(path)
            calibration = self._calibrations[path]
            entry = calibration.for_case(case.name) if calibration is not None else None
            if entry is None:
                notes.append(f"{path} has no entry for {case.name}: run `parity calibrate` on the suite again")
            elif target != preferred:
                notes.append(f"thresholds calibrated for {target.key}, the nearest class to {preferred.key}")
        limits, sources = layered(
            case.baseline_kind, case.suite_thresholds, case.sample_thresholds, entry.thresholds if entry else None
        )
        return Tolerance(limits, sources, entry.floor if entry else None, path if entry else None, tuple(notes))

    def _skipped(self, case: Case, choice: BaselineChoice) -> CaseResult:
        folder = os.path.dirname(case.baseline or "")
        message = missing_set_message(choice, folder)
        return CaseResult(
            **_case_fields(case),
            status=Status.SKIP,
            reason=message,
            paths=CasePaths(baseline_source=os.path.abspath(set_path(case.baseline, choice.run_class))),
            baseline_action=BaselineAction.NO_SET,
            environment_class=choice.run_class.key,
        )

    def run_environment(self) -> dict:
        """This run's environment, as a pinned baseline written now records it (later runs compare with it)."""
        env = fingerprint(self._engine.describe() if self._engine is not None else {"device": self.options.device})
        keep = ("versions", "device", "device_name", "compute_capability", "cpu_capability", "dtype", "machine",
                "mkl_cbwr", "environment_class")
        return {k: env[k] for k in keep if k in env}

    def _baseline_environment(self) -> dict:
        return {**self.run_environment(), "wiring": "reference", "written": _now()}

    def _free(self) -> None:
        if self._engine is not None:
            self._engine.close(failed=True)

    def _renderer(self, case: Case):
        """Render a variant wiring; renders that differ only in output encoding share one raw image."""
        raw_images: dict = {}

        def render(wiring):
            key = tuple((k, s.value) for k, s in wiring.settings if k is not Knob.OUTPUT)
            if key not in raw_images:
                raw_images[key] = self.engine.render(case, wiring.with_setting(Knob.OUTPUT, PNG)).image
            return encode_output(raw_images[key], wiring.value(Knob.OUTPUT))

        return render

    def _error(self, case: Case, message: str) -> CaseResult:
        return CaseResult(
            **_case_fields(case),
            status=Status.ERROR,
            reason=message.splitlines()[0] if message else "error",
            paths=CasePaths(baseline_source=case.baseline),
            error=message,
        )

    def _record(self, result: CaseResult) -> None:
        self.results.append(result)
        write_json(self.options.out_dir / "results.json", self._run_info(complete=False), self.results)

    def _unused_baselines(self) -> tuple[str, ...]:
        """Pinned baselines that no case of the run's case files uses, found over every case of those files (a
        run may have selected a few: -k, shards); a file that no longer loads is left out of the search."""
        from parity.cases.suite import load_cases

        cases = []
        for path in self._suite_files:
            try:
                cases.extend(load_cases(path))
            except (ParityError, OSError):
                continue
        return unused(cases)

    def _run_info(self, complete: bool) -> RunInfo:
        device_info = self._engine.describe() if self._engine is not None else {"device": self.options.device}
        return RunInfo(
            started=self.started,
            finished=_now() if complete else None,
            complete=complete,
            device=self.options.device,
            base_model_override=self.options.base_model,
            environment=fingerprint(device_info),
            command=self.options.command,
            loras=self.loras.entries(),
        )

    def _case_dir(self, case: Case) -> Path:
        folder = self.options.out_dir / "cases" / safe_name(case.id)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _rel(self, path: Path) -> str:
        return os.path.relpath(path, self.options.out_dir)


@dataclass(frozen=True)
class Tolerance:
    """The limits a case is judged by, where each came from, and the calibrated floor behind them."""

    limits: Thresholds
    sources: dict[str, ThresholdSource]
    floor: Metrics | None
    path: str | None
    notes: tuple[str, ...] = ()


def jpeg_check(output, baseline, limits: Thresholds) -> JpegCheck:
    """Compare the output as the trainer would have saved it (PIL JPEG, quality 75) and measure that encoding's
    own noise floor on the output."""
    encoded = encode_output(output, OutputEncoding.JPEG_75)
    tolerance = limits.pixel_tolerance or 0.0
    metrics = measure(encoded, baseline, tolerance)
    return JpegCheck(metrics, check(metrics, limits), measure(output, encoded, tolerance))


def _is_jpeg(path: str) -> bool:
    return path.lower().endswith((".jpg", ".jpeg"))


def _case_fields(case: Case) -> dict:
    """What a result repeats of its case."""
    return {
        "id": case.id,
        "suite": case.suite,
        "suite_file": case.suite_file,
        "name": case.name,
        "index": case.index,
        "thresholds": case.thresholds,
        "requested": case.requested,
        "effective": case.effective,
        "notes": case.notes,
        "training_step": case.training_step,
        "baseline_origin": case.baseline_origin,
    }


def _out_of_memory(exc: BaseException) -> bool:
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


def safe_name(text: str) -> str:
    """A folder name made of letters, digits, '-', '_' and '.', never '..' or empty."""
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in text).strip(".")
    return name or "_"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
