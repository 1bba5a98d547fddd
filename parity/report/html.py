"""The HTML report: view-models compute every displayed value; the jinja2 template (autoescaped) only lays out.

Images are referenced relative to the report folder (`cases/<id>/output.png`, `baseline.*`, `diff.png`,
`control-N.*`), or embedded as data URIs with `self_contained`. The page fetches nothing: styles and the
small script (sorting, filtering, swipe/onion/zoom) are inline.
"""

from __future__ import annotations

import base64
import math
import mimetypes
import os
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from parity.cases.loraaudit import LoraAudit
from parity.core.atomic import write_text
from parity.core.environment import env_changes
from parity.core.visible import visible
from parity.judge.calibration import margin_of
from parity.judge.compare import metric_lines
from parity.judge.diagnose import KnobRow, cause_text, effect_text
from parity.results.record import CaseResult, RunInfo, Status, counts

SETTING_ROWS = (
    ("prompt", "prompt"),
    ("negative prompt", "negative_prompt"),
    ("width", "width"),
    ("height", "height"),
    ("seed", "seed"),
    ("steps", "steps"),
    ("guidance", "guidance_scale"),
    ("LoRA scale", "lora_scale"),
    ("control images", "control_images"),
)
# What decides pixels when it changes between the run that made a baseline and this one.
STATUS_ORDER = {Status.ERROR: 0, Status.FAIL: 1, Status.SKIP: 2, Status.PASS: 3}


@dataclass(frozen=True)
class SettingRow:
    label: str
    requested: str
    effective: str
    changed: bool


@dataclass(frozen=True)
class MetricRow:
    label: str
    value: str
    limit: str
    ok: bool
    source: str  # where the limit came from: sample, suite, calibrated, default
    floor: str  # the calibrated noise floor of this case, if any
    margin: str  # how far the limit sits beyond the floor


@dataclass(frozen=True)
class KnobView:
    knob: str
    preview: str
    reference: str
    same: str
    effect: str
    row_class: str


@dataclass(frozen=True)
class Picture:
    caption: str
    src: str
    alt: str


@dataclass(frozen=True)
class SummaryRow:
    """One row of the sortable case table; `sort` holds the machine values the script sorts by."""

    anchor: str
    id: str
    status: str
    status_rank: int
    ssim: str
    psnr: str
    max_abs: str
    mean_abs: str
    size: str
    seed: str
    lora_scale: str
    verdict: str
    sort: dict[str, str]
    search: str


@dataclass(frozen=True)
class CaseView:
    anchor: str
    id: str
    status: str
    reason: str
    verdict: str
    verdict_class: str
    baseline_choice: str
    controls: tuple[Picture, ...]
    baseline: Picture | None
    output: Picture | None
    diff: Picture | None
    heat_note: str
    metrics: tuple[MetricRow, ...]
    settings: tuple[SettingRow, ...]
    causes: tuple[str, ...]
    knobs: tuple[KnobView, ...]
    jpeg: tuple[tuple[str, str], ...]
    env_changes: tuple[str, ...]
    notes: tuple[str, ...]
    timings: str
    paths: tuple[tuple[str, str], ...]
    error: str | None


@dataclass(frozen=True)
class LoraView:
    """One LoRA of the audit: its line, marked by whether the server serves it as trained, and its facts."""

    line: str
    row_class: str
    facts: tuple[tuple[str, str], ...]


def lora_view(entry: LoraAudit) -> LoraView:
    modules = str(entry.modules_in_file)
    if entry.modules_matched is not None:
        modules = f"{entry.modules_matched} of {entry.modules_in_file} in the file match; the model ({entry.model}) has {entry.linears_in_model} linears"
    facts = (
        ("file", entry.path),
        ("kind", entry.format),
        ("trainer setting", entry.trainer_setting),
        ("dtype, rank", f"{entry.dtype or '—'}, rank {entry.rank}"),
        ("alpha: trainer", entry.alpha_trainer),
        ("alpha: server", entry.alpha_server),
        ("modules", modules),
        ("reference server", f"{entry.server_action.value}: {entry.server_detail}"),
        *((("dropped by the server", ", ".join(entry.dropped)),) if entry.dropped else ()),
        *((("effect", entry.changes_nothing),) if entry.changes_nothing else ()),
    )
    bad = not entry.served_as_trained or entry.changes_nothing
    return LoraView(visible(entry.line), "bad" if bad else "good", tuple((k, visible(v)) for k, v in facts))


