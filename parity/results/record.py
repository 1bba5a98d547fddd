"""Results of a run: typed case records (their `results.json` form is parity/results/format.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parity.cases.loraaudit import LoraAudit
from parity.core.thresholds import Thresholds
from parity.facts.case import Settings
from parity.judge.baselines import BaselineAction
from parity.judge.compare import Metrics, Violation
from parity.judge.diagnose import Diagnosis, KnobRow
from parity.judge.verdict import JpegCheck, Status


@dataclass(frozen=True)
class CasePaths:
    """Images of a case, relative to the run's output folder (None where there is none)."""

    output: str | None = None
    baseline: str | None = None
    diff: str | None = None
    baseline_source: str | None = None  # where the baseline lives (absolute), for the user to find it
    controls: tuple[str, ...] = ()  # copies of the control images, in order ("Picture 1", ...)


@dataclass(frozen=True)
class CaseResult:
    id: str
    suite: str
    suite_file: str
    name: str
    status: Status
    reason: str
    index: int | None = None
    metrics: Metrics | None = None
    thresholds: Thresholds | None = None
    violations: tuple[Violation, ...] = ()
    output_size: tuple[int, int] | None = None
    baseline_size: tuple[int, int] | None = None
    requested: Settings | None = None
    effective: Settings | None = None
    notes: tuple[str, ...] = ()
    paths: CasePaths = field(default_factory=CasePaths)
    baseline_action: BaselineAction = BaselineAction.NONE
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    jpeg: JpegCheck | None = None
    training_step: int | None = None
    baseline_origin: str | None = None
    wiring: tuple[KnobRow, ...] = ()
    diagnosis: Diagnosis | None = None
    baseline_environment: dict[str, Any] | None = None  # recorded when a pinned baseline was written
    peak_memory_gb: float | None = None  # CUDA: the case's peak allocated memory on its main device
    peak_memory_by_device: dict[str, float] = field(default_factory=dict)  # CUDA: device -> the case's peak GB
    offload: str | None = None  # the offload mode it rendered in (core.offload.MODES); None: not rendered
    environment_class: str | None = None  # this run's class (envclass), e.g. cpu-float32-avx2
    baseline_set: str | None = None  # the class of the set compared with (None: a training preview)
    baseline_choice: str | None = None  # which baseline was used, in words (own set, nearest set, preview)
    threshold_sources: dict[str, str] = field(default_factory=dict)  # limit -> sample/suite/calibrated/default
    noise_floor: Metrics | None = None  # the calibrated floor of this case in the class compared with
    calibration_file: str | None = None


@dataclass(frozen=True)
class ReportPaths:
    results_json: Path
    index_html: Path


@dataclass(frozen=True)
class RunInfo:
    started: str
    finished: str | None
    complete: bool
    device: str
    base_model_override: str | None
    environment: dict[str, Any]
    command: str
    report_seconds: float | None = None
    unused_baselines: tuple[str, ...] = ()  # pinned baselines no case of the run's suites uses (never deleted)
    loras: tuple[LoraAudit, ...] = ()  # the LoRA audit: each LoRA the run's case files name, as both sides see it


def counts(results: list[CaseResult]) -> dict[str, int]:
    return {s.value: sum(1 for r in results if r.status is s) for s in Status}
