"""Size rules of Qwen-Image-Edit on both sides: output sizes as for Edit-Plus; the control image's text-encoder size
at ~1 MP (Edit-Plus: ~384x384).

Both sides encode the prompt with the control image bilinearly resized to about 1024x1024 pixels, each side
rounded to 32: the server (qwen_image.py QwenImageEditPipeline._preprocess_ctrl_for_encode) with its width and
height formula swapped as in its Edit-Plus classes, the trainer (qwen_image_edit.py get_prompt_embeds) with the
aspect kept. Pure functions of numbers.
"""

from __future__ import annotations

from parity.models.qwen.geometry import (
    TRAINER_DIVISOR,
    activation_bytes,
    server_condition_size,
    server_size,
    trainer_condition_size,
    trainer_size,
)

TEXT_IMAGE_AREA = 1024 * 1024


def server_text_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) the server resizes the control image to for the text encoder: for a 64 wide x 48 high image,
    896 wide x 1184 high (ai-toolkit: 1184 x 896)."""
    return server_condition_size(width, height, TEXT_IMAGE_AREA)


def trainer_text_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) ai-toolkit's get_prompt_embeds resizes the control image to: aspect kept."""
    return trainer_condition_size(width, height, TEXT_IMAGE_AREA)


# activation_bytes: Edit-Plus's estimate with one control picture (both pipelines encode it at ~1 MP); not measured
# for this pipeline, whose text encoder sees that picture at ~1 MP too (Edit-Plus: ~384x384).
__all__ = ["TRAINER_DIVISOR", "activation_bytes", "server_size", "server_text_size", "trainer_size", "trainer_text_size"]
