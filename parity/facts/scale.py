"""A LoRA strength as one side applies it: the multiplier, and which alpha goes with it."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Alpha(enum.Enum):
    """Which alpha a side applies a LoRA with (its strength is the multiplier x alpha / rank)."""

    FILE = "the file's alpha"  # the server's loader: each `.alpha` key (alpha / rank), 1 where the file has none
    RANK = "alpha = rank"  # ai-toolkit's Qwen networks (PEFT format): alpha = rank, whatever the job's linear_alpha


@dataclass(frozen=True)
class LoraScale:
    """The multiplier (the request's scale, the sample's multiplier) and which alpha goes with it. The renderers turn
    it into their own arithmetic (parity/render/lora.py)."""

    multiplier: float
    alpha: Alpha = Alpha.FILE

    def strength(self, file_alpha_scale: float | None) -> object:
        """What decides whether two scales differ: multiplier x alpha / rank, where `file_alpha_scale` is the file's
        alpha / rank (1.0 without `.alpha` keys; None: it differs between layers)."""
        if self.alpha is Alpha.RANK or file_alpha_scale == 1.0:
            return self.multiplier
        if file_alpha_scale is None:
            return (self.multiplier, "per-layer alpha")
        return self.multiplier * file_alpha_scale
