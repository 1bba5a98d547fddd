"""Qwen-Image-2512's size rules: Qwen-Image's (the same server code, divisor 16; the trainer's arch is the same)."""

from __future__ import annotations

from parity.models.qwen_image.geometry import TRAINER_DIVISOR, activation_bytes, server_size, trainer_size

__all__ = ["TRAINER_DIVISOR", "activation_bytes", "server_size", "trainer_size"]
