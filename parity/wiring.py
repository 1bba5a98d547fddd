"""The reference wiring for qwen_image_edit_plus_2511: ai-toolkit-inference's generate(), stage by stage.

What the server does per prompt (src/pipelines/base.py generate, src/pipelines/qwen_image.py
QwenImageEditPlusPipeline._run_inference), and what this module reproduces:
- size floored to 32 (done in resolve), CPU generator `torch.Generator("cpu").manual_seed(seed)`;
- each control image -> 0..1 tensor in the model dtype -> bilinear resize to the ~384x384 area with width and
  height computed from ratio = H/W (transposed for non-square images) -> `pipe.encode_prompt(prompt,
  image=[tensors])`, likewise for the negative prompt; a None mask becomes an all-ones int64 mask;
- the stock pipeline call with those embeddings, `true_cfg_scale=guidance`, the PIL control images (the
  pipeline resizes them to ~1 MP for the VAE), under torch.inference_mode().
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image

from .denoise import Embeddings, StageTimer, generate, to_uint8
from .errors import CaseRunError
from .resolve import server_condition_size


@dataclass(frozen=True)
class Request:
    """One prompt of a request to the reference server, after its own rules."""

    prompt: str
    negative_prompt: str
    width: int
    height: int
    steps: int
    guidance_scale: float
    seed: int
    images: tuple[Image.Image, ...]


@dataclass
class Rendered:
    image: np.ndarray  # uint8 HxWx3, the pipeline's PIL output
    decoded: torch.Tensor  # the VAE output before post-processing, for exactness tests
    timings: dict[str, float]


def condition_tensor(image: Image.Image, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A control image prepared for the text encoder exactly as the reference server does it."""
    tensor = TF.to_tensor(image).unsqueeze(0).to(device, dtype=dtype)
    width, height = server_condition_size(tensor.shape[3], tensor.shape[2])
    return F.interpolate(tensor, size=(int(height), int(width)), mode="bilinear")


def encode(pipe, prompt: str, tensors: list[torch.Tensor], device: torch.device) -> Embeddings:
    """`pipe.encode_prompt` with the control tensors; a None mask becomes all ones (int64), as the server does."""
    embeds, mask = pipe.encode_prompt(prompt, image=tensors, device=device, num_images_per_prompt=1)
    if mask is None:
        mask = torch.ones(embeds.shape[:2], device=embeds.device, dtype=torch.int64)
    return Embeddings(embeds, mask)


class ReferenceWiring:
    """Runs requests on a loaded QwenImageEditPlusPipeline the way the reference server does."""

    name = "reference"

    def __init__(self, pipe):
        self.pipe = pipe
        self.device = pipe._execution_device
        self.dtype = pipe.transformer.dtype
        self.latent_cache: dict = {}  # control-image VAE latents; exact (same tensors the VAE would return)

    def render(self, request: Request) -> Rendered:
        timer = StageTimer(self.device)
        generator = torch.Generator(device="cpu").manual_seed(int(request.seed))
        images = list(request.images)
        with torch.inference_mode():
            with timer("text_encode"):
                tensors = [condition_tensor(img, self.device, self.dtype) for img in images]
                cond = encode(self.pipe, request.prompt, tensors, self.device)
                uncond = encode(self.pipe, request.negative_prompt or "", tensors, self.device)
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
                latent_cache=self.latent_cache,
            )
            if not torch.isfinite(decoded).all():
                raise CaseRunError(
                    f"the output holds NaN or infinite values ({request.steps} step(s), {request.width}x{request.height})",
                    "with this scheduler config (shift_terminal) a single step divides by zero: use at least 2 steps; "
                    "otherwise check the LoRA and the base model for NaN weights",
                )
            with timer("postprocess"):
                image = to_uint8(self.pipe, decoded)
        return Rendered(image=image, decoded=decoded, timings=dict(timer.seconds))
