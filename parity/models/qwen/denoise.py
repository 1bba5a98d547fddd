"""QwenImageEditPlusPipeline.__call__ with precomputed prompt embeddings, split into its stages.

Each stage does what diffusers 0.42's `__call__` does, through the pipeline's own helpers (prepare_latents,
calculate_shift, retrieve_timesteps, the image processor, the transformer and scheduler), so the result is the
stock call's to the bit (tests/models/test_wiring.py checks it against the stock call with torch.equal). Splitting it lets the harness time
each stage and, later, swap single knobs (CFG renormalisation, scheduler) without touching the others.
"""

from __future__ import annotations

import copy
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image


@dataclass
class StageTimer:
    """Wall time per stage; synchronises CUDA so a stage's time is its own."""

    device: torch.device
    seconds: dict[str, float] = field(default_factory=dict)

    def __call__(self, name: str):
        return _Stage(self, name)


class _Stage:
    def __init__(self, timer: StageTimer, name: str):
        self.timer, self.name = timer, name

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.timer.device.type == "cuda":
            torch.cuda.synchronize(self.timer.device)
        self.timer.seconds[self.name] = self.timer.seconds.get(self.name, 0.0) + time.perf_counter() - self.start
        return False


@dataclass(frozen=True)
class Embeddings:
    embeds: torch.Tensor
    mask: torch.Tensor | None


