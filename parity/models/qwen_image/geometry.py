"""Qwen-Image's size rules: the edit models' functions with the server's divisor of 16 (the spec's) where the
trainer keeps its bucket divisor of 32 (ai-toolkit QwenImageModel.get_bucket_divisibility), and no control image
in the activation estimate."""

from __future__ import annotations

from parity.models.qwen_image_edit_plus_2511.geometry import (
    TRAINER_DIVISOR,
    activation_bytes,
    server_size,
    trainer_size,
)

__all__ = ["TRAINER_DIVISOR", "activation_bytes", "server_size", "trainer_size"]
