"""Qwen-Image-Edit-2509's fixed rules on the reference server (ai-toolkit-inference src/pipelines/qwen_image.py,
QwenImageEditPlus2509Pipeline; its model id is `qwen_image_edit_plus`, src/schemas/models.py): those of the 2511
class, which it shares but for the base model and the LoRA application (the wiring's, not the resolver's)."""

from __future__ import annotations

from dataclasses import replace

from parity.models.qwen_image_edit_plus_2511.spec import SPEC as EDIT_PLUS_2511

SPEC = replace(
    EDIT_PLUS_2511, id="qwen_image_edit_plus", package="parity.models.qwen_image_edit_plus", checkpoint="Qwen/Qwen-Image-Edit-2509",
    server_class="QwenImageEditPlus2509Pipeline",
)
