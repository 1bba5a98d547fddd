"""Render one request on a loaded QwenImageEditPlusPipeline, the reference server's way or with knobs flipped.

The reference wiring (the defaults of RenderKnobs) is what ai-toolkit-inference does per prompt
(src/pipelines/base.py generate, src/pipelines/qwen_image.py QwenImageEditPlusPipeline._run_inference):
- CPU generator `torch.Generator("cpu").manual_seed(seed)`;
- each control image -> 0..1 tensor in the model dtype -> bilinear resize to the ~384x384 area with width and
  height computed from ratio = H/W (transposed for non-square images) -> `pipe.encode_prompt(prompt,
  image=[tensors])`, likewise for the negative prompt; a None mask becomes an all-ones int64 mask;
- the stock pipeline call with those embeddings, `true_cfg_scale=guidance`, the PIL control images (the
  pipeline resizes them to ~1 MP for the VAE), under torch.inference_mode().
The trainer's sampler (ai-toolkit QwenImageEditPlusModel) differs in the knobs RenderKnobs exposes: the
resize keeps the aspect, the negative prompt gets the already-resized tensors resized again (a shared list),
CFG is not renormalised unless do_cfg_norm, its own scheduler config, VAE tiling under low_vram.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image

from parity.core.errors import CaseRunError
from parity.facts import quant
from parity.models.knobs import Knob, RuntimeFacts, Wiring
from parity.models.qwen.denoise import Embeddings, StageTimer, generate, image_digest, to_uint8
from parity.models.qwen.geometry import server_condition_size, trainer_condition_size
from parity.models.qwen.knobs import NegativeImages, TextImageSize


@dataclass(frozen=True)
class Request:
    """One prompt to render."""

    prompt: str
    negative_prompt: str
    width: int
    height: int
    steps: int
    guidance_scale: float
    seed: int
    images: tuple[Image.Image, ...]  # what the VAE gets, in order
    text_images: tuple[Image.Image, ...] | None = None  # what the text encoder gets; default: `images`


@dataclass(frozen=True)
class RenderKnobs:
    """The knobs the renderer itself applies (LoRA, size and output encoding are the engine's)."""

    text_size: TextImageSize = TextImageSize.SERVER
    negative: NegativeImages = NegativeImages.SAME
    cfg_renorm: bool = True
    scheduler: tuple[tuple[str, object], ...] | None = None  # None: the checkpoint's scheduler
    vae_tiling: bool = False
    zero_cond_t: bool | None = None  # None: the checkpoint's


@dataclass
class Rendered:
    image: np.ndarray  # uint8 HxWx3, the pipeline's PIL output
    decoded: torch.Tensor  # the VAE output before post-processing, for exactness tests
    timings: dict[str, float]
    notes: list[str] = field(default_factory=list)
    peak_memory_gb: float | None = None  # the engine's: CUDA peak on the main device
    peak_memory_by_device: dict[str, float] = field(default_factory=dict)
    offload: str | None = None  # the engine's: the offload mode it rendered in


def condition_tensor(image: Image.Image, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A control image as the 0..1 tensor both sides hand to the text encoder (before resizing)."""
    return TF.to_tensor(image).unsqueeze(0).to(device, dtype=dtype)


def resize_for_text(tensor: torch.Tensor, rule: TextImageSize) -> torch.Tensor:
    """Bilinear resize to the ~384x384 area; the server's size is transposed for non-square images."""
    height, width = tensor.shape[2], tensor.shape[3]
    size_of = server_condition_size if rule is TextImageSize.SERVER else trainer_condition_size
    new_width, new_height = size_of(width, height)
    return F.interpolate(tensor, size=(int(new_height), int(new_width)), mode="bilinear")


def encode(pipe, prompt: str, tensors: list[torch.Tensor], device: torch.device) -> Embeddings:
    """`pipe.encode_prompt` with the control tensors; a None mask becomes all ones (int64), as both sides do."""
    embeds, mask = pipe.encode_prompt(prompt, image=tensors, device=device, num_images_per_prompt=1)
    if mask is None:
        mask = torch.ones(embeds.shape[:2], device=embeds.device, dtype=torch.int64)
    return Embeddings(embeds, mask)


class Renderer:
    """Renders requests on one loaded pipeline; caches (exactly) text embeddings and control-image latents."""

    max_sequence_length: int | None = None  # what the stock call cuts the text embeddings to, where it cuts them

    def __init__(self, pipe):
        self.pipe = pipe
        self.device = pipe._execution_device
        self.dtype = pipe.transformer.dtype
        self.latent_cache: dict = {}
        self._text_caches: dict = {}

    @property
    def text_cache(self) -> dict:
        """The text embeddings of the text encoder as it is now: as loaded, or quantized by the trainer's qtype
        (parity.render.quantize tags it), under the float32 matmul precision set now (a torchao replay sets "high")."""
        state = (getattr(self.pipe.text_encoder, quant.TAG, None), torch.get_float32_matmul_precision())
        return self._text_caches.setdefault(state, {})

    def render(self, request: Request, knobs: RenderKnobs = RenderKnobs(), uncond_replica=None) -> Rendered:
        """`uncond_replica`: run the unconditional passes on its device at the same time (cfg_parallel)."""
        timer = StageTimer(self.device)
        generator = torch.Generator(device="cpu").manual_seed(int(request.seed))
        images = list(request.images)
        with self._grad_mode(), self._zero_cond_t(knobs.zero_cond_t), self._tiling(knobs.vae_tiling):
            with timer("text_encode"):
                cond, uncond = self.embeddings(request, knobs)
            if uncond_replica is not None:
                uncond_replica.mirror_flags()
            decoded = generate(
                self.pipe,
                images,
                cond,
                uncond,
                width=request.width,
                height=request.height,
                steps=request.steps,
                true_cfg_scale=request.guidance_scale,
                generator=generator,
                timer=timer,
                cfg_renorm=knobs.cfg_renorm,
                scheduler=self._scheduler(knobs.scheduler),
                latent_cache=self.latent_cache,
                cache_tag=("tiled",) if knobs.vae_tiling else (),
                uncond_replica=uncond_replica,
                max_sequence_length=self.max_sequence_length,
            )
            if not torch.isfinite(decoded).all():
                raise CaseRunError(*self._nan_source(request, knobs))
            with timer("postprocess"):
                image = to_uint8(self.pipe, decoded)
            # as the stock call ends: under model offload every component goes back to the CPU and the hooks are
            # set again (so a LoRA change between cases is fused on the CPU, as the server fuses it)
            self.pipe.maybe_free_model_hooks()
            if not image.any():
                raise CaseRunError(
                    "the output is all black",
                    "check the LoRA and the base model (a LoRA with huge or NaN weights, a broken VAE decode)",
                )
        return Rendered(image=image, decoded=decoded, timings=dict(timer.seconds))

    def _grad_mode(self):
        """torch.inference_mode, as the server's stock call runs; on the trainer's quantized parts torch.no_grad, as
        its sampler runs (quanto's packed qint4/qint2 weights raise under inference mode). Neither moves a bit."""
        quantized = any(getattr(part, quant.TAG, None) for part in (self.pipe.transformer, self.pipe.text_encoder))
        return torch.no_grad() if quantized else torch.inference_mode()

    def _nan_source(self, request: Request, knobs: RenderKnobs) -> tuple[str, str]:
        """Where a NaN output comes from, traced before it is reported: (what, fix)."""
        what = f"the output holds NaN or infinite values ({request.steps} step(s), {request.width}x{request.height})"
        scheduler = self._scheduler(knobs.scheduler) or self.pipe.scheduler
        if request.steps == 1 and scheduler.config.get("shift_terminal"):
            terminal = scheduler.config["shift_terminal"]
            return (
                f"{what}: with one step, this scheduler config (shift_terminal {terminal}) divides zero by zero",
                "use at least 2 steps (`sample_steps`, or `--steps` in the prompt)",
            )
        for part in ("transformer", "text_encoder", "vae"):
            module = getattr(self.pipe, part, None)
            for name, tensor in module.named_parameters() if module is not None else ():
                if tensor.is_meta:  # offload sequential: the weights wait in host memory, checked there by load
                    continue
                if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                    return (
                        f"{what}: the model's {part} weight {name} holds NaN or infinite values (LoRA applied, if any)",
                        "check the base model files (a damaged download or a bad conversion) and the LoRA",
                    )
        return (
            f"{what}: no weight holds one, so the numbers overflowed while rendering",
            "render in float32, or check the inputs (guidance scale, LoRA multiplier) for extreme values",
        )

    def embeddings(self, request: Request, knobs: RenderKnobs) -> tuple[Embeddings, Embeddings]:
        """Prompt and negative-prompt embeddings; the negative prompt's tensors are resized again if asked."""
        text_images = request.text_images if request.text_images is not None else request.images
        digests = tuple(image_digest(img) for img in text_images)
        key = (request.prompt, request.negative_prompt, digests, knobs.text_size, knobs.negative, self.dtype)
        if key in self.text_cache:
            return self.text_cache[key]
        tensors = [resize_for_text(condition_tensor(img, self.device, self.dtype), knobs.text_size) for img in text_images]
        cond = encode(self.pipe, request.prompt, tensors, self.device)
        if knobs.negative is NegativeImages.RESIZED_AGAIN:
            tensors = [resize_for_text(t, knobs.text_size) for t in tensors]
        uncond = encode(self.pipe, request.negative_prompt or "", tensors, self.device)
        self.text_cache[key] = (cond, uncond)
        return cond, uncond

    def _scheduler(self, items):
        if items is None:
            return None
        return type(self.pipe.scheduler).from_config({**self.pipe.scheduler.config, **dict(items)})

    @contextmanager
    def _tiling(self, on: bool):
        if not on:
            yield
            return
        self.pipe.vae.enable_tiling()
        try:
            yield
        finally:
            self.pipe.vae.disable_tiling()

    @contextmanager
    def _zero_cond_t(self, value: bool | None):
        transformer = self.pipe.transformer
        if value is None or value == transformer.zero_cond_t:
            yield
            return
        modules = [transformer, *transformer.transformer_blocks]
        saved = [m.zero_cond_t for m in modules]
        for m in modules:
            m.zero_cond_t = value
        try:
            yield
        finally:
            for m, old in zip(modules, saved):
                m.zero_cond_t = old


def render_knobs(wiring: Wiring, facts: RuntimeFacts) -> RenderKnobs:
    """The renderer's share of a wiring; values equal to the checkpoint's are left to the checkpoint."""
    renorm = wiring.value(Knob.CFG_RENORM)
    scheduler = wiring.value(Knob.SCHEDULER)
    zero_cond_t = wiring.value(Knob.ZERO_COND_T)
    return RenderKnobs(
        text_size=wiring.value(Knob.TEXT_IMAGE_SIZE),
        negative=wiring.value(Knob.NEGATIVE_IMAGES),
        cfg_renorm=renorm is not False,
        scheduler=None if scheduler == facts.scheduler_config else scheduler,
        vae_tiling=bool(wiring.value(Knob.VAE_TILING)),
        zero_cond_t=None if zero_cond_t == facts.zero_cond_t else zero_cond_t,
    )
