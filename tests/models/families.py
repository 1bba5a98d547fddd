"""The three Qwen pipelines as the model-contract tests drive them (tests/models/test_contract.py): a case file of the
contract's form, the reference server's per-prompt path and the trainer's sampler (the independent oracles in tests/),
the knobs an ablation plants, and the inputs the sensitivity test moves. Keyed by the diffusers pipeline class a Model
names, so a new model of a known pipeline needs nothing here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import edit_oracle
import image_oracle
import oracle
import preview_oracle

from parity.models.knobs import Knob
from parity.models.model import Model

# Two samples: the first at another scale than the second (a scale switch on the server), at least one picture each
# where the pipeline takes pictures; 64x64, 2 steps (the knobs act at any count), guidance 4 against a negative.
EDIT_PLUS_SUITE = """
loras: [{path: loras/tiny.safetensors}]
sample:
  width: 64
  height: 64
  sample_steps: 2
  guidance_scale: 4
  neg: "blurry"
  seed: 5
  samples:
    - {name: scaled, prompt: "sks a hat", ctrl_img_1: inputs/person.png, ctrl_img_2: inputs/hat.png, network_multiplier: 0.7}
    - {name: plain, prompt: "sks a square", ctrl_img_1: inputs/landscape.png}
"""
# The 2:1 landscape picture: non-square (the server's transposed text-image size) and not the output size (the first
# resize's kernel shows); its ~1 MP encode is cached by the engine's pooled model for the tests after.
EDIT_SUITE = EDIT_PLUS_SUITE.replace("ctrl_img_1: inputs/person.png, ctrl_img_2: inputs/hat.png", "ctrl_img: inputs/landscape.png").replace(
    "ctrl_img_1: inputs/landscape.png", "ctrl_img: inputs/landscape.png"
)
IMAGE_SUITE = EDIT_PLUS_SUITE.replace(", ctrl_img_1: inputs/person.png, ctrl_img_2: inputs/hat.png", "").replace(
    ", ctrl_img_1: inputs/landscape.png", ""
).replace("width: 64", "width: 80")  # 80: the server floors to 16 (80), the trainer to 32 (64)

# The ablation's case: most knobs differ. The LoRA entry's multiplier is the server's request scale (1.0); the trainer
# drew sample 0 at its own 0.7 (the job's linear_alpha 2 at rank 4 is not a difference: alpha = rank). A single-file
# transformer turns the trainer's zero_cond_t off; JPEG previews; low_vram tiles the trainer's VAE.
EDIT_PLUS_ABLATION = """
loras: [{path: loras/tiny.safetensors, network_multiplier: 1.0}]
training: {low_vram: true, rank: 4, alpha: 2, do_cfg_norm: false, transformer_single_file: true}
sample:
  width: 64
  height: 64
  sample_steps: 3
  guidance_scale: 4
  neg: ""
  format: jpg
  seed: 9
  samples:
    - {prompt: "a hat", ctrl_img: inputs/landscape.png, network_multiplier: 0.7}
    - {prompt: "b", ctrl_img_1: inputs/square.png}
"""
# No low_vram here: VAE tiling would add two ~1 MP encodes and is Edit-Plus's knob, the same code.
EDIT_ABLATION = EDIT_PLUS_ABLATION.replace("low_vram: true, ", "").replace("sample_steps: 3", "sample_steps: 2").replace(
    "ctrl_img_1: inputs/square.png", "ctrl_img: inputs/landscape.png"
)
# 272x64: the server floors to 16 (272), the trainer to 32 (256); over 256 px wide the VAE tiles its decode when
# tiling is on (the trainer's low_vram), so that knob moves pixels too.
IMAGE_ABLATION = EDIT_PLUS_ABLATION.replace("width: 64", "width: 272").replace(", ctrl_img: inputs/landscape.png", "").replace(
    ", ctrl_img_1: inputs/square.png", ""
)


@dataclass(frozen=True)
class Family:
    suite: str
    ablation: str
    # Knobs whose planted preview value shows in 8-bit pixels on any CPU (LoRA application does not: in float32 the
    # fused delta and ai-toolkit's branch differ by rounding only; it is planted in bf16 on a GPU, tests/render/test_gpu.py)
    planted: tuple[Knob, ...]
    server: Callable  # (pipe, effective settings, control images) -> the stock call's "pt" output
    trainer: Callable  # (pipe, case, VAE images, text-encoder images) -> the trainer's "pt" output


def _edit_plus_server(pipe, eff, images):
    return oracle.server_generate(pipe, eff.prompt, eff.negative_prompt, images, eff.width, eff.height, eff.steps, eff.guidance_scale, eff.seed)


def _edit_server(pipe, eff, images):
    (image,) = images
    return edit_oracle.server_generate(pipe, eff.prompt, eff.negative_prompt, image, eff.width, eff.height, eff.steps, eff.guidance_scale, eff.seed)


def _image_server(pipe, eff, images):
    return image_oracle.server_generate(pipe, eff.prompt, eff.negative_prompt, eff.width, eff.height, eff.steps, eff.guidance_scale, eff.seed)


def _edit_plus_trainer(pipe, case, vae_images, text_images):
    eff, pre = case.effective, case.preview
    decoded = preview_oracle.trainer_generate(
        pipe, eff.prompt, pre.negative_prompt, list(vae_images), list(text_images), pre.width, pre.height, eff.steps,
        eff.guidance_scale, eff.seed, case.do_cfg_norm, case.training.low_vram,
    )
    return pipe.image_processor.postprocess(decoded, output_type="pt")


def _edit_trainer(pipe, case, vae_images, text_images):
    eff, pre = case.effective, case.preview
    (image,) = text_images
    return edit_oracle.trainer_generate(pipe, eff.prompt, pre.negative_prompt, image, pre.width, pre.height, eff.steps, eff.guidance_scale, eff.seed)


def _image_trainer(pipe, case, vae_images, text_images):
    eff, pre = case.effective, case.preview
    return image_oracle.trainer_generate(pipe, eff.prompt, pre.negative_prompt, pre.width, pre.height, eff.steps, eff.guidance_scale, eff.seed)


FAMILIES = {
    "QwenImageEditPlusPipeline": Family(
        EDIT_PLUS_SUITE, EDIT_PLUS_ABLATION,
        (Knob.CFG_RENORM, Knob.SCHEDULER, Knob.LORA_SCALE, Knob.TEXT_IMAGES, Knob.TEXT_IMAGE_SIZE, Knob.NEGATIVE_IMAGES,
         Knob.VAE_TILING, Knob.ZERO_COND_T, Knob.OUTPUT),
        _edit_plus_server, _edit_plus_trainer,
    ),
    "QwenImageEditPipeline": Family(
        EDIT_SUITE, EDIT_ABLATION, (Knob.VAE_IMAGES, Knob.TEXT_IMAGE_SIZE, Knob.LORA_SCALE), _edit_server, _edit_trainer,
    ),
    "QwenImagePipeline": Family(
        IMAGE_SUITE, IMAGE_ABLATION, (Knob.SIZE, Knob.SCHEDULER, Knob.LORA_SCALE, Knob.VAE_TILING, Knob.OUTPUT),
        _image_server, _image_trainer,
    ),
}


def family(model: Model) -> Family:
    return FAMILIES[model.pipeline]
