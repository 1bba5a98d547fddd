"""Load a base model offline: the tiny model, a local diffusers folder, or an HF id already in the local cache.

The same `load_pipeline` serves the bundled tiny model and a real Qwen-Image-Edit-2511 checkpoint.
"""

from __future__ import annotations

import os

import torch

from parity.core.errors import ModelLoadError
from parity.models import DEFAULT_MODEL, get_model, part


def dtype_for(device: str) -> torch.dtype:
    """The reference server's dtype rule: float32 on CPU; bf16 on CUDA (float16 where bf16 is missing)."""
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def locate(base_model: str, base_dir: str, model_id: str = DEFAULT_MODEL) -> str:
    """A folder path for `tiny` (the model's own tiny model) and local folders; otherwise the value itself, taken
    as an HF id."""
    if base_model == "tiny":
        return str(part(model_id, "tiny").ensure_tiny())
    candidate = os.path.normpath(os.path.join(base_dir, os.path.expanduser(base_model)))
    if os.path.isdir(candidate):
        return candidate
    if base_model.startswith((".", "/", "~")):
        raise ModelLoadError(
            f"base model folder not found: {candidate}",
            "point base_model at a diffusers folder (it holds model_index.json)",
        )
    return base_model


def load_pipeline(
    base_model: str, base_dir: str, device: str, dtype: torch.dtype | None = None, model_id: str = DEFAULT_MODEL
):
    """The model's diffusers pipeline (QwenImageEditPlusPipeline for Qwen-Image-Edit-2511) from a folder or the
    local HF cache, on `device`, in the reference dtype (another `dtype` only where asked: `parity calibrate`
    measures how far the other precision moves a case)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import diffusers
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    source = locate(base_model, base_dir, model_id)
    pipeline_class = getattr(diffusers, get_model(model_id).pipeline)
    try:
        pipe = pipeline_class.from_pretrained(source, dtype=dtype or dtype_for(device), local_files_only=True)
    except (OSError, ValueError) as exc:
        where = "folder" if os.path.isdir(source) else "HF id (looked up in the local cache only)"
        raise ModelLoadError(
            f"cannot load base model {base_model!r} as a {where}: {str(exc).splitlines()[0]}",
            "use `tiny`, a local diffusers folder of Qwen-Image-Edit-2511, or an HF id downloaded beforehand "
            "on a machine with hub access (`hf download Qwen/Qwen-Image-Edit-2511`)",
        ) from None
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe
