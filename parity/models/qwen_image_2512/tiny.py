"""The tiny Qwen-Image-2512: the tiny Qwen-Image's classes, sizes, tokenizer, text encoder and VAE, its transformer
drawn from its own seed (the 2512 checkpoint is a retrained Qwen-Image: same layout, other weights)."""

from __future__ import annotations

from pathlib import Path

from parity.models.qwen_image import tiny as qwen_image
from parity.models.qwen_image.tiny import write_tiny_lora

TRANSFORMER_SEED = 2


def ensure_tiny(root: Path | None = None) -> Path:
    return qwen_image.ensure_tiny(root, name="qwen-image-2512", transformer_seed=TRANSFORMER_SEED)


__all__ = ["ensure_tiny", "write_tiny_lora"]
