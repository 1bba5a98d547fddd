"""Qwen-Image-Edit's knobs: the Edit-Plus vocabulary, with the rules of the single-picture pipeline on both sides.

Where this pipeline differs from Edit-Plus (knobs.py, whose wirings these start from):
- VAE image: both sides first resize the control image to the output size themselves, the server with PIL
  Lanczos (qwen_image.py QwenImageEditPipeline._run_inference), the trainer with PIL bilinear (qwen_image_edit.py
  generate_single_image, only when the size differs); diffusers then resizes it to ~1 MP at that aspect.
- text encoder: the control image at ~1 MP (the server's size transposed for non-square images), one picture,
  and the negative prompt gets the same tensor (the trainer resizes its full-size tensor anew for each prompt).
- CFG renormalisation: the trainer samples with the stock QwenImageEditPipeline, which always renormalises;
  `do_cfg_norm` belongs to ai-toolkit's Edit-Plus pipeline only.
- LoRA: the server keeps the adapter unfused (SET_ADAPTERS, as for 2509); the checkpoint's zero_cond_t is off.
"""

from __future__ import annotations

import enum

from parity.facts.case import Case
from parity.models.knobs import Knob, LoraMethod, RuntimeFacts, Setting, Wiring
from parity.models.qwen import knobs as edit_plus
from parity.models.qwen.edit_geometry import server_text_size, trainer_text_size
from parity.models.qwen.knobs import NegativeImages, TextImageSize, scheduler_items

_OWN_RULES: dict[Knob, tuple[str, str, str]] = {
    Knob.CFG_RENORM: ("always (diffusers rescales to the conditional norm)", "always (the stock pipeline; no do_cfg_norm)", "—"),
    Knob.TEXT_IMAGES: ("the control image", "`ctrl_img` (the first of its list)", "—"),
    Knob.TEXT_IMAGE_SIZE: (
        "~1024x1024 area, w = sqrt(area x H/W): transposed for non-square images",
        "~1024x1024 area, aspect kept",
        "yes",
    ),
    Knob.NEGATIVE_IMAGES: ("the prompt's resized image", "the same (resized anew from the full-size image)", "—"),
    Knob.VAE_IMAGES: (
        "PIL Lanczos to the output size, then the pipeline's Lanczos to ~1 MP; latent mode",
        "PIL bilinear to the output size (when it differs), then the same",
        "yes",
    ),
}


def knob_rules(lora_method: LoraMethod, zero_cond_t: str) -> dict[Knob, tuple[str, str, str]]:
    """The table of a model of this pipeline (README): Edit-Plus's with this pipeline's own rows."""
    return {**edit_plus.knob_rules(lora_method, zero_cond_t), **_OWN_RULES}


class VaeResize(enum.Enum):
    """The PIL kernel that takes the control image to the output size before the pipeline's own ~1 MP resize."""

    LANCZOS = "Lanczos"
    BILINEAR = "bilinear"


def reference_wiring(case: Case, facts: RuntimeFacts, lora_method: LoraMethod = LoraMethod.DIFFUSERS_ADAPTER) -> Wiring:
    eff = case.effective
    sizes = tuple(server_text_size(*facts.image_sizes[p]) for p in eff.control_images)
    shown = _sizes(sizes)
    return _with(
        edit_plus.reference_wiring(case, facts, lora_method=lora_method),
        (Knob.TEXT_IMAGE_SIZE, Setting(TextImageSize.SERVER, f"{shown} (w = sqrt(area·H/W): transposed)", key=sizes)),
        (Knob.NEGATIVE_IMAGES, Setting(NegativeImages.SAME, f"the prompt's: {shown}", key="the prompt's")),
        (Knob.VAE_IMAGES, _vae(VaeResize.LANCZOS, eff.control_images, (eff.width, eff.height), facts)),
    )


def preview_wiring(case: Case, facts: RuntimeFacts) -> Wiring:
    pre = case.preview
    assert pre is not None
    sizes = tuple(trainer_text_size(*facts.image_sizes[p]) for p in pre.text_images)
    shown = _sizes(sizes)
    return _with(
        edit_plus.preview_wiring(case, facts),
        (Knob.CFG_RENORM, edit_plus.cfg_setting(case, True, "always (the stock QwenImageEditPipeline; do_cfg_norm is not read)")),
        (Knob.TEXT_IMAGE_SIZE, Setting(TextImageSize.ASPECT_KEPT, f"{shown} (aspect kept)", key=sizes)),
        (Knob.NEGATIVE_IMAGES, Setting(NegativeImages.SAME, f"the prompt's: {shown} (resized anew from full size)", key="the prompt's")),
        (Knob.VAE_IMAGES, _vae(VaeResize.BILINEAR, case.effective.control_images, (pre.width, pre.height), facts)),
    )


def _with(wiring: Wiring, *settings: tuple[Knob, Setting]) -> Wiring:
    for knob, setting in settings:
        wiring = wiring.with_setting(knob, setting)
    return wiring


def _vae(kernel: VaeResize, paths: tuple[str, ...], size: tuple[int, int], facts: RuntimeFacts) -> Setting:
    """The kernel, keyed "as is" when the control image already has the output size (neither side resizes then:
    PIL's resize to an image's own size is a copy, and the trainer skips it)."""
    width, height = size
    if all(facts.image_sizes[p] == size for p in paths):
        return Setting(kernel, f"already {width}x{height}: kept as is, then the pipeline's Lanczos to ~1 MP", key="as is")
    return Setting(kernel, f"PIL {kernel.value} to {width}x{height}, then the pipeline's Lanczos to ~1 MP", key=kernel)


def _sizes(sizes: tuple[tuple[int, int], ...]) -> str:
    return ", ".join(f"{w}x{h}" for w, h in sizes) or "none"


__all__ = ["VaeResize", "knob_rules", "preview_wiring", "reference_wiring", "scheduler_items"]
