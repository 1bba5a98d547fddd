"""Qwen-Image's knobs: the edit models' vocabulary without the control-image ones, as both sides set them.

The reference server (QwenImagePipeline._run_inference) and the trainer (ai-toolkit QwenImageModel) both call the
stock diffusers QwenImagePipeline, so what differs is what surrounds the call: the size divisor (16 against 32),
the scheduler (the checkpoint's config against a hard-coded one), how the LoRA is applied, VAE tiling under
low_vram. CFG is renormalised on both sides (the pipeline has no switch), shown but never a cause.
"""

from __future__ import annotations

from parity.facts.case import Case
from parity.models.knobs import Knob, LoraMethod, RuntimeFacts, Setting, Wiring
from parity.models.qwen import knobs as edit_plus
from parity.models.qwen.knobs import scheduler_items

KNOBS = (
    Knob.SIZE,
    Knob.SCHEDULER,
    Knob.LORA_SCALE,
    Knob.LORA_METHOD,
    Knob.CFG_RENORM,
    Knob.VAE_TILING,
    Knob.GENERATOR,
    Knob.DTYPE,
    Knob.OUTPUT,
    Knob.QUANTIZATION,
    Knob.TEXT_ENCODER_QUANTIZATION,
    Knob.LORA_WEIGHTS,
)

_OWN_RULES = {
    Knob.SIZE: ("floor to 16", "round down to 8 (at least 64), then floor to 32", "yes"),
    Knob.CFG_RENORM: ("always (diffusers rescales to the conditional norm)", "always: the same stock pipeline", "—"),
    Knob.VAE_TILING: ("off", "on under `low_vram` (decode)", "yes"),
}


def knob_rules(lora_method: LoraMethod, zero_cond_t: str = "") -> dict[Knob, tuple[str, str, str]]:
    """(reference server, trainer's preview, replayed by --diagnose?) of a model of this pipeline (README); it has no
    zero_cond_t knob (the text-to-image transformer configs predate the switch)."""
    rules = {**edit_plus.knob_rules(lora_method, zero_cond_t), **_OWN_RULES}
    return {k: rules[k] for k in KNOBS}


def reference_wiring(case: Case, facts: RuntimeFacts, lora_method: LoraMethod = LoraMethod.DIFFUSERS_ADAPTER) -> Wiring:
    """The server's: `lora_method` SET_ADAPTERS for Qwen-Image, FUSE for Qwen-Image-2512 (which shares the rest)."""
    eff = case.effective
    wiring = _only_ours(edit_plus.reference_wiring(case, facts, lora_method=lora_method))
    return wiring.with_setting(Knob.SIZE, Setting((eff.width, eff.height), f"{eff.width}x{eff.height} (floor to 16)"))


def preview_wiring(case: Case, facts: RuntimeFacts) -> Wiring:
    """The trainer's: the edit models' preview wiring, but CFG is always renormalised (no do_cfg_norm here)."""
    wiring = _only_ours(edit_plus.preview_wiring(case, facts))
    wiring = wiring.with_setting(Knob.CFG_RENORM, edit_plus.cfg_setting(case, True, "always (the stock pipeline)"))
    tiling = bool(wiring.value(Knob.VAE_TILING))
    return wiring.with_setting(Knob.VAE_TILING, Setting(tiling, "on (low_vram: decode)" if tiling else "off"))


def _only_ours(wiring: Wiring) -> Wiring:
    return Wiring(wiring.name, tuple((k, s) for k, s in wiring.settings if k in KNOBS))


__all__ = ["KNOBS", "knob_rules", "preview_wiring", "reference_wiring", "scheduler_items"]
