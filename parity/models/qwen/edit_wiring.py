"""Render one request on a loaded QwenImageEditPipeline, the reference server's way or with knobs flipped.

The reference wiring (the defaults of RenderKnobs) is what ai-toolkit-inference does per prompt
(src/pipelines/qwen_image.py QwenImageEditPipeline._run_inference, under base.py generate):
- CPU generator `torch.Generator("cpu").manual_seed(seed)`;
- the control image -> 0..1 tensor in the model dtype -> bilinear resize to the ~1024x1024 area with the server's
  transposed width and height -> `pipe.encode_prompt(prompt, image=tensor)`, and the same tensor for the negative
  prompt; a None mask becomes an all-ones int64 mask;
- `control_image.resize((width, height), Image.LANCZOS)` handed to the stock call as `image=` with those
  embeddings and `true_cfg_scale=guidance`; the pipeline resizes it again to ~1 MP at that aspect for the VAE.
The trainer's sampler (ai-toolkit QwenImageEditModel) differs in the knobs RenderKnobs exposes: the text
encoder's image keeps its aspect, the first resize is bilinear, its own scheduler config, VAE tiling under
low_vram. The denoising loop after the control image is the stock one of both edit pipelines (diffusers 0.42:
the same latents, shapes, schedule and CFG), which parity/models/qwen/denoise.py replays in stages;
tests/models/test_qwen_image_edit.py checks this module against the stock QwenImageEditPipeline call with torch.equal.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F
from PIL import Image

from parity.models.knobs import Knob, RuntimeFacts, Wiring
from parity.models.qwen import wiring as edit_plus
from parity.models.qwen.denoise import Embeddings, image_digest
from parity.models.qwen.edit_geometry import server_text_size, trainer_text_size
from parity.models.qwen.edit_knobs import VaeResize
from parity.models.qwen.knobs import TextImageSize
from parity.models.qwen.wiring import Rendered, Request, condition_tensor, encode

_KERNELS = {VaeResize.LANCZOS: Image.LANCZOS, VaeResize.BILINEAR: Image.BILINEAR}


@dataclass(frozen=True)
class RenderKnobs(edit_plus.RenderKnobs):
    """Edit-Plus's renderer knobs (its `negative` stays SAME here: both sides encode the negative prompt with the
    prompt's image) and the kernel of the first resize of the control image."""

    vae_resize: VaeResize = VaeResize.LANCZOS


def resize_for_text(tensor: torch.Tensor, rule: TextImageSize) -> torch.Tensor:
    """Bilinear resize to the ~1024x1024 area; the server's size is transposed for non-square images."""
    height, width = tensor.shape[2], tensor.shape[3]
    size_of = server_text_size if rule is TextImageSize.SERVER else trainer_text_size
    new_width, new_height = size_of(width, height)
    return F.interpolate(tensor, size=(int(new_height), int(new_width)), mode="bilinear")


def at_output_size(image: Image.Image, width: int, height: int, kernel: VaeResize) -> Image.Image:
    """The control image at the output size, as each side hands it to the pipeline (a copy when it has that size
    already: PIL's resize returns one, and the trainer skips the call)."""
    return image.resize((width, height), _KERNELS[kernel])


class Renderer(edit_plus.Renderer):
    """Edit-Plus's renderer (stages, caches, knobs) with this pipeline's two control-image paths: the text encoder
    gets the one picture at ~1 MP, the VAE gets it first resized to the output size."""

    def render(self, request: Request, knobs: RenderKnobs = RenderKnobs(), uncond_replica=None) -> Rendered:
        text_images = request.text_images if request.text_images is not None else request.images
        vae_images = tuple(at_output_size(img, request.width, request.height, knobs.vae_resize) for img in request.images)
        return super().render(replace(request, images=vae_images, text_images=text_images), knobs, uncond_replica)

    def embeddings(self, request: Request, knobs: RenderKnobs) -> tuple[Embeddings, Embeddings]:
        """Prompt and negative-prompt embeddings with the one control image (a tensor, as both sides pass it)."""
        (image,) = request.text_images
        key = (request.prompt, request.negative_prompt, image_digest(image), knobs.text_size, self.dtype)
        if key not in self.text_cache:
            tensor = resize_for_text(condition_tensor(image, self.device, self.dtype), knobs.text_size)
            cond = encode(self.pipe, request.prompt, tensor, self.device)
            uncond = encode(self.pipe, request.negative_prompt or "", tensor, self.device)
            self.text_cache[key] = (cond, uncond)
        return self.text_cache[key]


def render_knobs(wiring: Wiring, facts: RuntimeFacts) -> RenderKnobs:
    """The renderer's share of a wiring: Edit-Plus's, and the first resize's kernel."""
    shared = edit_plus.render_knobs(wiring, facts)
    return RenderKnobs(**{f.name: getattr(shared, f.name) for f in fields(shared)}, vae_resize=wiring.value(Knob.VAE_IMAGES))


__all__ = ["RenderKnobs", "Rendered", "Renderer", "Request", "render_knobs"]
