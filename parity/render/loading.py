"""Load a base model offline: the tiny model, a local diffusers folder, or an HF id already in the local cache, and
place it as one of the server's offload modes.

The same `read_pipeline` + `place` serve the bundled tiny model and a real checkpoint.
"""

from __future__ import annotations

import os

import torch

from parity.core.errors import CaseRunError, ModelLoadError
from parity.models import DEFAULT_MODEL, get_model


def dtype_for(device: str) -> torch.dtype:
    """The reference server's dtype rule: float32 on CPU; bf16 on CUDA (float16 where bf16 is missing)."""
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def locate(base_model: str, base_dir: str, model_id: str = DEFAULT_MODEL) -> str:
    """A folder path for `tiny` (the model's own tiny model) and local folders; otherwise the value itself, taken
    as an HF id."""
    if base_model == "tiny":
        return str(get_model(model_id).ensure_tiny())
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
    """The model's diffusers pipeline on `device` with every component there (offload none)."""
    pipe = read_pipeline(base_model, base_dir, device, dtype, model_id)
    place(pipe, "none", device)
    return pipe


def read_pipeline(
    base_model: str, base_dir: str, device: str, dtype: torch.dtype | None = None, model_id: str = DEFAULT_MODEL
):
    """The model's diffusers pipeline (QwenImageEditPlusPipeline for Qwen-Image-Edit-2511) from a folder or the
    local HF cache, still on the CPU as `from_pretrained` leaves it (the server applies its offload mode next), in
    the reference dtype of `device` (another `dtype` only where asked: `parity calibrate` measures how far the
    other precision moves a case)."""
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
            f"use `tiny`, a local diffusers folder of the checkpoint `model: {model_id}` stands for, or an HF id "
            "downloaded beforehand on a machine with hub access (`hf download <id>`)",
        ) from None
    pipe.set_progress_bar_config(disable=True)
    return pipe


def place(pipe, mode: str, device: str) -> None:
    """Apply one of the server's offload modes, as its `_apply_offload_mode` does before the LoRA is loaded:
    `pipe.to(device)`, or diffusers' model or sequential CPU offload onto `device` (an accelerator only: diffusers
    refuses both on a machine without one, and so does the server)."""
    check_placeable(mode, device)
    if mode == "none":
        pipe.to(device)
    elif mode == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif mode == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        raise ValueError(f"unknown offload mode {mode!r}")


def check_placeable(mode: str, device: str) -> None:
    """CaseRunError, before anything is loaded, for an offload mode the device cannot run."""
    if mode not in ("none", "auto") and not device.startswith("cuda"):
        raise CaseRunError(
            f"offload {mode} needs a GPU: diffusers moves the weights between host memory and an accelerator, and "
            f"refuses the mode without one (so does the reference server); this run is on {device}",
            "set `offload: none` (or `auto`) in the case file, or run with --offload none, or on a GPU with "
            "--device cuda",
        )


def weight_bytes(pipe) -> dict[str, int]:
    """Bytes of each torch component's parameters and buffers (what a mode moves to the GPU)."""
    sizes = {}
    for name, component in pipe.components.items():
        if isinstance(component, torch.nn.Module):
            tensors = (*component.parameters(), *component.buffers())
            sizes[name] = sum(t.numel() * t.element_size() for t in tensors)
    return sizes


def device_budget(device: str) -> int:
    """Bytes this process may still take on a GPU: what the device has free, within the per-process cap
    (`torch.cuda.set_per_process_memory_fraction`), counting this process's cached but unused memory as free."""
    index = torch.device(device).index or 0
    free, total = torch.cuda.mem_get_info(index)
    allocated, reserved = torch.cuda.memory_allocated(index), torch.cuda.memory_reserved(index)
    fraction = torch.cuda.get_per_process_memory_fraction(index) if hasattr(torch.cuda, "get_per_process_memory_fraction") else 1.0
    return int(min(free + reserved - allocated, total * fraction - allocated))
