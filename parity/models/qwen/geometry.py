"""Size rules of Qwen-Image-Edit-2511 on both sides: output sizes and the control images' text-encoder sizes.

Pure functions of numbers, used by the resolver (settings) and the wiring (tensors) alike.
"""

from __future__ import annotations

TRAINER_DIVISOR = 32  # ai-toolkit's bucket divisibility for every Qwen arch (QwenImageModel: 16 * 2)


def trainer_size(value: int, divisor: int = TRAINER_DIVISOR) -> int:
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



# GPU memory a render takes beyond the weights, fitted to benchmarks/activation_memory.py on the full-size model
# (H200, bf16, torch 2.11; benchmarks/results/h200-2026-12-01b/activation-memory.json), each an upper bound of the
# measured stage peaks from 512x512 with one control image to 1536x1536 with three:
_DECODE_BYTES_PER_PIXEL = 4_420  # VAE decode of the output: 4.45 GB at 1024x1024, 10.02 at 1536x1536
_ENCODE_BYTES = 2_300_000_000  # VAE encode of one control picture (always ~1 MP, one at a time): 2.19-2.23 GB
_TRANSFORMER_BYTES_PER_TOKEN = 116_000  # one transformer pass: 0.59 GB at 5,120 image tokens, 2.32 at 21,504
_CONTROL_TOKENS = 4096  # the pipeline resizes every control picture to ~1 MP for the VAE: 1024*1024 / 16**2


def activation_bytes(width: int, height: int, controls: int) -> int:
    """Estimated peak GPU bytes a render of this size takes beyond the weights, for `offload: auto`: the largest
    of its stages, which run one after another: the VAE encode of a control picture, the transformer (by its
    sequence: output and control-image tokens) and the VAE decode (by pixels). The text encoder's is smaller."""
    tokens = (width // 16) * (height // 16) + controls * _CONTROL_TOKENS
    return max(
        _ENCODE_BYTES if controls else 0,
        _TRANSFORMER_BYTES_PER_TOKEN * tokens,
        _DECODE_BYTES_PER_PIXEL * width * height,
    )
