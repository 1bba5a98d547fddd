"""The diagnosis when the output's size is not the baseline's (pure: a fake renderer draws flat pictures)."""

import numpy as np

from parity.core.thresholds import Thresholds
from parity.judge.diagnose import cause_text, diagnose
from parity.models.knobs import Knob, Setting, Wiring

LIMITS = Thresholds(ssim_min=0.999, pixel_tolerance=0.0)


def wiring(name, size, shift):
    return Wiring(name, ((Knob.SIZE, Setting(size, f"{size[0]}x{size[1]}")), (Knob.SCHEDULER, Setting(shift, str(shift)))))


def renderer(log):
    def render(w):
        log.append(w.name)
        (width, height), shift = w.value(Knob.SIZE), w.value(Knob.SCHEDULER)
        return np.full((height, width, 3), 100 + 10 * shift, dtype=np.uint8)

    return render


def test_the_size_knob_that_reaches_the_baselines_size_is_named():
    reference, preview = wiring("reference", (80, 64), 1), wiring("preview", (64, 64), 2)
    baseline = renderer([])(preview)
    result = diagnose(reference, preview, baseline, None, LIMITS, renderer([]))
    assert result.ranked[0].knob is Knob.SIZE and Knob.SIZE in result.explained_by
    assert result.verdict.startswith("mismatch explained by: ") and "(another size -> SSIM " in result.verdict
    assert cause_text(result.ranked[0], None).startswith("size snapping: another size -> SSIM ")


def test_no_variant_is_rendered_when_no_replayed_knob_changes_the_size():
    """Both wirings agree on the size, so nothing can reach a baseline of another size: say so, render nothing."""
    reference, preview = wiring("reference", (64, 64), 1), wiring("preview", (64, 64), 2)
    log = []
    result = diagnose(reference, preview, np.zeros((32, 48, 3), np.uint8), None, LIMITS, renderer(log))
    assert log == [] and result.explained_by == () and result.full_preview is None
    assert result.verdict == "unexplained: no wiring the harness replays renders the baseline's size 48x32"
