"""Drivers written the way ai-toolkit-inference serves and ai-toolkit's trainer samples one Qwen-Image prompt (text to
image), independent of parity's wiring code.

Server (ai-toolkit-inference af4aec1, src/pipelines/qwen_image.py QwenImagePipeline._run_inference): the stock
QwenImagePipeline call with the prompt strings, true CFG against the negative ("" when none), a CPU generator.
Trainer (ai-toolkit 27a03a9, qwen_image.py QwenImageModel): the stock pipeline built with its hard-coded scheduler
config, embeddings from the same encode_prompt (a None mask rebuilt as ones), the default torch generator.
"""

from __future__ import annotations

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, QwenImagePipeline
from preview_oracle import AITK_SCHEDULER


def server_generate(pipe, prompt, negative_prompt, width, height, steps, guidance, seed):
    with torch.inference_mode():
        return pipe(
            prompt=prompt, negative_prompt=negative_prompt or "", width=width, height=height, num_inference_steps=steps,
            true_cfg_scale=guidance, generator=torch.Generator("cpu").manual_seed(seed), output_type="pt",
        ).images


def trainer_generate(pipe, prompt, negative, width, height, steps, guidance, seed):
    trainer = QwenImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**AITK_SCHEDULER), text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer, vae=pipe.vae, transformer=pipe.transformer,
    )

    def embeds(text):
        e, m = trainer.encode_prompt(text, device=pipe._execution_device, num_images_per_prompt=1)
        return e, (torch.ones(e.shape[:2], device=e.device, dtype=torch.int64) if m is None else m)

    with torch.no_grad():
        (pe, pm), (ne, nm) = embeds(prompt), embeds(negative)
        return trainer(
            prompt_embeds=pe, prompt_embeds_mask=pm, negative_prompt_embeds=ne, negative_prompt_embeds_mask=nm,
            height=height, width=width, num_inference_steps=steps, true_cfg_scale=guidance,
            generator=torch.manual_seed(seed), output_type="pt",
        ).images
