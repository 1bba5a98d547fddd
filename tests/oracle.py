"""A driver written the way ai-toolkit-inference serves one prompt, independent of parity's wiring code.

It is the test oracle for exactness: prompt embeddings computed outside the pipeline (control image ->
0..1 tensor in the model dtype -> bilinear resize to the ~384x384 area with the server's width/height formula),
then the stock `QwenImageEditPlusPipeline.__call__`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF

CONDITION_AREA = 384 * 384


def server_encode(pipe, prompt, images, device, dtype):
    tensors = []
    for img in images:
        t = TF.to_tensor(img).unsqueeze(0).to(device, dtype=dtype)
        ratio = t.shape[2] / t.shape[3]
        w = math.sqrt(CONDITION_AREA * ratio)
        h = w / ratio
        w = round(w / 32) * 32
        h = round(h / 32) * 32
        tensors.append(F.interpolate(t, size=(int(h), int(w)), mode="bilinear"))
    embeds, mask = pipe.encode_prompt(prompt, image=tensors, device=device, num_images_per_prompt=1)
    if mask is None:
        mask = torch.ones(embeds.shape[:2], device=embeds.device, dtype=torch.int64)
    return embeds, mask


def server_generate(pipe, prompt, negative_prompt, images, width, height, steps, guidance, seed, output_type="pt"):
    device = pipe._execution_device
    dtype = pipe.transformer.dtype
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    with torch.inference_mode():
        embeds, mask = server_encode(pipe, prompt, images, device, dtype)
        neg_embeds, neg_mask = server_encode(pipe, negative_prompt or "", images, device, dtype)
        return pipe(
            image=list(images),
            prompt_embeds=embeds,
            prompt_embeds_mask=mask,
            negative_prompt_embeds=neg_embeds,
            negative_prompt_embeds_mask=neg_mask,
            generator=generator,
            true_cfg_scale=guidance,
            num_inference_steps=steps,
            height=height,
            width=width,
            output_type=output_type,
        ).images
