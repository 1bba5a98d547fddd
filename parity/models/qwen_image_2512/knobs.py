"""Qwen-Image-2512's knobs: Qwen-Image's, but the server fuses the LoRA (`fuse_lora`, as for Edit-2511)."""

from __future__ import annotations

from parity.cases.case import Case
from parity.models.knobs import Knob, LoraMethod, RuntimeFacts, Wiring
from parity.models.qwen_image import knobs as qwen_image
from parity.models.qwen_image.knobs import KNOBS, preview_wiring, scheduler_items
from parity.models.qwen_image_edit_plus_2511.knobs import KNOB_RULES as EDIT_PLUS_2511_RULES

KNOB_RULES = {
    **qwen_image.KNOB_RULES,
    Knob.LORA_METHOD: (EDIT_PLUS_2511_RULES[Knob.LORA_METHOD][0], qwen_image.KNOB_RULES[Knob.LORA_METHOD][1], "yes"),
}


def reference_wiring(case: Case, facts: RuntimeFacts) -> Wiring:
    return qwen_image.reference_wiring(case, facts, lora_method=LoraMethod.DIFFUSERS_FUSE)


__all__ = ["KNOBS", "KNOB_RULES", "preview_wiring", "reference_wiring", "scheduler_items"]
