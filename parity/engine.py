"""Runtime for a run: loads each base model once, sets its LoRA state per case, renders a case with a wiring.

This is the only bridge from the pure side (cases, knobs) to torch; the session imports it lazily.
"""

from __future__ import annotations

import gc
import os
import time
from dataclasses import dataclass

import torch
from PIL import Image

from .images import encode_output, open_with_notes
from .knobs import Knob, LoraMethod, RuntimeFacts, Wiring, preview_wiring, reference_wiring, scheduler_items
from .loading import dtype_for, load_pipeline, locate
from .lora import LoraState
from .resolve import Case
from .wiring import Rendered, Renderer, RenderKnobs, Request


@dataclass
class _Loaded:
    key: tuple[str, str]
    pipe: object
    lora: LoraState
    renderer: Renderer
    replica: object = None  # cfg_parallel.UncondReplica on the second device, when asked for


class Engine:
    """Renders cases on one device; the base model stays loaded while consecutive cases share it.

    `cfg_device`: a second device that runs every unconditional transformer pass at the same time as the
    conditional one, on a copy of the transformer (cfg_parallel); the outputs are the one-device outputs.
    """

    def __init__(self, device: str = "cpu", base_model_override: str | None = None, cfg_device: str | None = None):
        from .errors import ModelLoadError

        for name in (device, cfg_device):
            if name is not None and name.startswith("cuda") and not torch.cuda.is_available():
                raise ModelLoadError(f"device {name!r} asked for, but torch sees no CUDA device", "run with --device cpu")
        if cfg_device is not None and device.startswith("cuda") and torch.device(cfg_device) == torch.device(device):
            raise ModelLoadError(
                f"CFG-parallel device {cfg_device!r} is the main device {device!r}",
                "name a second GPU (e.g. --device cuda:0 --cfg-device cuda:1)",
            )
        if device.startswith("cuda"):
            torch.cuda.init()  # the allocator's per-device state, before the first reset of its peak statistics
        self.device = device
        self.cfg_device = cfg_device
        self.base_model_override = base_model_override
        self._loaded: _Loaded | None = None
        self._images: dict[str, Image.Image] = {}
        self._image_notes: dict[str, list[str]] = {}

    def base_of(self, case: Case) -> tuple[str, str]:
        if self.base_model_override:
            return self.base_model_override, os.getcwd()
        return case.base_model, case.base_dir

    def facts(self, case: Case, timings: dict[str, float] | None = None) -> RuntimeFacts:
        """What the loaded model and the control images tell about this case's knobs."""
        loaded = self._ensure_model(self.base_of(case), timings if timings is not None else {})
        pipe = loaded.pipe
        paths = set(case.effective.control_images) | set(case.preview.text_images if case.preview else ())
        return RuntimeFacts(
            scheduler_config=scheduler_items(dict(pipe.scheduler.config)),
            zero_cond_t=bool(pipe.transformer.config.zero_cond_t),
            dtype=str(pipe.transformer.dtype).replace("torch.", ""),
            image_sizes={p: self._image(p).size for p in paths},
            lora_file_dtype=_file_dtype(case.loras[0].path) if case.loras else None,
        )

    def wirings(self, case: Case) -> tuple[Wiring, Wiring]:
        """The reference and the preview wiring of a case, with this model's facts."""
        facts = self.facts(case)
        return reference_wiring(case, facts), preview_wiring(case, facts)

    def render(self, case: Case, wiring: Wiring | None = None) -> Rendered:
        """Render a case with a wiring (default: the reference wiring); the image is as that wiring saves it."""
        timings: dict[str, float] = {}
        cuda = self.device.startswith("cuda")
        if cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        facts = self.facts(case, timings)
        wiring = wiring or reference_wiring(case, facts)
        loaded = self._loaded
        assert loaded is not None
        lora_path = case.loras[0].path if case.loras else None
        timings.update(
            loaded.lora.apply(
                wiring.value(Knob.LORA_METHOD), lora_path, wiring.value(Knob.LORA_SCALE), case.allow_partial_lora
            )
        )
        start = time.perf_counter()
        images = tuple(self._image(p) for p in case.effective.control_images)
        text_images = tuple(self._image(p) for p in wiring.value(Knob.TEXT_IMAGES))
        timings["load_inputs"] = time.perf_counter() - start
        eff = case.effective
        width, height = wiring.value(Knob.SIZE)
        request = Request(
            prompt=eff.prompt,
            negative_prompt=str(eff.negative_prompt),
            width=width,
            height=height,
            steps=eff.steps,
            guidance_scale=eff.guidance_scale,
            seed=eff.seed,
            images=images,
            text_images=text_images,
        )
        replica = self._replica_for(loaded, wiring, timings)
        rendered = loaded.renderer.render(request, render_knobs(wiring, facts), uncond_replica=replica)
        rendered.image = encode_output(rendered.image, wiring.value(Knob.OUTPUT))
        rendered.timings = {**timings, **rendered.timings}
        rendered.notes = [n for p in dict.fromkeys((*case.effective.control_images, *wiring.value(Knob.TEXT_IMAGES))) for n in self._image_notes.get(p, [])]
        rendered.notes += loaded.lora.notes
        if loaded.replica is not None and replica is None:
            rendered.notes.append(
                f"CFG-parallel not used for this render: ai-toolkit's unmerged LoRA branch runs as forward hooks on "
                f"{self.device} only; both passes ran there"
            )
        if cuda:
            rendered.peak_memory_gb = round(torch.cuda.max_memory_allocated(self.device) / 1e9, 3)
        return rendered

    def adopt(self, pipe, name: str) -> None:
        """Use a pipeline built in memory (benchmarks) as the base model `name`; cases then name it as override."""
        self.close()
        self.base_model_override = name
        self._loaded = self._hold((name, self.device), pipe)

    def _hold(self, key: tuple[str, str], pipe) -> _Loaded:
        replica = None
        if self.cfg_device is not None:
            from .cfg_parallel import UncondReplica

            replica = UncondReplica(pipe.transformer, self.cfg_device)
        return _Loaded(key=key, pipe=pipe, lora=LoraState.for_pipe(pipe), renderer=Renderer(pipe), replica=replica)

    def _replica_for(self, loaded: _Loaded, wiring: Wiring, timings: dict[str, float]):
        """The CFG-parallel copy, holding the weights the main transformer holds now; None when it cannot."""
        if loaded.replica is None or wiring.value(Knob.LORA_METHOD) is LoraMethod.AITK_UNMERGED:
            return None
        seconds = loaded.replica.follow(loaded.lora.key)
        if seconds is not None:
            timings["cfg_copy"] = seconds
        return loaded.replica

    def _image(self, path: str) -> Image.Image:
        if path not in self._images:
            self._images[path], self._image_notes[path] = open_with_notes(path, "control image")
        return self._images[path]

    def _ensure_model(self, base: tuple[str, str], timings: dict[str, float]) -> _Loaded:
        if self._loaded is not None and self._loaded.key == (base[0], self.device):
            return self._loaded  # adopted in memory
        key = (locate(*base), self.device)
        if self._loaded is not None and self._loaded.key == key:
            return self._loaded
        self.close()
        start = time.perf_counter()
        pipe = load_pipeline(base[0], base[1], self.device)
        self._loaded = self._hold(key, pipe)
        timings["model_load"] = time.perf_counter() - start
        return self._loaded

    def close(self) -> None:
        """Drop the loaded model and free its memory (also after CUDA ran out of memory: a clean reload)."""
        self._images.clear()
        self._image_notes.clear()
        if self._loaded is None:
            return
        if self._loaded.replica is not None:
            self._loaded.replica.close()
        self._loaded = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def describe(self) -> dict[str, object]:
        """Device facts for the environment fingerprint."""
        info: dict[str, object] = {"device": self.device, "dtype": str(dtype_for(self.device)).replace("torch.", "")}
        if self.cfg_device is not None:
            info["cfg_device"] = self.cfg_device
        if self.device.startswith("cuda"):
            index = torch.device(self.device).index or 0
            info["device_name"] = torch.cuda.get_device_name(index)
            info["compute_capability"] = ".".join(map(str, torch.cuda.get_device_capability(index)))
            info["peak_memory_gb"] = round(torch.cuda.max_memory_allocated(index) / 1e9, 2)
        else:
            info["device_name"] = "cpu"
            info["threads"] = torch.get_num_threads()
        return info


