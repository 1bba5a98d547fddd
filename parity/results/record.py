"""Results of a run: typed case records and their `results.json` form (schema version 1)."""

from __future__ import annotations

import enum
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from parity.cases.case import Settings
from parity.core.atomic import write_text
from parity.core.thresholds import Thresholds
from parity.judge.baselines import BaselineAction
from parity.judge.compare import Metrics, Violation
from parity.judge.diagnose import Diagnosis, KnobRow
from parity.judge.verdict import JpegCheck, Status

SCHEMA_VERSION = 1


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
    peak_memory_gb: float | None = None  # CUDA: the case's peak allocated memory
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


def counts(results: list[CaseResult]) -> dict[str, int]:
    return {s.value: sum(1 for r in results if r.status is s) for s in Status}


def to_json(run: RunInfo, results: list[CaseResult]) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "run": _plain(asdict(run)),
        "counts": counts(results),
        "cases": [_plain(asdict(r)) for r in results],
    }


def write_json(path: str | Path, run: RunInfo, results: list[CaseResult]) -> None:
    """Write results.json atomically (temp file + rename)."""
    write_text(path, json.dumps(to_json(run, results), indent=2, allow_nan=False))


def _plain(value: Any) -> Any:
    """JSON-safe form: enums by value, tuples as lists, non-finite floats as the strings "inf"/"-inf"/"nan"
    (strict JSON has no such numbers; every value a result can hold gets a form, so writing never fails)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {(k if isinstance(k, str) else str(_plain(k))): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else "inf" if value > 0 else "-inf"
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    return repr(value)  # anything else a record may carry: shown, never a crash of the writer


def read_json(path: str | Path) -> tuple[RunInfo, list[CaseResult]]:
    """results.json back into typed records (for `parity report merge`)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{path}: results schema {data.get('schema_version')!r}, this parity reads {SCHEMA_VERSION}")
    return _typed(RunInfo, data["run"]), [_typed(CaseResult, c) for c in data["cases"]]


def _typed(tp: Any, value: Any) -> Any:
    """The inverse of _plain, guided by type hints."""
    import dataclasses
    import types
    import typing

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if value is None:
        return None
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        return _typed(options[0], value) if len(options) == 1 else value
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_typed(args[0], v) for v in value)
        return tuple(_typed(a, v) for a, v in zip(args, value))
    if origin is dict:
        return {k: _typed(args[1], v) for k, v in value.items()} if args else dict(value)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(value)
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        return tp(**{f.name: _typed(hints[f.name], value[f.name]) for f in dataclasses.fields(tp) if f.name in value})
    if tp is float and isinstance(value, str):
        return float(value)  # "inf", "-inf", "nan"
    if tp is float and isinstance(value, int):
        return float(value)
    return value
