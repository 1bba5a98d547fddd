"""Size rules of Qwen-Image-Edit-2511 on both sides: output sizes and the control images' text-encoder sizes.

Pure functions of numbers, used by the resolver (settings) and the wiring (tensors) alike.
"""

from __future__ import annotations


def trainer_size(value: int, divisor: int = 32) -> int:
    """The trainer's sample size: down to a multiple of 8 (at least 64), then floored to the bucket divisor."""
    rounded = max(64, value - value % 8)
    return int(rounded // divisor * divisor)


def server_size(value: int, divisor: int) -> int:
    """The reference server's size: floored to its resolution divisor."""
    return (value // divisor) * divisor


def server_condition_size(width: int, height: int, area: int = 384 * 384) -> tuple[int, int]:
    """(width, height) the reference server resizes a control image to for the text encoder.

    It computes ratio = H/W, w = sqrt(area*ratio), h = w/ratio and resizes to (h, w): for a non-square image
    that is the transpose of the aspect-keeping size (ai-toolkit-inference qwen_image.py).
    """
    ratio = height / width
    w = (area * ratio) ** 0.5
    h = w / ratio
    return round(w / 32) * 32, round(h / 32) * 32


def trainer_condition_size(width: int, height: int, area: int = 384 * 384) -> tuple[int, int]:
    """(width, height) ai-toolkit's get_prompt_embeds resizes a control image to: aspect kept."""
    ratio = height / width
    h = (area * ratio) ** 0.5
    w = h / ratio
    return round(w / 32) * 32, round(h / 32) * 32
