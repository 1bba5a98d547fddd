"""The untouched copy of the LoRA-targeted weights is kept only when the run's plan will restore it."""

import pytest
import torch
from paths import small_suite

import parity.render.engine as engine_module
from parity.cases.suite import load_cases
from parity.render.engine import Engine


@pytest.fixture
def two_scales(write_case):
    """Qwen-Image-2512 fuses its LoRA as 2511 does, with the same plan and copy; having no control picture, it
    spares the unpooled engines below an encode at ~1 MP each."""
    items = ["{name: full, prompt: a hat}", "{name: half, prompt: a hat, network_multiplier: 0.5}"]
    return load_cases(write_case(small_suite(items, extra="model: qwen_image_2512\n")))


@pytest.fixture
def unpooled(monkeypatch):
    """Engines load the model themselves: a pooled model is handed back restored, so it always keeps the copy."""
    monkeypatch.setattr(engine_module, "_POOL", None)


def test_a_one_state_plan_keeps_no_copy_and_an_unplanned_state_reloads_with_the_same_bits(two_scales, unpooled):
    full, half = two_scales
    planned = Engine("cpu")
    planned.expect([full])  # the plan: one LoRA at one scale on this model
    lean = planned.render(full)
    assert "lora_snapshot" not in lean.timings and planned._loaded.lora.pristine_bytes == 0
    assert any("no copy of the LoRA-targeted weights is kept" in note for note in lean.notes)
    surprise = planned.render(half)  # not in the plan: the model is loaded again, never unfused in place
    assert any("loaded again (same bits)" in note for note in surprise.notes)
    assert "model_load" in surprise.timings and planned._loaded.lora.pristine_bytes > 0  # from now on it keeps it
    planned.close()

    unplanned = Engine("cpu")  # no plan (calibrate, previews, a notebook): the copy is kept, as before
    kept = unplanned.render(full)
    assert "lora_snapshot" in kept.timings and unplanned._loaded.lora.pristine_bytes > 0
    assert any("a copy of the LoRA-targeted weights is kept" in note for note in kept.notes)
    assert torch.equal(kept.decoded, lean.decoded)
    assert torch.equal(unplanned.render(half).decoded, surprise.decoded)  # restored from the copy, then fused
    unplanned.close()


def test_a_plan_with_two_scales_or_diagnose_keeps_the_copy(two_scales, unpooled):
    full, half = two_scales
    for plan, diagnose in (([full, half], False), ([full], True)):
        engine = Engine("cpu")
        engine.expect(plan, diagnose=diagnose)
        assert "lora_snapshot" in engine.render(full).timings
        engine.close()
