"""The tiny Qwen-Image-Edit-2509: the 2511 tiny model's classes, sizes, text encoder and VAE, with zero_cond_t off
as in the 2509 checkpoint (diffusers added the switch for 2511; a config without it means off). Its transformer
is drawn from seed 31: with the 2511's seed 1 and zero_cond_t off, a CFG scale change (4 -> 2.5) moved the
output 0.94 levels, under the sensitivity test's floor of 1 (tests/test_tiny.py); seed 31 moves every input
of that test by at least 1.04."""

from __future__ import annotations

from pathlib import Path

from parity.models.qwen_image_edit_plus_2511 import tiny as edit_plus
from parity.models.qwen_image_edit_plus_2511.tiny import write_tiny_lora

TRANSFORMER_SEED = 31


def ensure_tiny(root: Path | None = None) -> Path:
    return edit_plus.ensure_tiny(root, name="qwen-image-edit-2509", zero_cond_t=False, transformer_seed=TRANSFORMER_SEED)


__all__ = ["ensure_tiny", "write_tiny_lora"]