@dataclass(frozen=True)
class ReportView:
    title: str
    complete: bool
    counts: dict[str, int]
    total: int
    verdict: str
    verdict_class: str
    run_rows: tuple[tuple[str, str], ...]
    env_banner: str
    rows: tuple[SummaryRow, ...]
    cases: tuple[CaseView, ...]
    loras: tuple[LoraView, ...] = ()


def build_view(run: RunInfo, results: list[CaseResult], out_dir: Path, self_contained: bool = False) -> ReportView:
    tally = counts(results)
    ordered = worst_first(results)
    skipped = f", {tally['skip']} skipped" if tally["skip"] else ""
    if tally["error"] or tally["fail"]:
        verdict, verdict_class = f"{tally['fail']} failed, {tally['error']} errors, {tally['pass']} passed{skipped}", "bad"
    elif tally["skip"]:
        verdict, verdict_class = f"{tally['pass']} passed{skipped}: nothing to compare with in this environment", "bad"
    else:
        verdict, verdict_class = f"all {tally['pass']} cases pass", "good"
    env = run.environment
    versions = env.get("versions", {}) if isinstance(env, dict) else {}
    run_rows = (
        ("started", run.started),
        ("finished", run.finished or "not finished (interrupted?)"),
        ("device", f"{env.get('device', run.device)} — {env.get('device_name', '')} ({env.get('dtype', '')})"
         + (f", compute capability {env['compute_capability']}" if env.get("compute_capability") else "")),
        ("environment class", str(env.get("environment_class", "—")) + " (selects the baseline set and calibration)"),
        ("base model override", run.base_model_override or "none (each case file's base_model)"),
        ("versions", ", ".join(f"{k} {v}" for k, v in versions.items())),
        ("platform", f"{env.get('platform', '')}, Python {env.get('python', '')}"),
        ("command", run.command),
        *((("report written in", f"{run.report_seconds:.2f} s"),) if run.report_seconds is not None else ()),
    )
    picture = _pictures(out_dir, self_contained)
    anchor = case_anchors(results)
    cases = tuple(_case_view(anchor[r.id], r, env, picture) for r in ordered)
    drifted = [c.id for c in cases if c.env_changes]
    banner = ""
    if drifted:
        banner = (
            f"{len(drifted)} baseline(s) were made in another environment (library versions, GPU or dtype): "
            "differences may come from there, not from the wiring. See each case."
        )
    missing = sorted({r.reason for r in results if r.status is Status.SKIP})
    if missing:
        banner = " ".join([*missing, banner]).strip()
    if run.unused_baselines:
        run_rows = (*run_rows, ("unused baselines", f"{len(run.unused_baselines)} (no case uses them; never deleted): "
                                + ", ".join(run.unused_baselines)))
    return ReportView(
        title="parity report",
        complete=run.complete,
        counts=tally,
        total=len(results),
        verdict=verdict,
        verdict_class=verdict_class,
        run_rows=run_rows,
        env_banner=banner,
        rows=tuple(_summary_row(anchor[r.id], r) for r in ordered),
        cases=cases,
        loras=tuple(lora_view(entry) for entry in run.loras),
    )


def case_anchors(results: list[CaseResult]) -> dict[str, str]:
    """A stable fragment per case id (`index.html#case-<id>`), for links from CI summaries; unique per report."""
    anchors: dict[str, str] = {}
    used: set[str] = set()
    for r in results:
        base = "case-" + "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in r.id)
        anchor, n = base, 1
        while anchor in used:
            n += 1
            anchor = f"{base}-{n}"
        used.add(anchor)
        anchors[r.id] = anchor
    return anchors


def worst_first(results: list[CaseResult]) -> list[CaseResult]:
    """Errors, then failures (lowest SSIM first), then skips, then passes."""
    return sorted(results, key=_worst_first)


def _worst_first(r: CaseResult):
    ssim = r.metrics.ssim if r.metrics is not None else -1.0
    return (STATUS_ORDER[r.status], ssim, r.suite, r.index if r.index is not None else -1)


