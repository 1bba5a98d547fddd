"""Render one request on a loaded QwenImagePipeline, the reference server's way or with knobs flipped.

The reference wiring is what ai-toolkit-inference does per prompt (src/pipelines/base.py generate,
src/pipelines/qwen_image.py QwenImagePipeline._run_inference): a CPU generator seeded with the seed, then the
stock call with the prompt and negative prompt as strings ("" when none), `true_cfg_scale=guidance`, width and
height. The stock call encodes both strings with `encode_prompt` (cut to its max_sequence_length of 512; an
all-ones mask becomes None) and runs the denoising loop of the edit models without control latents; this
renderer encodes the same strings the same way once (cached) and hands the embeddings to that loop, which is
the stock call's to the bit (tests/models/test_qwen_image.py). The trainer's sampler calls the same pipeline with
embeddings it made with the same `encode_prompt`, so the two differ only in the knobs around the call.
"""

from __future__ import annotations

import torch

from parity.models.knobs import Knob, RuntimeFacts, Wiring
from parity.models.qwen import wiring as edit_plus
from parity.models.qwen.denoise import Embeddings
from parity.models.qwen.wiring import Rendered, RenderKnobs, Request

STOCK_MAX_SEQUENCE_LENGTH = 512  # QwenImagePipeline.__call__'s default, which neither side changes


def encode_text(pipe, prompt: str, device: torch.device) -> Embeddings:
    """`pipe.encode_prompt` of a prompt string, as the stock call makes it; a None mask becomes all ones (int64),
    as the trainer makes it (the loop turns an all-ones mask back into None, so both give the same bits)."""
    embeds, mask = pipe.encode_prompt(prompt, device=device, num_images_per_prompt=1)
    if mask is None:
        mask = torch.ones(embeds.shape[:2], device=embeds.device, dtype=torch.int64)
    return Embeddings(embeds, mask)


class Renderer(edit_plus.Renderer):
    """The edit renderer with text-only prompt encoding and the stock call's sequence cut."""

    max_sequence_length = STOCK_MAX_SEQUENCE_LENGTH

    def embeddings(self, request: Request, knobs: RenderKnobs) -> tuple[Embeddings, Embeddings]:
        key = (request.prompt, request.negative_prompt, self.dtype)
        if key not in self.text_cache:
            cond = encode_text(self.pipe, request.prompt, self.device)
            uncond = encode_text(self.pipe, request.negative_prompt or "", self.device)
            self.text_cache[key] = (cond, uncond)
        return self.text_cache[key]


def render_knobs(wiring: Wiring, facts: RuntimeFacts) -> RenderKnobs:
    """The renderer's share of a wiring: the scheduler (left to the checkpoint when equal) and VAE tiling."""
    scheduler = wiring.value(Knob.SCHEDULER)
    return RenderKnobs(
        scheduler=None if scheduler == facts.scheduler_config else scheduler,
        vae_tiling=bool(wiring.value(Knob.VAE_TILING)),
    )


__all__ = ["RenderKnobs", "Rendered", "Renderer", "Request", "render_knobs"]
