"""Qwen-Image-Edit-2509's knobs: 2511's, but the server keeps the LoRA as an unfused adapter (SET_ADAPTERS) and the
checkpoint's zero_cond_t is off. The trainer's side is the same code (arch `qwen_image_edit_plus`)."""

from __future__ import annotations

from parity.cases.case import Case
from parity.models.knobs import Knob, LoraMethod, RuntimeFacts, Wiring
from parity.models.qwen_image_edit_plus_2511 import knobs as edit_plus
from parity.models.qwen_image_edit_plus_2511.knobs import preview_wiring, scheduler_items

KNOB_RULES = {
    **edit_plus.KNOB_RULES,
    Knob.LORA_METHOD: (
        "diffusers adapter kept unfused, a scale other than 1 set by `set_weights_and_activate_adapters`",
        edit_plus.KNOB_RULES[Knob.LORA_METHOD][1],
        "yes",
    ),
    Knob.ZERO_COND_T: ("the checkpoint's (off for 2509)", edit_plus.KNOB_RULES[Knob.ZERO_COND_T][1], "yes"),
}


def reference_wiring(case: Case, facts: RuntimeFacts) -> Wiring:
    return edit_plus.reference_wiring(case, facts, lora_method=LoraMethod.DIFFUSERS_ADAPTER)


__all__ = ["KNOB_RULES", "preview_wiring", "reference_wiring", "scheduler_items"]