def _summary_row(anchor: str, r: CaseResult) -> SummaryRow:
    m, eff = r.metrics, r.effective
    verdict = r.diagnosis.verdict if r.diagnosis is not None else r.reason
    sort = {
        "status": str(STATUS_ORDER[r.status]),
        "case": r.id,
        "ssim": _sortable(m.ssim if m else None),
        "psnr": _sortable(m.psnr if m else None),
        "max": _sortable(m.max_abs_diff if m else None),
        "mean": _sortable(m.mean_abs_diff if m else None),
        "size": _sortable(eff.width * eff.height if eff else None),
        "seed": _sortable(eff.seed if eff else None),
        "lora": _sortable(eff.lora_scale if eff else None),
        "verdict": verdict,
    }
    return SummaryRow(
        anchor=anchor,
        id=r.id,
        status=r.status.value,
        status_rank=STATUS_ORDER[r.status],
        ssim=_num(m.ssim) if m else "—",
        psnr=_num(m.psnr) if m else "—",
        max_abs=str(m.max_abs_diff) if m else "—",
        mean_abs=_num(m.mean_abs_diff) if m else "—",
        size=f"{eff.width}x{eff.height}" if eff else "—",
        seed=str(eff.seed) if eff else "—",
        lora_scale=_setting(eff.lora_scale) if eff else "—",
        verdict=verdict,
        sort=sort,
        search=f"{r.id} {r.status.value} {verdict} {eff.prompt if eff else ''}".lower(),
    )


def _case_view(anchor: str, r: CaseResult, run_env: dict, picture) -> CaseView:
    verdict, verdict_class, causes = "", "", ()
    if r.diagnosis is not None:
        verdict = r.diagnosis.verdict
        verdict_class = "good" if r.diagnosis.explained else "bad"
        causes = tuple(cause_text(row, r.metrics) for row in r.diagnosis.ranked)
    return CaseView(
        anchor=anchor,
        id=r.id,
        status=r.status.value,
        reason=r.reason,
        verdict=verdict,
        verdict_class=verdict_class,
        baseline_choice=_baseline_line(r),
        controls=_controls(r, picture),
        baseline=picture("baseline", r.paths.baseline, f"baseline of {r.id}") if r.paths.baseline else None,
        output=picture("output", r.paths.output, f"output of {r.id}") if r.paths.output else None,
        diff=picture("difference", r.paths.diff, f"difference of {r.id}") if r.paths.diff else None,
        heat_note="brighter = larger difference; white = the largest difference (at least 8 levels)" if r.paths.diff else "",
        metrics=_metric_rows(r),
        settings=_setting_rows(r),
        causes=causes,
        knobs=_knob_views(r),
        jpeg=_jpeg_rows(r),
        env_changes=env_changes(r.baseline_environment, run_env),
        notes=r.notes,
        timings=" · ".join(f"{k} {v:.2f} s" for k, v in r.timings.items()) + _memory_line(r),
        paths=_path_rows(r),
        error=r.error,
    )


def _memory_line(r: CaseResult) -> str:
    """Offload mode and GPU peaks, appended to the timings line."""
    parts = [f"offload {r.offload}"] if r.offload else []
    peaks = r.peak_memory_by_device or ({} if r.peak_memory_gb is None else {"GPU": r.peak_memory_gb})
    parts += [f"peak memory {device} {gb:.2f} GB" for device, gb in peaks.items()]
    return "".join(f" · {p}" for p in parts)


def _metric_rows(r: CaseResult) -> tuple[MetricRow, ...]:
    """The one metric table (compare.METRIC_TABLE) with the limit's source, the floor and the margin beyond it."""
    m, t, floor = r.metrics, r.thresholds, r.noise_floor
    if m is None or t is None:
        return ()
    rows = []
    for line in metric_lines(m, t):
        limit = line.limit
        shown_limit = "—" if limit is None else (f"≥ {_num(limit)}" if line.kind == "min" else f"≤ {_num(limit)}")
        floor_value = float(getattr(floor, line.field)) if floor is not None else None
        rows.append(
            MetricRow(
                line.label,
                _num(line.value),
                shown_limit,
                line.ok,
                r.threshold_sources.get(line.limit_field, "") if limit is not None else "",
                _num(floor_value) if floor_value is not None else "—",
                margin_of(limit, floor_value, line.field) if floor_value is not None and limit is not None else "—",
            )
        )
    return tuple(rows)


