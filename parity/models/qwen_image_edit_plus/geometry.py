"""Qwen-Image-Edit-2509's size rules: those of 2511 (the same pipeline class on both sides, the same server code)."""

from __future__ import annotations

from parity.models.qwen_image_edit_plus_2511.geometry import (
    TRAINER_DIVISOR,
    activation_bytes,
    server_condition_size,
    server_size,
    trainer_condition_size,
    trainer_size,
)

__all__ = ["TRAINER_DIVISOR", "activation_bytes", "server_condition_size", "server_size", "trainer_condition_size", "trainer_size"]
