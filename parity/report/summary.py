"""`parity report summary`: a run's results as a short table for a CI job's page (`$GITHUB_STEP_SUMMARY`, a
GitLab job log), worst cases first, each linked to its section of the HTML report. Pure: results in, text out."""

from __future__ import annotations

import math

from parity.core.visible import visible
from parity.report.html import case_anchors, worst_first
from parity.results.record import CaseResult, RunInfo, Status, counts

UNUSED = "Baselines no case uses any more (renamed or removed samples; parity never deletes them)"
MARKS = {Status.PASS: "✅ pass", Status.FAIL: "❌ fail", Status.ERROR: "⚠️ error", Status.SKIP: "⏭️ skip"}


def headline(run: RunInfo, results: list[CaseResult]) -> str:
    tally = counts(results)
    env = run.environment.get("environment_class", run.device) if isinstance(run.environment, dict) else run.device
    parts = [f"{tally['pass']} passed", f"{tally['fail']} failed", f"{tally['error']} errors"]
    if tally["skip"]:
        parts.append(f"{tally['skip']} skipped")
    state = "" if run.complete else " (incomplete run)"
    return f"parity: {', '.join(parts)} — {env}{state}"


def markdown(run: RunInfo, results: list[CaseResult], report_url: str = "index.html") -> str:
    """A heading, one line per missing baseline set, and the case table with links to the report."""
    anchors = case_anchors(results)
    lines = [f"### {headline(run, results)}", ""]
    for reason in dict.fromkeys(r.reason for r in results if r.status is Status.SKIP):
        lines += [f"> {_cell(reason)}", ""]
    lines += [
        "| status | case | SSIM | PSNR (dB) | max \\|diff\\| | compared with | reason |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for r in worst_first(results):
        m = r.metrics
        link = f"[{_cell(r.id)}]({report_url}#{anchors[r.id]})"
        cells = (
            MARKS[r.status],
            link,
            f"{m.ssim:.4f}" if m else "—",
            _psnr(m.psnr) if m else "—",
            str(m.max_abs_diff) if m else "—",
            _cell(r.baseline_set or ("training preview" if r.baseline_choice == "the training preview" else "—")),
            _cell(r.reason.splitlines()[0] if r.reason else ""),
        )
        lines.append("| " + " | ".join(cells) + " |")
    if run.unused_baselines:
        lines += ["", f"{UNUSED}:", *(f"- `{_cell(path)}`" for path in run.unused_baselines)]
    lines += ["", f"Full report: [{report_url}]({report_url})"]
    return "\n".join(lines) + "\n"


def text(run: RunInfo, results: list[CaseResult], report_url: str = "index.html") -> str:
    """The same table as plain text, for a terminal or a job log."""
    lines = [headline(run, results)]
    for r in worst_first(results):
        m = r.metrics
        metrics = f"SSIM {m.ssim:.4f}, PSNR {_psnr(m.psnr)} dB" if m else "no metrics"
        lines.append(f"  {r.status.value.upper():5} {r.id}: {metrics} — {r.reason.splitlines()[0] if r.reason else ''}")
    lines.extend(f"unused baseline: {visible(path)}" for path in run.unused_baselines)
    lines.append(f"report: {report_url}")
    return "\n".join(lines) + "\n"


def _psnr(value: float) -> str:
    return "∞" if math.isinf(value) else f"{value:.2f}"


def _cell(value: str) -> str:
    """Text safe inside a markdown table cell: no pipes, no line breaks, no HTML."""
    return visible(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")
