"""`results.json`, schema version 1: an explicit mapping between its keys and the run's typed records.

The keys are the format; the records' attribute names are not. Each record type lists its keys and the
attribute each one reads (`FORMAT`), so renaming an attribute changes one entry here and no file, and adding
one is a decision here (a test fails until the attribute is mapped or the format's version moves). The
format is also written down as a JSON Schema shipped beside this module (`results-v1.schema.json`), which
tests hold real runs to. Version 1 was first written as the records' field names; its keys are those names,
so files from before this mapping read unchanged.

Values: enums by their value, tuples as lists, infinite and NaN floats as the strings "inf", "-inf", "nan"
(strict JSON has no such numbers); anything else a free-form mapping holds is written as its repr, so the
writer never fails on a record.
"""

from __future__ import annotations

import enum
import json
import math
import types
import typing
from pathlib import Path
from typing import Any

from parity.cases.loraaudit import LoraAudit
from parity.core.atomic import write_text
from parity.core.thresholds import Thresholds
from parity.facts.case import Settings
from parity.judge.compare import Metrics, Violation
from parity.judge.diagnose import Diagnosis, KnobRow, Variant
from parity.judge.verdict import JpegCheck
from parity.results.record import CasePaths, CaseResult, RunInfo, counts

SCHEMA_VERSION = 1
SCHEMA_FILE = Path(__file__).with_name("results-v1.schema.json")


def _same(*names: str) -> tuple[tuple[str, str], ...]:
    """Keys that read the attribute of the same name (version 1's keys were the attribute names)."""
    return tuple((name, name) for name in names)


# record type -> ((JSON key, attribute), ...), in the order the keys are written
FORMAT: dict[type, tuple[tuple[str, str], ...]] = {
    RunInfo: _same(
        "started", "finished", "complete", "device", "base_model_override", "environment", "command", "report_seconds",
        "unused_baselines", "loras",
    ),
    LoraAudit: _same(
        "path", "format", "trainer_setting", "dtype", "rank", "alpha_trainer", "alpha_server", "modules_in_file",
        "modules_matched", "linears_in_model", "model", "dropped", "server_action", "server_detail", "changes_nothing",
        "differences", "served_as_trained", "line",
    ),
    CaseResult: _same(
        "id", "suite", "suite_file", "name", "status", "reason", "index", "metrics", "thresholds", "violations",
        "output_size", "baseline_size", "requested", "effective", "notes", "paths", "baseline_action", "timings",
        "error", "jpeg", "training_step", "baseline_origin", "wiring", "diagnosis", "baseline_environment",
        "peak_memory_gb", "peak_memory_by_device", "offload", "environment_class", "baseline_set", "baseline_choice", "threshold_sources", "noise_floor",
        "calibration_file",
    ),
    Metrics: _same("ssim", "psnr", "max_abs_diff", "mean_abs_diff", "changed_pixels", "pixel_tolerance"),
    Violation: _same("metric", "value", "limit", "kind"),
    Thresholds: _same("ssim_min", "psnr_min", "mean_abs_diff_max", "max_abs_diff_max", "changed_pixels_max", "pixel_tolerance"),
    Settings: _same(
        "prompt", "negative_prompt", "width", "height", "seed", "steps", "guidance_scale", "lora_scale", "control_images"
    ),
    CasePaths: _same("output", "baseline", "diff", "baseline_source", "controls"),
    JpegCheck: _same("metrics", "violations", "noise_floor"),
    KnobRow: _same("knob", "preview", "reference", "same", "replayable", "effect"),
    Variant: _same("name", "knobs", "metrics", "passed", "note"),
    Diagnosis: _same("rows", "ranked", "full_preview", "explained_by", "verdict", "steps"),
}


def to_json(run: RunInfo, results: list[CaseResult]) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "run": encode(run),
        "counts": counts(results),
        "cases": [encode(r) for r in results],
    }


def write_json(path: str | Path, run: RunInfo, results: list[CaseResult]) -> None:
    """Write results.json atomically (temp file + rename)."""
    write_text(path, json.dumps(to_json(run, results), indent=2, allow_nan=False))


def read_json(path: str | Path) -> tuple[RunInfo, list[CaseResult]]:
    """results.json back into typed records (for `parity report merge` and `parity report summary`)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{path}: results schema {data.get('schema_version')!r}, this parity reads {SCHEMA_VERSION}")
    return decode(RunInfo, data["run"]), [decode(CaseResult, c) for c in data["cases"]]


def encode(value: Any) -> Any:
    """A record, or any value it holds, in its JSON form."""
    mapping = FORMAT.get(type(value))
    if mapping is not None:
        return {key: encode(getattr(value, attr)) for key, attr in mapping}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {(k if isinstance(k, str) else str(encode(k))): encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else "inf" if value > 0 else "-inf"
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    return repr(value)  # anything else a free-form mapping may carry: shown, never a crash of the writer


def decode(tp: Any, value: Any) -> Any:
    """The inverse of encode, guided by the record types' hints; a key a record does not map is ignored."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if value is None:
        return None
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        return decode(options[0], value) if len(options) == 1 else value
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(decode(args[0], v) for v in value)
        return tuple(decode(a, v) for a, v in zip(args, value))
    if origin is dict:
        return {k: decode(args[1], v) for k, v in value.items()} if args else dict(value)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(value)
    if tp in FORMAT:
        hints = typing.get_type_hints(tp)
        # keys that read a property (written for the reader, e.g. a LoRA audit's one line) are not read back
        return tp(**{attr: decode(hints[attr], value[key]) for key, attr in FORMAT[tp] if key in value and attr in hints})
    if tp is float and isinstance(value, (str, int)):
        return float(value)  # "inf", "-inf", "nan"; a whole number written without a point
    return value
