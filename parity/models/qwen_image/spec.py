"""Qwen-Image's fixed rules on the reference server (ai-toolkit-inference src/pipelines/qwen_image.py,
QwenImagePipeline.CONFIG): divisor 16 where the edit models have 32, no control image (the server ignores one,
with a warning; the trainer raises on one), one LoRA."""

from __future__ import annotations

from parity.models.qwen_image_edit_plus_2511.spec import AITK_SCHEDULER_CONFIG, SCHEDULER_CONFIG
from parity.models.spec import ModelSpec

SPEC = ModelSpec(
    id="qwen_image",
    package="parity.models.qwen_image",
    pipeline="QwenImagePipeline",
    checkpoint="Qwen/Qwen-Image",
    server_class="QwenImagePipeline",
    size_divisor=16,
    default_neg="",
    requires_control_image=False,
    max_control_images=0,
    max_loras=1,
)

__all__ = ["AITK_SCHEDULER_CONFIG", "SCHEDULER_CONFIG", "SPEC"]