def render_knobs(wiring: Wiring, facts: RuntimeFacts) -> RenderKnobs:
    """The renderer's share of a wiring; values equal to the checkpoint's are left to the checkpoint."""
    renorm = wiring.value(Knob.CFG_RENORM)
    scheduler = wiring.value(Knob.SCHEDULER)
    zero_cond_t = wiring.value(Knob.ZERO_COND_T)
    return RenderKnobs(
        text_size=wiring.value(Knob.TEXT_IMAGE_SIZE),
        negative=wiring.value(Knob.NEGATIVE_IMAGES),
        cfg_renorm=renorm is not False,
        scheduler=None if scheduler == facts.scheduler_config else scheduler,
        vae_tiling=bool(wiring.value(Knob.VAE_TILING)),
        zero_cond_t=None if zero_cond_t == facts.zero_cond_t else zero_cond_t,
    )


def _file_dtype(path: str) -> str | None:
    try:
        from safetensors import safe_open

        with safe_open(path, framework="pt") as fh:
            for key in fh.keys():  # noqa: SIM118 (safe_open is not a dict)
                raw = str(fh.get_slice(key).get_dtype()).upper()
                return {"F16": "float16", "BF16": "bfloat16", "F32": "float32"}.get(raw, raw.lower())
    except (OSError, ValueError):
        return None
    return None

