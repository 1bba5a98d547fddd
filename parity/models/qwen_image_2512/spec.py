"""Qwen-Image-2512's fixed rules on the reference server (ai-toolkit-inference src/pipelines/qwen_image.py,
QwenImage2512Pipeline.CONFIG): Qwen-Image's (divisor 16, no control image, one LoRA); the LoRA application (FUSE)
is the wiring's, not the resolver's."""

from __future__ import annotations

from dataclasses import replace

from parity.models.qwen_image.spec import SPEC as QWEN_IMAGE

SPEC = replace(
    QWEN_IMAGE,
    id="qwen_image_2512",
    package="parity.models.qwen_image_2512",
    checkpoint="Qwen/Qwen-Image-2512",
    server_class="QwenImage2512Pipeline",
)
