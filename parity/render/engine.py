"""Runtime for a run: loads each model (id, base, offload mode) once while its cases run, sets its LoRA state per
case, renders a case with a wiring.

This is the only bridge from the pure side (cases, knobs) to torch; the session imports it lazily. Its rooms: the
memory policy (memory.py), the pool of loaded models (pool.py), the store of untouched weights (pristine.py), the
devices' peaks and facts (devices.py).
"""

from __future__ import annotations

import contextlib
import gc
import os
import time

import torch

from parity.cases import lorafile
from parity.core import offload as offloading
from parity.core.environment import reproducible_cpu_math
from parity.core.errors import CaseRunError, LoraRefused, QuantizationRefused
from parity.core.images import OpenedImages, encode_output
from parity.facts import quant
from parity.facts.case import Case
from parity.models import DEFAULT_MODEL, get_model
from parity.models.knobs import Knob, LoraMethod, RuntimeFacts, Wiring
from parity.render import adapter as adapting
from parity.render import pool as pooling
from parity.render import quantize as quantizing
from parity.render.cfg_parallel import CfgParallel
from parity.render.checkpoint import CheckpointWeights
from parity.render.devices import Devices
from parity.render.devices import check as check_devices
from parity.render.loading import check_placeable, dtype_for, locate, place, read_pipeline
from parity.render.lora import LoraState
from parity.render.memory import UNKEPT, MemoryPlan
from parity.render.pool import LoadedModel
from parity.render.pristine import PristineMissing, any_hooked


