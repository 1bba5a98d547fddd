"""The tiny Qwen-Image: the edit models' tiny text encoder and transformer classes and sizes, saved as a
QwenImagePipeline folder (no processor: the text-to-image pipeline encodes text only).

Two differences from the edit models' tiny (parity/models/qwen/tiny.py, whose builders these
are): the tokenizer is learnt on QwenImagePipeline's own prompt template, so that its system part is the 34
tokens the pipeline drops (`prompt_template_encode_start_idx`), as with the real tokenizer; and the VAE keeps the
real 8x compression, because text-to-image sizes come in steps of 16 (the server's divisor) and a 16x VAE would
floor them to 32. zero_cond_t is off (the Qwen-Image transformer config predates it).
"""

from __future__ import annotations

from pathlib import Path

import torch

from parity.models.qwen import tiny as edit_plus
from parity.models.qwen.schedulers import SCHEDULER_CONFIG

TEMPLATE = (
    "<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, quantity, text, spatial "
    "relationships of the objects and background:<|im_end|>\n<|im_start|>user\n"
)
CORPUS = (
    TEMPLATE,
    "<|im_end|>\n<|im_start|>assistant\n",
    "a photo of a cat dog house tree car hat person, red blue green yellow sky, a drawing painting sketch in the style of",
)
TRANSFORMER_SEED = 1


def ensure_tiny(
    root: Path | None = None, name: str = "qwen-image", zero_cond_t: bool = False, transformer_seed: int = TRANSFORMER_SEED
) -> Path:
    """`name`, `zero_cond_t` and `transformer_seed`: the checkpoint it stands for (Qwen-Image-2512 is the same layout,
    its transformer drawn from another seed; both configs predate zero_cond_t)."""
    folder = f"{name}-s{transformer_seed}" + ("-z1" if zero_cond_t else "")
    return edit_plus.ensure_built(root, folder, lambda dest: build_tiny(dest, transformer_seed, zero_cond_t))


def build_tiny(dest: Path, transformer_seed: int = TRANSFORMER_SEED, zero_cond_t: bool = False) -> None:
    """Every component from fixed seeds, saved as a QwenImagePipeline diffusers folder at `dest`."""
    from diffusers import FlowMatchEulerDiscreteScheduler, QwenImagePipeline
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    with torch.random.fork_rng(devices=[]):
        tokenizer = edit_plus.build_tokenizer(CORPUS)
        torch.manual_seed(0)
        text_encoder = edit_plus.build_text_encoder(tokenizer)
        torch.manual_seed(1)
        transformer = edit_plus.build_transformer(zero_cond_t=zero_cond_t, seed=transformer_seed)
        torch.manual_seed(2)
        vae = edit_plus.build_vae(compression=8)
    pipe = QwenImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
    )
    pipe.save_pretrained(str(dest), safe_serialization=True)


__all__ = ["ensure_tiny"]
