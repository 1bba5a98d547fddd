"""Qwen-Image-Edit-2509's fixed rules on the reference server (ai-toolkit-inference src/pipelines/qwen_image.py,
QwenImageEditPlus2509Pipeline; its model id is `qwen_image_edit_plus`, src/schemas/models.py)."""

from __future__ import annotations

from parity.models.spec import ModelSpec

SPEC = ModelSpec(
    id="qwen_image_edit_plus",
    package="parity.models.qwen_image_edit_plus",
    pipeline="QwenImageEditPlusPipeline",
    size_divisor=32,
    default_neg="",
    requires_control_image=True,
    max_control_images=3,
    max_loras=1,
)
