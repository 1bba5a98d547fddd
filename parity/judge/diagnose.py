"""Say why: re-render a failing case with one knob at a time switched from the reference to the trainer's value.

For each knob on which the two wirings differ (and that the harness can replay), one variant; then the full
preview wiring; each is measured against the baseline. Knobs are ranked by how much of the gap (mean absolute
difference) their flip alone closes. Effects interact (flipping CFG renormalisation alone can widen the gap
while the LoRA strength still differs), so the explaining set is found by forward selection: add the knob
whose flip, together with those already chosen, closes most of the gap, until the case passes; if that stalls
but the full preview wiring passes, knobs are dropped from the full set while it still passes. The renderer is
passed in, so this module stays free of torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from parity.core.thresholds import Thresholds
from parity.judge.compare import Metrics, check, measure
from parity.models.knobs import ALWAYS_SHOWN, Knob, Wiring, combine, differing, flip


@dataclass(frozen=True)
class Variant:
    name: str
    knobs: tuple[Knob, ...]
    metrics: Metrics | None
    passed: bool
    note: str = ""


@dataclass(frozen=True)
class KnobRow:
    """One row of the wiring table: knob | training preview | reference | same? | measured effect."""

    knob: Knob
    preview: str
    reference: str
    same: bool
    replayable: bool
    effect: Variant | None = None


@dataclass(frozen=True)
class Diagnosis:
    rows: tuple[KnobRow, ...]
    ranked: tuple[KnobRow, ...]  # replayed differing knobs, the one that closes most of the gap alone first
    full_preview: Variant | None
    explained_by: tuple[Knob, ...]
    verdict: str
    steps: tuple[Variant, ...] = ()  # the selection: each step's knobs flipped together, measured

    @property
    def explained(self) -> bool:
        return bool(self.explained_by)


def wiring_rows(reference: Wiring, preview: Wiring) -> tuple[KnobRow, ...]:
    """The table without measurements: every knob that differs, and the ones always shown."""
    diff = set(differing(reference, preview))
    rows = []
    for knob, ref in reference.settings:
        pre = preview[knob]
        if knob in diff or knob in ALWAYS_SHOWN:
            rows.append(KnobRow(knob, pre.shown, ref.shown, knob not in diff, ref.replayable and pre.replayable))
    return tuple(rows)


def diagnose(
    reference: Wiring,
    preview: Wiring,
    baseline: np.ndarray,
    base: Metrics | None,
    limits: Thresholds,
    render: Callable[[Wiring], np.ndarray],
) -> Diagnosis:
    """Rank the knobs that differ by the gap their flip closes, and find the set that explains the mismatch.
    `base` is None when the output's size is not the baseline's: every gap starts unmeasurable, and only the
    variants that reach the baseline's size are measured (the size knob, for a model whose two sides floor
    sizes differently)."""
    tolerance = limits.pixel_tolerance or 0.0

    def variant(wiring: Wiring, knobs: tuple[Knob, ...]) -> Variant:
        image = render(wiring)
        if image.shape != baseline.shape:
            return Variant(wiring.name, knobs, None, False, f"size {image.shape[1]}x{image.shape[0]}")
        metrics = measure(image, baseline, tolerance)
        return Variant(wiring.name, knobs, metrics, not check(metrics, limits))

    rows = list(wiring_rows(reference, preview))
    replayed = [r.knob for r in rows if not r.same and r.replayable]
    if base is None and Knob.SIZE not in replayed:  # no variant could reach the baseline's size: render none
        return Diagnosis(tuple(rows), (), None, (), _verdict(rows, None, (), (), base, baseline.shape))
    effects = {k: variant(flip(reference, preview, k), (k,)) for k in replayed}
    rows = [KnobRow(r.knob, r.preview, r.reference, r.same, r.replayable, effects.get(r.knob)) for r in rows]
    ranked = sorted((r for r in rows if r.effect is not None), key=lambda r: _gap(r.effect))
    full = variant(combine(reference, preview, tuple(replayed), "preview"), tuple(replayed)) if replayed else None

    steps = _select(reference, preview, replayed, effects, base, variant)
    explained = steps[-1].knobs if steps and steps[-1].passed else ()
    if not explained and full is not None and full.passed:
        steps = steps + _prune(reference, preview, replayed, effects, full, variant)
        explained = steps[-1].knobs
    verdict = _verdict(rows, full, explained, steps, base, baseline.shape)
    return Diagnosis(tuple(rows), tuple(ranked), full, explained, verdict, steps)


def _select(reference, preview, knobs, effects, base: Metrics | None, variant) -> tuple[Variant, ...]:
    """Forward selection: each round adds the knob that, flipped with those chosen, leaves the smallest gap."""
    chosen: list[Knob] = []
    steps: list[Variant] = []
    gap = float("inf") if base is None else base.mean_abs_diff
    remaining = list(knobs)
    while remaining:
        trials = {
            k: effects[k] if not chosen else variant(combine(reference, preview, (*chosen, k), "selection"), (*chosen, k))
            for k in remaining
        }
        best = min(remaining, key=lambda k: _gap(trials[k]))
        if not trials[best].passed and _gap(trials[best]) >= gap:
            break
        chosen.append(best)
        remaining.remove(best)
        steps.append(trials[best])
        gap = _gap(trials[best])
        if trials[best].passed:
            break
    return tuple(steps)


def _prune(reference, preview, knobs, effects, full: Variant, variant) -> tuple[Variant, ...]:
    """Backward elimination from the full preview wiring (which passes): drop knobs that are not needed."""
    keep = list(knobs)
    last = full
    for knob in sorted(knobs, key=lambda k: -_gap(effects[k])):  # the weakest alone first
        trial_knobs = tuple(k for k in keep if k is not knob)
        if not trial_knobs:
            continue
        trial = variant(combine(reference, preview, trial_knobs, "pruned"), trial_knobs)
        if trial.passed:
            keep, last = list(trial_knobs), trial
    return (last,)


def _gap(v: Variant | None) -> float:
    return float("inf") if v is None or v.metrics is None else v.metrics.mean_abs_diff


def cause_text(row: KnobRow, base: Metrics | None) -> str:
    """'CFG renormalisation: SSIM 0.9100 -> 0.9980, mean |diff| 5.2 -> 0.3'."""
    e = row.effect
    return f"{row.knob.value}: {effect_text(e, base) if e else 'not measured'}"


def effect_text(e: Variant, base: Metrics | None, arrow: str = "->") -> str:
    """What a variant measured against the baseline, from where the output stood (`base`; None when the output's
    size was not the baseline's: 'another size -> SSIM 1.0000, mean |diff| 0.00')."""
    if e.metrics is None:
        return e.note
    m = e.metrics
    if base is None:
        return f"another size {arrow} SSIM {m.ssim:.4f}, mean |diff| {m.mean_abs_diff:.2f}"
    return f"SSIM {base.ssim:.4f} {arrow} {m.ssim:.4f}, mean |diff| {base.mean_abs_diff:.2f} {arrow} {m.mean_abs_diff:.2f}"


def _verdict(
    rows, full: Variant | None, explained: tuple[Knob, ...], steps: tuple[Variant, ...], base: Metrics | None, shape
) -> str:
    unreplayed = [r.knob.value for r in rows if not r.same and not r.replayable]
    if explained:
        named = ", ".join(k.value for k in explained)
        path = " -> ".join(f"{v.metrics.ssim:.4f}" for v in steps if v.metrics is not None)
        if base is None:
            return f"mismatch explained by: {named} (another size -> SSIM {path})"
        return f"mismatch explained by: {named} (SSIM {base.ssim:.4f} -> {path})"
    if full is None and not unreplayed and base is not None:
        return "unexplained: the two wirings agree on every knob for this case"
    parts = []
    if base is None and (full is None or full.metrics is None):
        parts.append(f"no wiring the harness replays renders the baseline's size {shape[1]}x{shape[0]}")
    if full is not None and full.metrics is not None:
        parts.append(f"even the full preview wiring gives SSIM {full.metrics.ssim:.4f}")
    if unreplayed:
        parts.append("not replayed: " + ", ".join(unreplayed))
    return "unexplained: " + "; ".join(parts)
