"""Runtime for a run: loads each base model once, sets its LoRA state per case, renders with the wiring.

This is the only bridge from the pure side (cases) to torch; the session imports it lazily.
"""

from __future__ import annotations

import gc
import os
import time
from dataclasses import dataclass

import torch

from .images import open_rgb
from .loading import FusedLora, dtype_for, load_pipeline, locate
from .resolve import Case
from .wiring import ReferenceWiring, Rendered, Request


@dataclass
class _Loaded:
    key: tuple[str, str]
    pipe: object
    lora: FusedLora
    wiring: ReferenceWiring


class Engine:
    """Renders cases on one device; the base model stays loaded while consecutive cases share it."""

    def __init__(self, device: str = "cpu", base_model_override: str | None = None):
        if device.startswith("cuda") and not torch.cuda.is_available():
            from .errors import ModelLoadError

            raise ModelLoadError(f"device {device!r} asked for, but torch sees no CUDA device", "run with --device cpu")
        self.device = device
        self.base_model_override = base_model_override
        self._loaded: _Loaded | None = None

    def base_of(self, case: Case) -> tuple[str, str]:
        if self.base_model_override:
            return self.base_model_override, os.getcwd()
        return case.base_model, case.base_dir

    def render(self, case: Case) -> Rendered:
        timings: dict[str, float] = {}
        loaded = self._ensure_model(self.base_of(case), timings)
        lora = case.loras[0] if case.loras else None
        timings.update(loaded.lora.apply(lora.path if lora else None, case.effective.lora_scale if lora else None))
        start = time.perf_counter()
        images = tuple(open_rgb(p, f"control image {i + 1}") for i, p in enumerate(case.effective.control_images))
        timings["load_inputs"] = time.perf_counter() - start
        eff = case.effective
        request = Request(
            prompt=eff.prompt,
            negative_prompt=str(eff.negative_prompt),
            width=eff.width,
            height=eff.height,
            steps=eff.steps,
            guidance_scale=eff.guidance_scale,
            seed=eff.seed,
            images=images,
        )
        rendered = loaded.wiring.render(request)
        rendered.timings = {**timings, **rendered.timings}
        return rendered

    def _ensure_model(self, base: tuple[str, str], timings: dict[str, float]) -> _Loaded:
        key = (locate(*base), self.device)
        if self._loaded is not None and self._loaded.key == key:
            return self._loaded
        self.close()
        start = time.perf_counter()
        pipe = load_pipeline(base[0], base[1], self.device)
        self._loaded = _Loaded(key=key, pipe=pipe, lora=FusedLora(pipe), wiring=ReferenceWiring(pipe))
        timings["model_load"] = time.perf_counter() - start
        return self._loaded

    def close(self) -> None:
        if self._loaded is None:
            return
        self._loaded = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def describe(self) -> dict[str, object]:
        """Device facts for the environment fingerprint."""
        info: dict[str, object] = {"device": self.device, "dtype": str(dtype_for(self.device)).replace("torch.", "")}
        if self.device.startswith("cuda"):
            index = torch.device(self.device).index or 0
            info["device_name"] = torch.cuda.get_device_name(index)
            info["compute_capability"] = ".".join(map(str, torch.cuda.get_device_capability(index)))
            info["peak_memory_gb"] = round(torch.cuda.max_memory_allocated(index) / 1e9, 2)
        else:
            info["device_name"] = "cpu"
            info["threads"] = torch.get_num_threads()
        return info