def _setting_rows(r: CaseResult) -> tuple[SettingRow, ...]:
    if r.requested is None or r.effective is None:
        return ()
    rows = []
    for label, attr in SETTING_ROWS:
        req, got = _setting(getattr(r.requested, attr)), _setting(getattr(r.effective, attr))
        rows.append(SettingRow(label, req, got, req != got))
    return tuple(rows)


def _knob_views(r: CaseResult) -> tuple[KnobView, ...]:
    rows = r.diagnosis.rows if r.diagnosis is not None else r.wiring
    return tuple(
        KnobView(
            knob=row.knob.value,
            preview=row.preview,
            reference=row.reference,
            same="same" if row.same else ("differs" if row.replayable else "differs (not replayed)"),
            effect=_effect(row, r.metrics),
            row_class="" if row.same else "changed",
        )
        for row in rows
    )


def _jpeg_rows(r: CaseResult) -> tuple[tuple[str, str], ...]:
    if r.jpeg is None:
        return ()
    jm, nf = r.jpeg.metrics, r.jpeg.noise_floor
    return (
        ("output re-encoded as JPEG q75 vs baseline", f"SSIM {_num(jm.ssim)}, PSNR {_num(jm.psnr)}, mean |diff| {_num(jm.mean_abs_diff)}"),
        ("JPEG noise floor (output vs its re-encoding)", f"SSIM {_num(nf.ssim)}, mean |diff| {_num(nf.mean_abs_diff)}"),
    )


def _controls(r: CaseResult, picture) -> tuple:
    names = [os.path.basename(p) for p in (r.effective.control_images if r.effective else ())]
    return tuple(
        picture(f"Picture {k + 1}: {names[k] if k < len(names) else ''}", path, f"control image {k + 1} of {r.id}")
        for k, path in enumerate(r.paths.controls)
    )


def _path_rows(r: CaseResult) -> tuple[tuple[str, str], ...]:
    rows = (
        ("case file", r.suite_file),
        ("training step", None if r.training_step is None else str(r.training_step)),
        ("training preview (as the trainer wrote it)", r.baseline_origin),
        ("baseline source", r.paths.baseline_source),
        ("output", r.paths.output),
        ("difference", r.paths.diff),
    )
    return tuple((label, value) for label, value in rows if value)


def _baseline_line(r: CaseResult) -> str:
    """Which baseline the case was compared with, and which calibration set its limits."""
    parts = []
    if r.baseline_choice:
        parts.append(f"compared with {r.baseline_choice}")
    if r.calibration_file:
        parts.append(f"thresholds calibrated in {r.calibration_file}")
    return "; ".join(parts)


def _pictures(out_dir: Path, self_contained: bool):
    def picture(caption: str, rel: str, alt: str) -> Picture:
        if not self_contained:
            return Picture(caption, rel, alt)
        data = (out_dir / rel).read_bytes()
        kind = mimetypes.guess_type(rel)[0] or "image/png"
        return Picture(caption, f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}", alt)

    return picture


def _effect(row: KnobRow, base) -> str:
    if row.same:
        return ""
    if not row.replayable:
        return "not replayed"
    e = row.effect
    if e is None:
        return "run with --diagnose to measure"
    return effect_text(e, base, "→")


def _sortable(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and math.isinf(value):
        return "1e308"
    return repr(float(value))


def _num(value: float) -> str:
    if isinstance(value, float) and math.isinf(value):
        return "∞ (identical)"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"
    return str(value)


def _setting(value: object) -> str:
    if value is None:
        return "none"
    if value is False:
        return "false"
    if isinstance(value, (tuple, list)):
        return "\n".join(f"Picture {i + 1}: {os.path.basename(str(v))}" for i, v in enumerate(value)) or "none"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str) and value == "":
        return '""'
    return str(value)


def _shown(value):
    """Every value the template prints: strings with invisible characters escaped (parity.core.visible), then
    autoescaped; markup the view-model built itself passes as it is."""
    return visible(value) if isinstance(value, str) and not isinstance(value, Markup) else value


_ENV = Environment(
    loader=PackageLoader("parity.report", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    finalize=_shown,
)


def render_html(view: ReportView) -> str:
    return _ENV.get_template("report.html.j2").render(view=view)


def write_report(out_dir: Path, run: RunInfo, results: list[CaseResult], self_contained: bool = False) -> Path:
    """Write index.html atomically into `out_dir` and return its path."""
    target = out_dir / "index.html"
    write_text(target, render_html(build_view(run, results, out_dir, self_contained)))
    return target
