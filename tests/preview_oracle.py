"""A driver written the way ai-toolkit's trainer draws one preview, independent of parity's code.

Test oracle for the preview wiring (ai-toolkit at 27a03a9): BaseModel.generate_images loads the control images
as 0..1 tensors in the model dtype; QwenImageEditPlusModel.get_prompt_embeds resizes them in the shared list
(aspect kept) before encoding the prompt, so the negative prompt gets them resized a second time; the LoRA is
merged in float32 (one multiplier for the round) or runs as a float32 branch; QwenImageEditPlusCustomPipeline
runs true CFG without renormalisation unless do_cfg_norm, with ai-toolkit's hard-coded scheduler config, and
tiles the VAE under low_vram.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.pipelines.qwenimage.pipeline_qwenimage_edit_plus import (
    VAE_IMAGE_SIZE,
    calculate_dimensions,
    calculate_shift,
    retrieve_timesteps,
)
from safetensors.torch import load_file

CONDITION_IMAGE_SIZE = 384 * 384
AITK_SCHEDULER = {
    "base_image_seq_len": 256, "base_shift": 0.5, "invert_sigmas": False, "max_image_seq_len": 8192,
    "max_shift": 0.9, "num_train_timesteps": 1000, "shift": 1.0, "shift_terminal": 0.02,
    "stochastic_sampling": False, "time_shift_type": "exponential", "use_beta_sigmas": False,
    "use_dynamic_shifting": True, "use_exponential_sigmas": False, "use_karras_sigmas": False,
}


def trainer_prompt_embeds(pipe, prompt, control_images, device):
    for i in range(len(control_images)):
        ratio = control_images[i].shape[2] / control_images[i].shape[3]
        height = math.sqrt(CONDITION_IMAGE_SIZE * ratio)
        width = height / ratio
        width = round(width / 32) * 32
        height = round(height / 32) * 32
        control_images[i] = F.interpolate(control_images[i], size=(height, width), mode="bilinear")
    embeds, mask = pipe.encode_prompt([prompt], image=control_images, device=device, num_images_per_prompt=1)
    if mask is None:
        mask = torch.ones(embeds.shape[:2], device=embeds.device, dtype=torch.int64)
    return embeds, mask


class TrainerLora:
    """ai-toolkit's LoRAModule arithmetic on the diffusers transformer's linears. Its scale is alpha / lora_dim as
    LoRASpecialNetwork.__init__ sets them (toolkit/lora_special.py): every Qwen arch is a transformer model, which
    forces `peft_format`, and a PEFT-format network sets alpha = lora_dim whatever `linear_alpha` the job gave, so
    the scale is 1; `peft_format=False` is the other branch (the job's linear_alpha kept: old-format LoKr only)."""

    def __init__(self, pipe, path, linear_alpha=None, peft_format=True):
        self.modules = dict(pipe.transformer.named_modules())
        self.pairs = {}
        for key, value in load_file(path).items():
            name = key.removeprefix("diffusion_model.")
            for suffix, role in ((".lora_A.weight", "down"), (".lora_B.weight", "up")):
                if name.endswith(suffix):
                    self.pairs.setdefault(name[: -len(suffix)], {})[role] = value.float()
        rank = next(iter(self.pairs.values()))["down"].shape[0]
        alpha = rank if peft_format or linear_alpha is None else linear_alpha
        self.scale = alpha / rank
        self.saved, self.hooks = {}, []

    def merge_in(self, multiplier):
        for name, p in self.pairs.items():
            linear = self.modules[name]
            self.saved[name] = linear.weight.data.clone()
            state = linear.state_dict()
            weight = linear.weight.float()
            weight = weight + multiplier * (p["up"] @ p["down"]) * self.scale
            state["weight"] = weight.to(self.saved[name].dtype)
            linear.load_state_dict(state)  # as merge_in writes back: a copy into the module's own storage

    def unmerged(self, multiplier, device="cpu"):
        """The float32 branch on `device`, where the network is (`force_to` the training device)."""
        scale = torch.tensor(self.scale, dtype=torch.float32, device=device)
        mult = torch.tensor((multiplier,)).to(device, dtype=torch.float32)
        for name, pair in self.pairs.items():
            p = {role: weight.to(device) for role, weight in pair.items()}

            def hook(module, inputs, output, p=p):
                lx = F.linear(F.linear(inputs[0].to(torch.float32), p["down"]), p["up"]) * scale
                lx = lx * mult.unsqueeze(-1).unsqueeze(-1) if lx.dim() == 3 else lx * mult
                return output + lx.to(output.dtype)
            self.hooks.append(self.modules[name].register_forward_hook(hook))

    def remove(self):
        for h in self.hooks:
            h.remove()
        for name, w in self.saved.items():
            self.modules[name].weight.data.copy_(w)


def trainer_generate(pipe, prompt, negative, vae_images, text_images, width, height, steps, guidance, seed,
                     do_cfg_norm=False, low_vram=False):
    device, dtype = pipe._execution_device, pipe.transformer.dtype
    width, height = int(width // 32 * 32), int(height // 32 * 32)
    generator = torch.manual_seed(seed)
    with torch.no_grad():
        shared = [TF.to_tensor(img).unsqueeze(0).to(device, dtype=dtype) for img in text_images]
        pe, pm = trainer_prompt_embeds(pipe, prompt, shared, device)
        ne, nm = trainer_prompt_embeds(pipe, negative, shared, device)
        if low_vram:
            pipe.vae.enable_tiling()
        try:
            pe, pm = pipe.encode_prompt(prompt=None, prompt_embeds=pe, prompt_embeds_mask=pm.to(device, dtype=torch.int64), device=device)
            ne, nm = pipe.encode_prompt(prompt=None, prompt_embeds=ne, prompt_embeds_mask=nm.to(device, dtype=torch.int64), device=device)
            sizes = [calculate_dimensions(VAE_IMAGE_SIZE, img.size[0] / img.size[1]) for img in vae_images]
            pixels = [pipe.image_processor.preprocess(img, h, w).unsqueeze(2) for img, (w, h) in zip(vae_images, sizes)]
            latents, image_latents = pipe.prepare_latents(pixels, 1, pipe.transformer.config.in_channels // 4, height, width, pe.dtype, device, generator, None)
            cell = pipe.vae_scale_factor * 2
            img_shapes = [[(1, height // cell, width // cell), *[(1, h // cell, w // cell) for w, h in sizes]]]
            scheduler = FlowMatchEulerDiscreteScheduler(**AITK_SCHEDULER)
            mu = calculate_shift(latents.shape[1], 256, 8192, 0.5, 0.9)
            timesteps, _ = retrieve_timesteps(scheduler, steps, device, sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
            scheduler.set_begin_index(0)
            for t in timesteps:
                x = torch.cat([latents, image_latents], dim=1)
                ts = t.expand(1).to(latents.dtype) / 1000
                kw = {"hidden_states": x, "timestep": ts, "guidance": None, "img_shapes": img_shapes, "attention_kwargs": {}, "return_dict": False}
                cond = pipe.transformer(encoder_hidden_states=pe, encoder_hidden_states_mask=pm, **kw)[0][:, : latents.size(1)]
                if guidance > 1:
                    neg = pipe.transformer(encoder_hidden_states=ne, encoder_hidden_states_mask=nm, **kw)[0][:, : latents.size(1)]
                    comb = neg + guidance * (cond - neg)
                    if do_cfg_norm:
                        comb = comb * (torch.norm(cond, dim=-1, keepdim=True) / torch.norm(comb, dim=-1, keepdim=True))
                    cond = comb
                latents = scheduler.step(cond, t, latents, return_dict=False)[0]
            latents = pipe._unpack_latents(latents, height, width, pipe.vae_scale_factor).to(pipe.vae.dtype)
            mean = torch.tensor(pipe.vae.config.latents_mean).view(1, 16, 1, 1, 1).to(latents.device, latents.dtype)
            inv_std = 1.0 / torch.tensor(pipe.vae.config.latents_std).view(1, 16, 1, 1, 1).to(latents.device, latents.dtype)
            decoded = pipe.vae.decode(latents / inv_std + mean, return_dict=False)[0][:, :, 0]
        finally:
            if low_vram:
                pipe.vae.disable_tiling()
    return decoded
