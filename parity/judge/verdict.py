"""The status ladder: how a case's baseline decision and comparisons become pass or fail, with the reason.

One pure function beside the baseline rules (parity/judge/baselines.py); the session only gathers its inputs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from parity.judge.baselines import BaselineAction, BaselineChoice, BaselineDecision
from parity.judge.compare import Comparison, Metrics, Violation


class Status(enum.Enum):
    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"
    SKIP = "skip"  # nothing to compare with in this environment class (see baselines.missing_set_message)


@dataclass(frozen=True)
class JpegCheck:
    """For a JPEG baseline: the output encoded as the trainer saves it (PIL, quality 75) against the baseline,
    and the noise floor (how far that encoding alone moves the output)."""

    metrics: Metrics
    violations: tuple[Violation, ...]
    noise_floor: Metrics

    @property
    def passed(self) -> bool:
        return not self.violations


def case_status(
    decision: BaselineDecision, choice: BaselineChoice, comparison: Comparison, jpeg: JpegCheck | None
) -> tuple[Status, str]:
    """In order: a baseline written now fails for review; a comparison within thresholds passes; a JPEG
    baseline passes when the output encoded as the trainer saves it is within them; anything else fails (naming
    the nearest set when the case was compared with another class's)."""
    written_to = f"{decision.path} (" + ("the file the case names" if choice.named else f"set {choice.run_class.key}") + ")"
    if decision.action is BaselineAction.WRITTEN and choice.named:  # only --update writes a named file
        return Status.FAIL, f"baseline written on request (update): {written_to}; review it and commit it"
    if decision.action is BaselineAction.WRITTEN:
        return Status.FAIL, f"baseline was missing: written to {written_to}; review it and commit it"
    if decision.action is BaselineAction.REWRITTEN:
        return Status.FAIL, f"baseline rewritten on request (update): {written_to}; review it and commit it"
    if comparison.passed:
        return Status.PASS, comparison.summary()
    if jpeg is not None and jpeg.passed:
        return Status.PASS, (
            f"passes once encoded as the trainer saves JPEG (quality 75): SSIM {jpeg.metrics.ssim:.4f}; the raw gap "
            f"({comparison.summary()}) is JPEG compression (noise floor: mean |diff| {jpeg.noise_floor.mean_abs_diff:.2f})"
        )
    reason = comparison.summary()
    if choice.fallback:
        reason += f" — compared with {choice.describe()}"
    return Status.FAIL, reason
