"""Load a base model offline (tiny, local diffusers folder or cached HF id) and keep its LoRA fused exactly.

The same `load_pipeline` serves the bundled tiny model and a real Qwen-Image-Edit-2511 checkpoint. LoRAs are
loaded and fused the way ai-toolkit-inference does it (`load_lora_weights(dir, weight_name=file,
adapter_name="lora")`, then `fuse_lora(lora_scale=...)`); before a different scale is fused the targeted
weights are restored from a pristine copy, so a case's weights never depend on the cases run before it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch

from .errors import ModelLoadError

ADAPTER = "lora"
_LORA_SUFFIXES = (".lora_A.weight", ".lora_B.weight", ".lora_down.weight", ".lora_up.weight", ".alpha")


def dtype_for(device: str) -> torch.dtype:
    """The reference server's dtype rule: float32 on CPU; bf16 on CUDA (float16 where bf16 is missing)."""
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def locate(base_model: str, base_dir: str) -> str:
    """A folder path for `tiny` and local folders; otherwise the value itself, taken as an HF id."""
    if base_model == "tiny":
        from .tiny import ensure_tiny

        return str(ensure_tiny())
    candidate = os.path.normpath(os.path.join(base_dir, os.path.expanduser(base_model)))
    if os.path.isdir(candidate):
        return candidate
    if base_model.startswith((".", "/", "~")):
        raise ModelLoadError(
            f"base model folder not found: {candidate}",
            "point base_model at a diffusers folder (it holds model_index.json)",
        )
    return base_model


def load_pipeline(base_model: str, base_dir: str, device: str):
    """QwenImageEditPlusPipeline from a folder or the local HF cache, on `device`, in the reference dtype."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from diffusers import QwenImageEditPlusPipeline
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    source = locate(base_model, base_dir)
    try:
        pipe = QwenImageEditPlusPipeline.from_pretrained(source, dtype=dtype_for(device), local_files_only=True)
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


def lora_module_names(path: str) -> set[str]:
    """Transformer module names an ai-toolkit / diffusers LoRA file targets."""
    from safetensors import safe_open

    names = set()
    with safe_open(path, framework="pt") as fh:
        for key in fh.keys():  # noqa: SIM118 (safe_open is not a dict)
            for suffix in _LORA_SUFFIXES:
                if key.endswith(suffix):
                    name = key[: -len(suffix)]
                    for prefix in ("diffusion_model.", "transformer."):
                        name = name.removeprefix(prefix)
                    names.add(name)
    return names


@dataclass
class _Pristine:
    weights: dict[str, torch.Tensor]
    biases: dict[str, torch.Tensor]


class FusedLora:
    """Which LoRA a pipeline holds and at which scale it is fused; every fuse starts from pristine weights."""

    def __init__(self, pipe):
        self.pipe = pipe
        self.path: str | None = None
        self.scale: float | None = None
        self._pristine: _Pristine | None = None

    def apply(self, path: str | None, scale: float | None) -> dict[str, float]:
        """Make the pipeline's weights those of a fresh `load → fuse(scale)`; returns stage timings."""
        timings: dict[str, float] = {}
        if path != self.path:
            self._drop()
            if path is not None:
                start = time.perf_counter()
                self._load(path)
                timings["lora_load"] = time.perf_counter() - start
        if path is not None and scale != self.scale:
            start = time.perf_counter()
            if self.scale is not None:
                self._restore()
            self.pipe.fuse_lora(adapter_names=[ADAPTER], lora_scale=scale)
            self.scale = scale
            _sync(self.pipe)
            timings["lora_fuse"] = time.perf_counter() - start
        return timings

    def _load(self, path: str) -> None:
        if not path.endswith(".safetensors"):
            raise ModelLoadError(f"LoRA is not a .safetensors file: {path}", "use the .safetensors file ai-toolkit saved")
        wanted = lora_module_names(path)
        folder, name = os.path.split(path)
        try:
            self.pipe.load_lora_weights(folder, weight_name=name, adapter_name=ADAPTER, local_files_only=True)
        except (ValueError, KeyError, RuntimeError, OSError) as exc:
            raise ModelLoadError(
                f"LoRA {path} could not be loaded: {str(exc).splitlines()[0]}",
                "check that it is a LoRA for Qwen-Image-Edit (ai-toolkit or diffusers key format)",
            ) from None
        wrapped = self._wrapped()
        missing = sorted(wanted - set(wrapped))
        if missing or not wrapped:
            self.pipe.unload_lora_weights()
            shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
            raise ModelLoadError(
                f"LoRA {path}: {len(missing)} of {len(wanted)} target modules match nothing in the transformer ({shown})",
                "the LoRA was trained for another model or saved with unknown key names; an unmatched LoRA would "
                "silently leave the base model unchanged",
            )
        self.path = path
        self._pristine = self._snapshot(wrapped)

    def _wrapped(self) -> dict[str, torch.nn.Module]:
        from peft.tuners.tuners_utils import BaseTunerLayer

        return {name: m for name, m in self.pipe.transformer.named_modules() if isinstance(m, BaseTunerLayer)}

    def _snapshot(self, wrapped: dict[str, torch.nn.Module]) -> _Pristine:
        """Copies of the weights a fuse changes; on the model's device, else in pinned CPU memory."""
        weights, biases = {}, {}
        for name, module in wrapped.items():
            base = module.get_base_layer()
            weights[name] = _copy(base.weight.data)
            if getattr(base, "bias", None) is not None:
                biases[name] = _copy(base.bias.data)
        return _Pristine(weights, biases)

    def _restore(self) -> None:
        """Back to the state right after loading: pristine base weights and PEFT's own scaling (alpha / r).

        diffusers' fuse_lora(lora_scale=s) multiplies each layer's PEFT scaling by s in place and unfuse_lora()
        does not undo it, so unfuse -> fuse(t) fuses at s*t (t == 1.0: still at s). Resetting the scaling here
        is what makes a later fuse equal a fresh one.
        """
        self.pipe.unfuse_lora()
        assert self._pristine is not None
        for name, module in self._wrapped().items():
            base = module.get_base_layer()
            base.weight.data.copy_(self._pristine.weights[name])
            if name in self._pristine.biases:
                base.bias.data.copy_(self._pristine.biases[name])
            module.unscale_layer()
        self.scale = None

    def _drop(self) -> None:
        if self.path is None:
            return
        if self.scale is not None:
            self._restore()
        self.pipe.unload_lora_weights()
        self.path, self.scale, self._pristine = None, None, None


def _copy(tensor: torch.Tensor) -> torch.Tensor:
    if tensor.device.type == "cuda":
        try:
            return tensor.clone()
        except torch.cuda.OutOfMemoryError:
            return tensor.to("cpu").pin_memory()
    return tensor.clone()


def _sync(pipe) -> None:
    if torch.cuda.is_available() and pipe.device.type == "cuda":
        torch.cuda.synchronize(pipe.device)
