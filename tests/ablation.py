"""The diagnosis's ablation on one case: a renderer that renders each pixel-deciding wiring once, and the check that a
preview differing from the reference in one planted knob is explained by that knob alone."""

from __future__ import annotations

from parity.core.images import OutputEncoding, encode_output
from parity.judge.compare import compare
from parity.judge.diagnose import diagnose
from parity.models.knobs import Knob, Setting, flip


def render_memo(engine, case):
    """A renderer of `case` under any wiring, each pixel-deciding combination rendered once (the output encoding
    is applied to the memoised pixels)."""
    raw = {}

    def render(wiring):
        key = tuple((k, s.value) for k, s in wiring.settings if k is not Knob.OUTPUT)
        if key not in raw:
            png = Setting(OutputEncoding.PNG, "PNG")
            raw[key] = engine.render(case, wiring.with_setting(Knob.OUTPUT, png)).image
        return encode_output(raw[key], wiring.value(Knob.OUTPUT))

    return render


def planted_knob_is_named_first(ablation, knob):
    """`ablation`: (case, reference wiring, preview wiring, render_memo renderer)."""
    case, reference, preview, render = ablation
    baseline = render(flip(reference, preview, knob))  # the only difference from the reference is `knob`
    output = render(reference)
    base = compare(output, baseline, case.thresholds).metrics  # None: the planted knob changed the size
    assert (base is None) == (knob is Knob.SIZE), "only the size knob may change the size"
    assert base is None or base.max_abs_diff > 0, f"planting {knob.value} changed nothing"
    result = diagnose(reference, preview, baseline, base, case.thresholds, render)
    assert result.ranked[0].knob is knob
    assert result.explained_by == (knob,)
    assert result.verdict.startswith(f"mismatch explained by: {knob.value} (" + ("another size -> SSIM" if base is None else "SSIM"))
