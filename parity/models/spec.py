"""What a model package declares about its model for the resolver: torch-free, read before anything renders."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    """The reference server's fixed rules for one model id (those the resolver reads) and where the rest lives."""

    id: str
    package: str  # the model package: size rules, knobs, wiring, denoise loop, tiny model
    pipeline: str  # the diffusers pipeline class the reference server loads the checkpoint with
    checkpoint: str  # the HF id of the base model the reference server loads (its CONFIG.base_model)
    server_class: str  # the reference server's pipeline class for this id (src/pipelines/qwen_image.py)
    size_divisor: int  # the server floors width and height to a multiple of this
    default_neg: str  # the server's negative prompt when a request has none
    requires_control_image: bool
    max_control_images: int
    max_loras: int
    # ai-toolkit's `has_multiple_control_images` for the trainer's arch: True (Edit-Plus) hands its text encoder
    # every control image; False (Qwen-Image-Edit) the first one only, and its VAE only the sample's `ctrl_img`
    trainer_multiple_control_images: bool = True