# Longer than a screen on purpose: generate() follows QwenImageEditPlusPipeline.__call__ step by step (check,
# prompt embeddings, control latents, noise, timesteps, the loop, decode), so that a reader can hold the two side
# by side and see that every tensor is made the same way; its bits are proven equal to the stock call's.
def generate(
    pipe,
    images: list[Image.Image],
    cond: Embeddings,
    uncond: Embeddings | None,
    *,
    width: int,
    height: int,
    steps: int,
    true_cfg_scale: float,
    generator: torch.Generator,
    timer: StageTimer,
    cfg_renorm: bool = True,
    scheduler=None,
    latent_cache: dict | None = None,
    cache_tag: tuple = (),
    uncond_replica=None,
    max_sequence_length: int | None = None,
) -> torch.Tensor:
    """Decoded image tensor [1, 3, H, W] in [-1, 1], as `pipe(image=..., prompt_embeds=..., ...)` makes it.

    `uncond_replica` (a cfg_parallel.UncondReplica): run each step's unconditional pass on its device at the
    same time as the conditional one; the combination below is unchanged, so the bits are too.
    """
    from diffusers.pipelines.qwenimage.pipeline_qwenimage_edit_plus import calculate_shift, retrieve_timesteps

    multiple_of = pipe.vae_scale_factor * 2
    width = width // multiple_of * multiple_of
    height = height // multiple_of * multiple_of
    device = pipe._execution_device

    do_cfg = true_cfg_scale > 1 and uncond is not None
    # QwenImagePipeline's encode_prompt cuts the embeddings to the call's max_sequence_length (512); Edit-Plus's
    # takes the argument and ignores it: passed only where the stock call passes it to a pipeline that uses it
    limit = {} if max_sequence_length is None else {"max_sequence_length": max_sequence_length}
    embeds, mask = pipe.encode_prompt(
        prompt=None, prompt_embeds=cond.embeds, prompt_embeds_mask=cond.mask, device=device, num_images_per_prompt=1, **limit
    )
    if do_cfg:
        neg_embeds, neg_mask = pipe.encode_prompt(
            prompt=None, prompt_embeds=uncond.embeds, prompt_embeds_mask=uncond.mask, device=device, num_images_per_prompt=1, **limit
        )
    scale = pipe.vae_scale_factor * 2
    shapes = [(height // scale, width // scale), *[(h // scale, w // scale) for w, h in control_sizes(images)]]
    check_text_positions(pipe, shapes, embeds.shape[1], neg_embeds.shape[1] if do_cfg else 0)
    with timer("vae_encode"):
        vae_sizes, image_latents = control_latents(pipe, images, embeds.dtype, device, latent_cache, cache_tag)
    latents = initial_noise(pipe, width, height, embeds.dtype, device, generator)
    img_shapes = [[(1, height // scale, width // scale), *[(1, h // scale, w // scale) for w, h in vae_sizes]]]

    scheduler = copy.deepcopy(scheduler if scheduler is not None else pipe.scheduler)
    sigmas = np.linspace(1.0, 1 / steps, steps)
    mu = calculate_shift(
        latents.shape[1],
        scheduler.config.get("base_image_seq_len", 256),
        scheduler.config.get("max_image_seq_len", 4096),
        scheduler.config.get("base_shift", 0.5),
        scheduler.config.get("max_shift", 1.15),
    )
    timesteps, _ = retrieve_timesteps(scheduler, steps, device, sigmas=sigmas, mu=mu)
    attention_kwargs: dict = {}
    scheduler.set_begin_index(0)

    def predict(context: str, prompt_embeds, prompt_mask, model_input, timestep, tokens: int) -> torch.Tensor:
        """One transformer pass, as the stock loop makes it, cut to the output image's tokens."""
        with pipe.transformer.cache_context(context):
            out = pipe.transformer(
                hidden_states=model_input,
                timestep=timestep / 1000,
                guidance=None,
                encoder_hidden_states_mask=prompt_mask,
                encoder_hidden_states=prompt_embeds,
                img_shapes=img_shapes,
                attention_kwargs=attention_kwargs,
                return_dict=False,
            )[0]
        return out[:, :tokens]

    with timer("denoise"):
        for t in _shown_steps(timesteps):
            model_input = latents if image_latents is None else torch.cat([latents, image_latents], dim=1)
            timestep = t.expand(latents.shape[0]).to(latents.dtype)
            pending = None
            if do_cfg and uncond_replica is not None:
                pending = uncond_replica.submit(
                    embeds=neg_embeds, mask=neg_mask, model_input=model_input, timestep=timestep / 1000,
                    img_shapes=img_shapes, tokens=latents.size(1), attention_kwargs=attention_kwargs,
                )
            noise_pred = predict("cond", embeds, mask, model_input, timestep, latents.size(1))
            if do_cfg:
                if pending is not None:
                    neg_pred = pending.result()
                else:
                    neg_pred = predict("uncond", neg_embeds, neg_mask, model_input, timestep, latents.size(1))
                combined = neg_pred + true_cfg_scale * (noise_pred - neg_pred)
                if cfg_renorm:
                    cond_norm = torch.norm(noise_pred, dim=-1, keepdim=True)
                    combined_norm = torch.norm(combined, dim=-1, keepdim=True)
                    noise_pred = combined * (cond_norm / combined_norm)
                else:
                    noise_pred = combined
            latents = scheduler.step(noise_pred, t, latents, return_dict=False)[0]

    with timer("decode"):
        return decode(pipe, latents, width, height)


def _shown_steps(timesteps):
    """The steps, with a progress bar on a terminal once a case has run for a few seconds (tqdm's `delay`): a
    full-size case takes minutes. Off when stderr is not a terminal (captured by pytest, piped to a log)."""
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm comes with transformers; without it, no bar
        return timesteps
    return tqdm(timesteps, desc="denoise", unit="step", delay=3.0, disable=None, leave=False, file=sys.stderr)


def control_sizes(images: list[Image.Image]) -> list[tuple[int, int]]:
    """(width, height) each control image is resized to for the VAE (~1 MP, the pipeline's own rule)."""
    from diffusers.pipelines.qwenimage.pipeline_qwenimage_edit_plus import VAE_IMAGE_SIZE, calculate_dimensions

    return [tuple(calculate_dimensions(VAE_IMAGE_SIZE, img.size[0] / img.size[1])[:2]) for img in images]


def check_text_positions(pipe, shapes: list[tuple[int, int]], tokens: int, negative_tokens: int) -> None:
    """The transformer's rotary embedding has a fixed table of positions (4096 in Qwen-Image); text tokens take
    the positions after the largest image's half side. A longer text cannot be rendered, by parity or by the
    reference server's pipeline (its rotary embedding fails with a tensor size mismatch); refused here, before
    the VAE and the denoising loop, with the numbers."""
    from parity.core.errors import CaseRunError

    rope = getattr(pipe.transformer, "pos_embed", None)
    table = getattr(rope, "pos_freqs", None)
    if table is None:
        return
    halve = getattr(rope, "scale_rope", False)
    taken = max(max(h // 2, w // 2) if halve else max(h, w) for h, w in shapes)
    room = table.shape[0] - taken
    for what, count in (("prompt", tokens), ("negative prompt", negative_tokens)):
        if count > room:
            raise CaseRunError(
                f"the {what} is {count} tokens long (with the control images' picture tokens); the transformer has "
                f"text positions for {room} at this size ({table.shape[0]} rotary positions, {taken} taken by the "
                f"largest image), so the reference server's pipeline fails on it too (a tensor size mismatch in the "
                f"rotary embedding)",
                f"shorten the {what} by at least {count - room} tokens (about {4 * (count - room)} characters of English)",
            )


def control_latents(
    pipe, images: list[Image.Image], dtype: torch.dtype, device: torch.device, cache: dict | None, tag: tuple = ()
) -> tuple[list[tuple[int, int]], torch.Tensor | None]:
    """VAE sizes and packed latents of the control images, as `prepare_latents` makes them.

    Each image is resized to ~1 MP by the pipeline's image processor and encoded with the latent mode (no
    sampling, so no generator draw). `cache` maps (image content, size, dtype, device, tag) to packed latents;
    the tag names anything else that changes the encoding (VAE tiling).
    """
    sizes, packed = [], []
    for img, (vae_w, vae_h) in zip(images, control_sizes(images)):
        sizes.append((vae_w, vae_h))
        key = (image_digest(img), vae_w, vae_h, dtype, str(device), tag)
        if cache is not None and key in cache:
            packed.append(cache[key])
            continue
        pixels = pipe.image_processor.preprocess(img, vae_h, vae_w).unsqueeze(2).to(device=device, dtype=dtype)
        latents = pipe._encode_vae_image(image=pixels, generator=None)
        latents = torch.cat([latents], dim=0)
        channels, (lat_h, lat_w) = latents.shape[1], latents.shape[3:]
        latents = pipe._pack_latents(latents, 1, channels, lat_h, lat_w)
        if cache is not None:
            cache[key] = latents
        packed.append(latents)
    return sizes, (torch.cat(packed, dim=1) if packed else None)


def initial_noise(pipe, width: int, height: int, dtype: torch.dtype, device: torch.device, generator) -> torch.Tensor:
    """The packed starting noise, drawn from `generator` as `prepare_latents` draws it."""
    from diffusers.utils.torch_utils import randn_tensor

    channels = pipe.transformer.config.in_channels // 4
    lat_h = 2 * (int(height) // (pipe.vae_scale_factor * 2))
    lat_w = 2 * (int(width) // (pipe.vae_scale_factor * 2))
    noise = randn_tensor((1, 1, channels, lat_h, lat_w), generator=generator, device=device, dtype=dtype)
    return pipe._pack_latents(noise, 1, channels, lat_h, lat_w)


def image_digest(img: Image.Image) -> str:
    """Content hash of a PIL image (mode, size and pixels)."""
    import hashlib

    h = hashlib.sha256(f"{img.mode}{img.size}".encode())
    h.update(img.tobytes())
    return h.hexdigest()


def decode(pipe, latents: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Packed latents to the decoded image tensor, as the end of `__call__` does it."""
    latents = pipe._unpack_latents(latents, height, width, pipe.vae_scale_factor)
    latents = latents.to(pipe.vae.dtype)
    z_dim = pipe.vae.config.z_dim
    mean = torch.tensor(pipe.vae.config.latents_mean).view(1, z_dim, 1, 1, 1).to(latents.device, latents.dtype)
    inv_std = 1.0 / torch.tensor(pipe.vae.config.latents_std).view(1, z_dim, 1, 1, 1).to(latents.device, latents.dtype)
    latents = latents / inv_std + mean
    return pipe.vae.decode(latents, return_dict=False)[0][:, :, 0]


def to_uint8(pipe, decoded: torch.Tensor) -> np.ndarray:
    """The decoded tensor as the pipeline's PIL output, as a uint8 HxWx3 array."""
    pil = pipe.image_processor.postprocess(decoded, output_type="pil")[0]
    return np.asarray(pil, dtype=np.uint8)