class Engine:
    """Renders cases on one device; the base model stays loaded while consecutive cases share it.

    `cfg_device`: a second device that runs every unconditional transformer pass at the same time as the
    conditional one, on a copy of the transformer (cfg_parallel); the outputs are the one-device outputs.
    """

    def __init__(self, device: str = "cpu", base_model_override: str | None = None, cfg_device: str | None = None,
                 dtype: torch.dtype | None = None, offload: str | None = None):
        check_devices(device, cfg_device)
        if device.startswith("cuda"):
            torch.cuda.init()  # the allocator's per-device state, before the first reset of its peak statistics
        else:
            reproducible_cpu_math()
        self.device, self.cfg_device = device, cfg_device
        self.dtype = dtype or dtype_for(device)  # the reference server's (calibrate alone asks for the other one)
        self.base_model_override = base_model_override
        self.offload_override = offload  # every case's offload mode, over its case file's
        self.devices = Devices(device, cfg_device, self.dtype)
        self.memory = MemoryPlan(device, self.base_of, lambda: pooling.POOL is not None)
        self._loaded: LoadedModel | None = None
        self.cfg = CfgParallel(device, cfg_device) if cfg_device is not None else None  # the second device's copy
        self._adopted = False
        self._fresh = None  # a second Renderer, with its own caches (render(fresh_caches=True))
        self.images = OpenedImages()  # the control images, opened once per loaded model
        self._copy_notes: list[str] = []  # said once, by the next case rendered

    def expect(self, cases: list[Case], diagnose: bool = False) -> None:
        """The run's plan, in order (the memory policy reads it). A case that needs another LoRA state than the
        plan foresaw makes the engine load the model again (exact, only slower)."""
        self.memory.expect(cases, diagnose)
        loaded = self._loaded
        if loaded is not None and self.base_model_override and loaded.lora.fused.path is None:  # adopted (benchmarks)
            loaded.lora.fused.keep = self.memory.keep(loaded.key[0], (self.base_model_override, os.getcwd()), loaded.checkpoint)

    def offload_of(self, case: Case) -> str:
        """The offload mode asked for a case: --offload, else its case file's."""
        return self.offload_override or case.offload

    def base_of(self, case: Case) -> tuple[str, str]:
        if self.base_model_override:
            return self.base_model_override, os.getcwd()
        return case.base_model, case.base_dir

    def facts(self, case: Case, timings: dict[str, float] | None = None) -> RuntimeFacts:
        """What the loaded model, the control images and the LoRA file tell about this case's knobs."""
        self.memory.asking = case
        loaded = self._ensure_model(case.model, self.base_of(case), timings if timings is not None else {}, self.offload_of(case))
        pipe = loaded.pipe
        paths = set(case.effective.control_images) | set(case.preview.text_images if case.preview else ())
        return RuntimeFacts(
            scheduler_config=get_model(case.model).scheduler_items(dict(pipe.scheduler.config)),
            zero_cond_t=bool(pipe.transformer.config.zero_cond_t),
            dtype=str(pipe.transformer.dtype).replace("torch.", ""),
            image_sizes={p: self.images(p).size for p in paths},
            **(lorafile.knob_facts(case.loras[0].path) if case.loras else {}),
            quant_libraries=tuple(quantizing.installed().items()) if _quantized(case) else (),
            quant_adapters=_adapters(case),
        )

    def loaded_lora(self):
        """What loading the LoRA on the model in hand showed (parity.render.lora.LoadedLora; None: none loaded)."""
        return self._loaded.lora.fused.loaded if self._loaded is not None else None

    def wirings(self, case: Case) -> tuple[Wiring, Wiring]:
        """The reference and the preview wiring of a case, with this model's facts."""
        facts, model = self.facts(case), get_model(case.model)
        return model.reference_wiring(case, facts), model.preview_wiring(case, facts)

    def render(self, case: Case, wiring: Wiring | None = None, fresh_caches: bool = False):
        """Render a case with a wiring (default: the reference wiring); the image is as that wiring saves it.
        `fresh_caches`: take text embeddings and control latents from a second set of caches, which starts empty
        (calibrate's repeat pass: each input is computed anew once, then shared by the pass's cases)."""
        if case.refused and (wiring is None or wiring.name == "reference"):
            raise CaseRunError(
                "the reference server refuses this request: " + "; ".join(case.refused) + " (the trainer rendered it)",
                "the served model cannot reproduce this preview; to compare the two, sample with values the server "
                "accepts (README, case file reference: each setting's server range)",
            )
        while True:
            timings: dict[str, float] = {}
            if self.devices.cuda:
                self.devices.start_case()
            facts = self.facts(case, timings)
            chosen = wiring or get_model(case.model).reference_wiring(case, facts)
            start = time.perf_counter()
            images = tuple(self.images(p) for p in case.effective.control_images)
            text_images = tuple(self.images(p) for p in chosen.get(Knob.TEXT_IMAGES, ()))
            timings["load_inputs"] = time.perf_counter() - start
            try:
                return self._render(case, chosen, facts, images, text_images, timings, fresh_caches)
            except (LoraRefused, QuantizationRefused):
                raise  # refused before it changed the model (or taken out again): it stays loaded (a reload costs minutes)
            except PristineMissing as missing:
                self.close(failed=True)  # the model is loaded again, and the case rendered on it
                self._copy_notes.append(self.memory.missed(missing))
            except BaseException:
                # Whatever failed (a LoRA that would not load, out of memory, an interrupt inside a fuse) may have
                # left the model half-changed: it is dropped, never handed on, and the next case loads it from disk.
                self.close(failed=True)
                raise

    def _render(self, case: Case, wiring: Wiring, facts: RuntimeFacts, images, text_images, timings, fresh_caches):
        loaded = self._loaded
        assert loaded is not None
        lora_path = case.loras[0].path if case.loras else None
        method = wiring.value(Knob.LORA_METHOD)
        timings.update(self._quantize(loaded, wiring, method, {a: path for a, path, _ in facts.quant_adapters}))
        timings.update(loaded.lora.apply(method, lora_path, wiring.value(Knob.LORA_SCALE), case.allow_partial_lora))
        if "lora_snapshot" in timings and loaded.lora.fused.untouched is not None:
            self._copy_notes.append(loaded.lora.fused.untouched.note(timings["lora_snapshot"], self.device, loaded.lora.fused.keep.restores))
        model = get_model(case.model)
        eff = case.effective
        width, height = wiring.value(Knob.SIZE)
        request = model.request(
            prompt=eff.prompt, negative_prompt=str(eff.negative_prompt), width=width, height=height, steps=eff.steps,
            guidance_scale=eff.guidance_scale, seed=eff.seed, images=images, text_images=text_images,
        )
        quantized = loaded.quant is not None and loaded.quant.transformer_on  # the replica copies the transformer only
        replica = self.cfg.for_render(loaded.lora.key, method, timings) if self.cfg is not None and not quantized else None
        renderer = self._fresh_renderer(loaded, case.model) if fresh_caches else loaded.renderer
        with loaded.quant.regime() if loaded.quant is not None else contextlib.nullcontext():
            rendered = renderer.render(request, model.render_knobs(wiring, facts), uncond_replica=replica)
        rendered.image = encode_output(rendered.image, wiring.value(Knob.OUTPUT))
        rendered.timings = {**timings, **rendered.timings}
        rendered.notes = self._notes(case, wiring, loaded, method, replica)
        rendered.offload = loaded.offload.mode
        if self.devices.cuda:
            rendered.peak_memory_by_device = self.devices.case_peaks()
            rendered.peak_memory_gb = rendered.peak_memory_by_device[self.device]
        return rendered

    def _notes(self, case: Case, wiring: Wiring, loaded: LoadedModel, method: LoraMethod, replica) -> list[str]:
        """What the report says beside this render: its inputs' notes, the LoRA's, the weight copy's, offload."""
        notes = self.images.notes((*case.effective.control_images, *wiring.get(Knob.TEXT_IMAGES, ())))
        notes += loaded.lora.notes + self._copy_notes
        self._copy_notes = []
        if loaded.quant is not None and loaded.quant.on:
            notes.append(loaded.quant.note())
        if self.cfg is not None and self.cfg.replica is not None and replica is None:
            notes.append(self.cfg.skipped_note(method, loaded.quant is not None and loaded.quant.transformer_on))
        offload_note = offloading.note(loaded.offload, self.devices.cuda)
        return notes + ([offload_note] if offload_note else [])

    def _quantize(self, loaded: LoadedModel, wiring: Wiring, method: LoraMethod, adapters: dict) -> dict[str, float]:
        """The trainer's quantized transformer and text encoder where the wiring replays them; the loaded ones
        otherwise. A quantized base takes only ai-toolkit's unmerged LoRA (knobs.TAKEN_WITH)."""
        asked = tuple(_replayed_value(wiring, knob) for knob in (Knob.QUANTIZATION, Knob.TEXT_ENCODER_QUANTIZATION))
        if loaded.quant is None and asked == ("none", "none"):
            return {}
        if asked[0] != "none" and method in (LoraMethod.DIFFUSERS_FUSE, LoraMethod.DIFFUSERS_ADAPTER):
            raise QuantizationRefused(
                f"a quantized transformer ({asked[0]}) takes the LoRA only as ai-toolkit's unmerged branch, not as {method.value}",
                "report this wiring: the diagnosis takes the LoRA application together with the quantization",
            )
        if any_hooked(loaded.pipe):
            raise QuantizationRefused(
                "the trainer's quantization is replayed on weights on the device, and under offload model or "
                "sequential they wait in host memory or behind hooks",
                "diagnose or draw previews with offload none (--offload none, or `offload: none` in the case file)",
            )
        if loaded.quant is None:
            loaded.quant = quantizing.Quantization(loaded.pipe, self.device)
        return loaded.quant.apply(*asked, before=lambda: loaded.lora.apply(LoraMethod.NONE, None, None), adapters=adapters)

    def _fresh_renderer(self, loaded: LoadedModel, model_id: str):
        if self._fresh is None or self._fresh.pipe is not loaded.pipe:
            self._fresh = get_model(model_id).renderer(loaded.pipe)
        return self._fresh

    def model(self, base_model: str = "tiny", base_dir: str = ".", model_id: str = DEFAULT_MODEL) -> LoadedModel:
        """The loaded model of a base (loaded now if it is not): its pipeline, LoRA state and caches."""
        return self._ensure_model(model_id, (base_model, base_dir), {}, self.offload_override or offloading.DEFAULT)

    def adopt(self, pipe, name: str, model_id: str = DEFAULT_MODEL, mode: str = offloading.DEFAULT) -> None:
        """Use a pipeline built in memory (benchmarks) as the base model `name`, placed in offload `mode` (none,
        model or sequential); cases then name it as override."""
        self.close()
        self.base_model_override = name
        choice = offloading.choose(mode, self.device)
        place(pipe, choice.mode, self.device)
        renderer = get_model(model_id).renderer(pipe)
        self._hold(LoadedModel((model_id, name, self.device), pipe, LoraState.for_pipe(pipe), renderer, choice))
        self._adopted = True

    def _hold(self, model: LoadedModel) -> LoadedModel:
        if self.cfg is not None:
            self.cfg.hold(model.pipe.transformer, model.offload.mode)
        self._loaded = model
        return model

    def _ensure_model(self, model_id: str, base: tuple[str, str], timings: dict[str, float], asked: str) -> LoadedModel:
        if self._loaded is not None and self._loaded.key == (model_id, base[0], self.device):
            return self._loaded  # adopted in memory
        key = (model_id, locate(*base, model_id), self.device, str(self.dtype), asked)
        if self._loaded is not None and self._loaded.key == key:
            return self._loaded
        check_placeable(asked, self.device)
        if self.cfg is not None and asked in ("model", "sequential"):
            self.cfg.refuse(asked)
        self.close()
        self._adopted = False
        start = time.perf_counter()
        model = pooling.POOL.take(key) if pooling.POOL is not None else None
        if model is None:
            pipe = read_pipeline(base[0], base[1], self.device, self.dtype, model_id)
            checkpoint = CheckpointWeights.of(pipe.transformer)  # stamped now: a later change of its files shows
            choice = self.memory.offload(asked, pipe, model_id, base, self.cfg is not None)
            place(pipe, choice.mode, self.device)  # as the server: the mode first, the LoRA later
            renderer = get_model(model_id).renderer(pipe)
            model = LoadedModel(key, pipe, LoraState.for_pipe(pipe), renderer, choice, checkpoint)
            timings["model_load"] = time.perf_counter() - start
            if pooling.POOL is not None:
                pooling.POOL.add(model)
        model.lora.fused.keep = self.memory.keep(model_id, base, model.checkpoint)
        if not model.lora.fused.keep.copy and model.lora.fused.path is None:
            self._copy_notes.append(UNKEPT)
        return self._hold(model)

    def close(self, failed: bool = False) -> None:
        """Let go of the loaded model and free its memory (`failed`: after CUDA ran out of memory, so that the
        next case reloads it cleanly). With a ModelPool the model is handed back instead, its LoRA removed."""
        self.images.clear()
        self._fresh = None
        if self._loaded is None:
            return
        loaded, self._loaded = self._loaded, None
        if self.cfg is not None:
            self.cfg.close()
        if pooling.POOL is not None and not self._adopted:
            if not failed and pooling.POOL.keep(loaded):
                return
            pooling.POOL.drop(loaded.key)
        del loaded
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def describe(self) -> dict[str, object]:
        """Device facts for the environment fingerprint."""
        return self.devices.describe()


def _quantized(case: Case) -> bool:
    return bool(case.training.quantize or case.training.quantize_te)


def _adapters(case: Case) -> tuple[tuple[str, str | None, str | None], ...]:
    """The accuracy recovery adapter the case's qtype names: (as written, its file here or None, why the trainer's
    network would not load that file as parity replays it, or None)."""
    t = case.training
    adapter = quant.QType.parse(t.qtype).adapter if t.quantize and t.qtype else None
    if not adapter:
        return ()
    path = adapting.locate(adapter, case.base_dir)
    return ((adapter, path, adapting.problem(path) if path else None),)


def _replayed_value(wiring: Wiring, knob: Knob) -> str:
    """A part's qtype where the wiring quantizes it and parity replays that ("none" otherwise: an unreplayed qtype
    is shown in the knob table, never rendered)."""
    setting = next((s for k, s in wiring.settings if k is knob), None)
    if setting is None or not setting.replayable or setting.value in (None, "none"):
        return "none"
    return str(setting.value)
