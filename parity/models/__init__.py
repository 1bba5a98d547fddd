"""Model registry: each supported model id and the reference server's fixed rules for it."""

from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    """What the reference server (ai-toolkit-inference) fixes for one model id."""

    id: str
    description: str
    hub_id: str
    size_divisor: int
    default_steps: int
    default_guidance: float
    default_size: int
    default_neg: str
    default_seed: int
    default_multiplier: float
    requires_control_image: bool
    max_control_images: int
    max_loras: int
    server_source: str


QWEN_IMAGE_EDIT_PLUS_2511 = ModelSpec(
    id="qwen_image_edit_plus_2511",
    description="Qwen-Image-Edit-2511 through diffusers QwenImageEditPlusPipeline, LoRA fused",
    hub_id="Qwen/Qwen-Image-Edit-2511",
    size_divisor=32,
    default_steps=25,
    default_guidance=4.0,
    default_size=1024,
    default_neg="",
    default_seed=42,
    default_multiplier=1.0,
    requires_control_image=True,
    max_control_images=3,
    max_loras=1,
    server_source="runcomfy-com/ai-toolkit-inference src/pipelines/qwen_image.py QwenImageEditPlus2511Pipeline",
)

MODELS: dict[str, ModelSpec] = {spec.id: spec for spec in (QWEN_IMAGE_EDIT_PLUS_2511,)}


def did_you_mean(value: str, choices: list[str] | tuple[str, ...]) -> str:
    """A ' (did you mean 'x'?)' hint for a misspelt name, or '' when nothing is close."""
    close = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def get_model(model_id: str) -> ModelSpec:
    """The spec for a model id; KeyError with a suggestion for an unknown one."""
    try:
        return MODELS[model_id]
    except KeyError:
        raise KeyError(
            f"unknown model '{model_id}'{did_you_mean(model_id, tuple(MODELS))}; "
            f"supported: {', '.join(MODELS)}"
        ) from None
