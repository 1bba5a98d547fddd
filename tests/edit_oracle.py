"""Drivers written the way ai-toolkit-inference serves and ai-toolkit's trainer samples one Qwen-Image-Edit prompt,
independent of parity's wiring code: the test oracles of tests/models/test_qwen_image_edit.py.

Server (ai-toolkit-inference af4aec1, src/pipelines/qwen_image.py QwenImageEditPipeline._run_inference): the control
image as a 0..1 tensor in the model dtype, bilinearly resized to ~1 MP with its ratio = H/W formula, encodes the
prompt and the negative prompt; the PIL image resized to the output size with Lanczos goes to the stock call.
Trainer (ai-toolkit 27a03a9, qwen_image_edit.py QwenImageEditModel): a QwenImageEditPipeline built with ai-toolkit's
hard-coded scheduler config; get_prompt_embeds resizes the full-size tensor to ~1 MP at its own aspect for each
prompt; generate_single_image resizes the PIL image to the output size with bilinear when the sizes differ.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from diffusers import FlowMatchEulerDiscreteScheduler, QwenImageEditPipeline
from PIL import Image
from preview_oracle import AITK_SCHEDULER

AREA = 1024 * 1024


def _ones_if_none(embeds, mask):
    if mask is None:
        mask = torch.ones(embeds.shape[:2], device=embeds.device, dtype=torch.int64)
    return embeds, mask


def server_generate(pipe, prompt, negative_prompt, control_image, width, height, steps, guidance, seed, output_type="pt"):
    device, dtype = pipe._execution_device, pipe.transformer.dtype
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    with torch.inference_mode():
        tensor = TF.to_tensor(control_image).unsqueeze(0).to(device, dtype=dtype)
        ratio = tensor.shape[2] / tensor.shape[3]
        w = math.sqrt(AREA * ratio)
        h = w / ratio
        w = round(w / 32) * 32
        h = round(h / 32) * 32
        tensor = F.interpolate(tensor, size=(int(h), int(w)), mode="bilinear")
        embeds, mask = _ones_if_none(*pipe.encode_prompt(prompt, image=tensor, device=device, num_images_per_prompt=1))
        neg, neg_mask = _ones_if_none(*pipe.encode_prompt(negative_prompt or "", image=tensor, device=device, num_images_per_prompt=1))
        return pipe(
            image=control_image.resize((width, height), Image.LANCZOS),
            prompt_embeds=embeds,
            prompt_embeds_mask=mask,
            negative_prompt_embeds=neg,
            negative_prompt_embeds_mask=neg_mask,
            height=height,
            width=width,
            num_inference_steps=steps,
            true_cfg_scale=guidance,
            generator=generator,
            output_type=output_type,
        ).images


def trainer_prompt_embeds(pipe, prompt, full_size):
    ratio = full_size.shape[2] / full_size.shape[3]
    height = math.sqrt(AREA * ratio)
    width = height / ratio
    width = round(width / 32) * 32
    height = round(height / 32) * 32
    resized = F.interpolate(full_size, size=(height, width), mode="bilinear")
    return _ones_if_none(*pipe.encode_prompt(prompt, image=resized, device=pipe._execution_device, num_images_per_prompt=1))


def trainer_generate(pipe, prompt, negative, control_image, width, height, steps, guidance, seed, output_type="pt"):
    """The trainer's preview of one sample (LoRA applied by the caller, e.g. preview_oracle.TrainerLora)."""
    device, dtype = pipe._execution_device, pipe.transformer.dtype
    sampler = QwenImageEditPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**AITK_SCHEDULER),  # CustomFlowMatch...: diffusers' steps
        text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer,
        processor=pipe.processor,
        vae=pipe.vae,
        transformer=pipe.transformer,
    )
    sampler.set_progress_bar_config(disable=True)
    width, height = int(width // 32 * 32), int(height // 32 * 32)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        full_size = TF.to_tensor(control_image).unsqueeze(0).to(device, dtype=dtype)
        pe, pm = trainer_prompt_embeds(sampler, prompt, full_size)
        ne, nm = trainer_prompt_embeds(sampler, negative, full_size)
        if control_image.size != (width, height):
            control_image = control_image.resize((width, height), Image.BILINEAR)
        generator = torch.manual_seed(seed)
        return sampler(
            image=control_image,
            prompt_embeds=pe,
            prompt_embeds_mask=pm.to(device, dtype=torch.int64),
            negative_prompt_embeds=ne,
            negative_prompt_embeds_mask=nm.to(device, dtype=torch.int64),
            height=height,
            width=width,
            num_inference_steps=steps,
            true_cfg_scale=guidance,
            latents=None,
            generator=generator,
            output_type=output_type,
        ).images
