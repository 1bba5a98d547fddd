"""Runtime for a run: loads each model (id, base, offload mode) once while its cases run, sets its LoRA state per
case, renders a case with a wiring.

This is the only bridge from the pure side (cases, knobs) to torch; the session imports it lazily.
"""

from __future__ import annotations

import gc
import os
import time
from dataclasses import dataclass, field

import torch
from PIL import Image

from parity.cases import lorafile
from parity.cases.case import Case
from parity.core import envclass
from parity.core import offload as offloading
from parity.core.environment import reproducible_cpu_math
from parity.core.errors import CaseRunError, LoraRefused, ModelLoadError
from parity.core.images import encode_output, open_with_notes
from parity.models import DEFAULT_MODEL, part
from parity.models.knobs import Knob, LoraMethod, RuntimeFacts, Wiring
from parity.render.checkpoint import CheckpointWeights
from parity.render.loading import (
    check_placeable,
    device_budget,
    dtype_for,
    locate,
    place,
    read_pipeline,
    weight_bytes,
)
from parity.render.lora import LoraState, PristineMissing

# At most this many planned restores read the LoRA-targeted weights back from the checkpoint when a copy does not
# fit on the GPU; more keep the copy in pinned host memory. A judgement between two measured costs at full size on
# the H200 (40.8 GB of targeted weights): the pinned copy costs 36.8 s once and ~0.95 s per restore
# (h200-2026-12-01b); a read-back 1.6 s per restore with the checkpoint in the page cache (benchmarks/read_back.py,
# h200-2026-12-01e), so ~57 restores before the copy pays; from a cold disk (1.4 GB/s, benchmarks/disk_load.py)
# ~29 s each, so the copy pays from the second. This process cannot tell which it will get, and the first read
# leaves the files in the page cache where memory allows: 4 cost ~7 s warm, at most ~2 minutes cold.
READ_BACK_RESTORES = 4

# LoRA applications that live in the main transformer's modules, which the CFG-parallel copy (base weights) lacks
_ONE_DEVICE_METHODS = (LoraMethod.AITK_UNMERGED, LoraMethod.DIFFUSERS_ADAPTER)


@dataclass
class LoadedModel:
    """A loaded base model with its LoRA state and its exact caches (text embeddings, control-image latents)."""

    key: tuple[str, ...]  # (model id, where it was loaded from, device, dtype, offload mode asked for)
    pipe: object
    lora: LoraState
    renderer: object  # the model package's wiring.Renderer on this pipeline
    offload: offloading.Choice = field(default_factory=lambda: offloading.Choice(offloading.DEFAULT, "asked for"))


@dataclass
class _Loaded:
    model: LoadedModel
    replica: object = None  # cfg_parallel.UncondReplica on the second device, when asked for

    @property
    def key(self) -> tuple[str, ...]:
        return self.model.key

    @property
    def pipe(self):
        return self.model.pipe

    @property
    def lora(self) -> LoraState:
        return self.model.lora

    @property
    def renderer(self):
        return self.model.renderer


class ModelPool:
    """Base models a process keeps loaded between its sessions (a test suite, a notebook), off by default.

    An engine that closes hands its model back with the LoRA removed (the weights restored to the loaded ones);
    the next engine that asks for the same folder on the same device takes it as it would come from disk, with
    the caches it has gathered: those hold embeddings and latents of the text encoder and the VAE, which no LoRA
    touches. A model that failed (out of memory) is dropped, never handed on.
    """

    def __init__(self) -> None:
        self._models: dict[tuple[str, ...], LoadedModel] = {}

    def take(self, key: tuple[str, ...]) -> LoadedModel | None:
        return self._models.get(key)

    def add(self, model: LoadedModel) -> None:
        """A model just loaded: later engines share it (one process renders one case at a time)."""
        self._models[model.key] = model

    def keep(self, model: LoadedModel) -> bool:
        """A model an engine is done with: its LoRA removed, as a later engine expects it. One whose LoRA cannot
        be removed exactly (fused without a kept copy, a read-back that failed) or whose removal was cut short
        is dropped instead, never handed on half-restored. Returns whether it was kept."""
        try:
            model.lora.apply(LoraMethod.NONE, None, None)
        except PristineMissing:
            self.drop(model.key)
            return False
        except BaseException:
            self.drop(model.key)
            raise
        model.lora.fused.keep_pristine = True  # the next engine's plan decides again
        self._models[model.key] = model
        return True

    def drop(self, key: tuple[str, ...]) -> None:
        self._models.pop(key, None)


_POOL: ModelPool | None = None


def share_models(enabled: bool = True) -> None:
    """Keep loaded base models between the sessions of this process (see ModelPool); `False` drops them."""
    global _POOL
    _POOL = ModelPool() if enabled else None


class Engine:
    """Renders cases on one device; the base model stays loaded while consecutive cases share it.

    `cfg_device`: a second device that runs every unconditional transformer pass at the same time as the
    conditional one, on a copy of the transformer (cfg_parallel); the outputs are the one-device outputs.
    """

    def __init__(
        self,
        device: str = "cpu",
        base_model_override: str | None = None,
        cfg_device: str | None = None,
        dtype: torch.dtype | None = None,
        offload: str | None = None,
    ):
        from parity.core.errors import ModelLoadError

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
        else:
            reproducible_cpu_math()
        self.device = device
        self.dtype = dtype or dtype_for(device)  # the reference server's (calibrate alone asks for the other one)
        self.cfg_device = cfg_device
        self.base_model_override = base_model_override
        self.offload_override = offload  # every case's offload mode, over its case file's
        self._loaded: _Loaded | None = None
        self._adopted = False
        self._fresh = None  # a second Renderer, with its own caches (render(fresh_caches=True))
        self._images: dict[str, Image.Image] = {}
        self._image_notes: dict[str, list[str]] = {}
        self._planned: list[tuple] | None = None  # (model id, base, fused LoRA state) per planned case; None: unknown
        self._run_peaks: dict[str, float] = {}  # device -> the largest case peak so far, GB
        self._plan: list[Case] = []
        self._asking: Case | None = None  # the case whose facts or render loads the model now  # the planned cases (offload auto sizes the largest of them)
        self._copy_notes: list[str] = []  # said once, by the next case rendered
        self._read_back_ok = True  # False once reading weights back from a checkpoint failed in this run

    def expect(self, cases: list[Case], diagnose: bool = False) -> None:
        """The run's plan, in order. A model on which every planned case fuses the same LoRA at the same scale
        never needs its untouched weights back, so no copy of them is made (at full size ~40 GB of GPU memory
        left to activations); `--diagnose` switches LoRA states, so it keeps the copy. A case that needs another
        state anyway makes the engine load the model again (exact, only slower)."""
        self._plan = list(cases)
        if diagnose:
            self._planned = None
            return
        self._planned = [
            (case.model, self.base_of(case), (case.loras[0].path, case.effective.lora_scale) if case.loras else None)
            for case in cases
        ]
        loaded = self._loaded
        if loaded is not None and self.base_model_override and loaded.lora.fused.path is None:  # adopted (benchmarks)
            base = (self.base_model_override, os.getcwd())
            self._set_copy_rules(loaded.model, loaded.key[0], base)

    def _set_copy_rules(self, model: LoadedModel, model_id: str, base: tuple[str, str]) -> None:
        """Whether the untouched LoRA-targeted weights are kept for a restore, where a copy may go, and whether a
        restore may read them back from the checkpoint instead of a copy in pinned host memory: the plan's
        restores, counted, decide."""
        restores = self._planned_restores(model_id, base)
        fused = model.lora.fused
        fused.keep_pristine = restores is None or restores > 0
        fused.copy_room = self._copy_room(model_id, base)
        allowed = self._read_back_ok and restores is not None and restores <= READ_BACK_RESTORES
        fused.read_back_restores = restores if allowed else 0

    def _planned_restores(self, model_id: str, base: tuple[str, str]) -> int | None:
        """How often the plan restores the untouched weights on this model (its cases come grouped by LoRA
        state: one restore per state after the first, and one when a pooled model is handed back); None: unknown
        (no plan, or --diagnose)."""
        if self._planned is None:
            return None
        states = len({state for m, b, state in self._planned if (m, b) == (model_id, base)})
        return max(0, states - 1) + (1 if _POOL is not None else 0)

    def offload_of(self, case: Case) -> str:
        """The offload mode asked for a case: --offload, else its case file's."""
        return self.offload_override or case.offload

    def base_of(self, case: Case) -> tuple[str, str]:
        if self.base_model_override:
            return self.base_model_override, os.getcwd()
        return case.base_model, case.base_dir

    def facts(self, case: Case, timings: dict[str, float] | None = None) -> RuntimeFacts:
        """What the loaded model and the control images tell about this case's knobs."""
        self._asking = case
        loaded = self._ensure_model(case.model, self.base_of(case), timings if timings is not None else {}, self.offload_of(case))
        pipe = loaded.pipe
        paths = set(case.effective.control_images) | set(case.preview.text_images if case.preview else ())
        return RuntimeFacts(
            scheduler_config=part(case.model, "knobs").scheduler_items(dict(pipe.scheduler.config)),
            zero_cond_t=bool(pipe.transformer.config.zero_cond_t),
            dtype=str(pipe.transformer.dtype).replace("torch.", ""),
            image_sizes={p: self._image(p).size for p in paths},
            **(_lora_file_facts(case.loras[0].path) if case.loras else {}),
        )

    def loaded_lora(self):
        """What loading the LoRA on the model in hand showed (parity.render.lora.LoadedLora; None: none loaded)."""
        return self._loaded.lora.fused.loaded if self._loaded is not None else None

    def wirings(self, case: Case) -> tuple[Wiring, Wiring]:
        """The reference and the preview wiring of a case, with this model's facts."""
        facts, knobs = self.facts(case), part(case.model, "knobs")
        return knobs.reference_wiring(case, facts), knobs.preview_wiring(case, facts)

    def _fresh_renderer(self, loaded, model_id: str):
        if self._fresh is None or self._fresh.pipe is not loaded.pipe:
            self._fresh = part(model_id, "wiring").Renderer(loaded.pipe)
        return self._fresh

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
        timings: dict[str, float] = {}
        cuda = self.device.startswith("cuda")
        if cuda:
            for device in self._cuda_devices():
                torch.cuda.reset_peak_memory_stats(device)
        facts = self.facts(case, timings)
        wiring = wiring or part(case.model, "knobs").reference_wiring(case, facts)
        loaded = self._loaded
        assert loaded is not None
        start = time.perf_counter()
        images = tuple(self._image(p) for p in case.effective.control_images)
        text_images = tuple(self._image(p) for p in wiring.get(Knob.TEXT_IMAGES, ()))
        timings["load_inputs"] = time.perf_counter() - start
        try:
            return self._render_loaded(case, wiring, facts, loaded, images, text_images, timings, fresh_caches)
        except LoraRefused:
            raise  # refused before it changed the model (or taken out again): the model stays loaded (a reload costs minutes)
        except PristineMissing as missing:
            self.close(failed=True)
            if missing.reason:  # reading the weights back from the checkpoint failed: keep copies from now on
                self._read_back_ok = False
                again = "the model was loaded again (same bits)" if missing.same_bits else (
                    "the model was loaded again from the files as they are now: this case and the later ones render "
                    "that checkpoint, the earlier ones the one loaded before"
                )
                self._copy_notes.append(f"{missing.reason}: {again}")
            else:  # raised before any weight changed
                self._planned = None  # the plan was not this run's: keep the copy from now on
                self._copy_notes.append(
                    "this case needs another LoRA state than the plan foresaw, and no copy of the untouched weights "
                    "was kept: the model was loaded again (same bits)"
                )
            return self.render(case, wiring, fresh_caches)
        except BaseException:
            # Whatever failed (a LoRA that would not load, out of memory, an interrupt inside a fuse) may have left
            # the model half-changed: it is dropped, never handed on, and the next case loads it as from disk.
            self.close(failed=True)
            raise

    def _render_loaded(self, case, wiring, facts, loaded, images, text_images, timings, fresh_caches):
        cuda = self.device.startswith("cuda")
        lora_path = case.loras[0].path if case.loras else None
        timings.update(
            loaded.lora.apply(
                wiring.value(Knob.LORA_METHOD), lora_path, wiring.value(Knob.LORA_SCALE), case.allow_partial_lora
            )
        )
        eff = case.effective
        width, height = wiring.value(Knob.SIZE)
        render = part(case.model, "wiring")
        request = render.Request(
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
        if "lora_snapshot" in timings:
            self._copy_notes.append(_copy_note(loaded.lora, timings["lora_snapshot"], self.device))
        replica = self._replica_for(loaded, wiring, timings)
        renderer = self._fresh_renderer(loaded, case.model) if fresh_caches else loaded.renderer
        rendered = renderer.render(request, render.render_knobs(wiring, facts), uncond_replica=replica)
        rendered.image = encode_output(rendered.image, wiring.value(Knob.OUTPUT))
        rendered.timings = {**timings, **rendered.timings}
        rendered.notes = [n for p in dict.fromkeys((*case.effective.control_images, *wiring.get(Knob.TEXT_IMAGES, ()))) for n in self._image_notes.get(p, [])]
        rendered.notes += loaded.lora.notes + self._copy_notes
        self._copy_notes = []
        if loaded.replica is not None and replica is None:
            rendered.notes.append(
                f"CFG-parallel not used for this render: the LoRA runs unmerged ({wiring.value(Knob.LORA_METHOD).value}) "
                f"in the transformer on {self.device} only; both passes ran there"
            )
        choice = loaded.model.offload
        rendered.offload = choice.mode
        if not cuda and choice.reason != "asked for":
            rendered.notes.append(f"offload {choice.mode} ({choice.reason})")
        elif choice.mode != offloading.DEFAULT or choice.reason != "asked for":
            rendered.notes.append(f"offload {choice.mode} ({choice.reason}): {offloading.EFFECT[choice.mode]}")
        if cuda:
            rendered.peak_memory_by_device = {
                d: round(torch.cuda.max_memory_allocated(d) / 1e9, 3) for d in self._cuda_devices()
            }
            rendered.peak_memory_gb = rendered.peak_memory_by_device[self.device]
            for d, gb in rendered.peak_memory_by_device.items():
                self._run_peaks[d] = max(self._run_peaks.get(d, 0.0), gb)
        return rendered

    def _cuda_devices(self) -> list[str]:
        """The GPUs this engine renders on: the main device, and the CFG-parallel copy's."""
        return [d for d in dict.fromkeys((self.device, self.cfg_device)) if d is not None and d.startswith("cuda")]

    def model(self, base_model: str = "tiny", base_dir: str = ".", model_id: str = DEFAULT_MODEL) -> LoadedModel:
        """The loaded model of a base (loaded now if it is not): its pipeline, LoRA state and caches."""
        return self._ensure_model(model_id, (base_model, base_dir), {}, self.offload_override or offloading.DEFAULT).model

    def adopt(self, pipe, name: str, model_id: str = DEFAULT_MODEL, mode: str = offloading.DEFAULT) -> None:
        """Use a pipeline built in memory (benchmarks) as the base model `name`, placed in offload `mode` (none,
        model or sequential); cases then name it as override."""
        self.close()
        self.base_model_override = name
        choice = offloading.choose(mode, self.device)
        place(pipe, choice.mode, self.device)
        renderer = part(model_id, "wiring").Renderer(pipe)
        model = LoadedModel((model_id, name, self.device), pipe, LoraState.for_pipe(pipe), renderer, choice)
        self._loaded = self._hold(model)
        self._adopted = True

    def _hold(self, model: LoadedModel) -> _Loaded:
        replica = None
        if self.cfg_device is not None and model.offload.mode != "none":
            self._refuse_cfg_parallel(model.offload.mode)
        if self.cfg_device is not None:
            from parity.render.cfg_parallel import UncondReplica

            replica = UncondReplica(model.pipe.transformer, self.cfg_device)
        return _Loaded(model, replica)

    def _refuse_cfg_parallel(self, mode: str) -> None:
        from parity.core.errors import ModelLoadError

        raise ModelLoadError(
            f"CFG-parallel keeps a whole transformer on {self.cfg_device} beside one on {self.device}; it runs with "
            f"offload none only, and this case asks for offload {mode}",
            "drop --cfg-device (--parity-cfg-device), or run with --offload none (--parity-offload none, or "
            "`offload: none` in the case file) on GPUs that hold the model",
        )

    def _replica_for(self, loaded: _Loaded, wiring: Wiring, timings: dict[str, float]):
        """The CFG-parallel copy, holding the weights the main transformer holds now; None when it cannot."""
        if loaded.replica is None or wiring.value(Knob.LORA_METHOD) in _ONE_DEVICE_METHODS:
            return None
        seconds = loaded.replica.follow(loaded.lora.key)
        if seconds is not None:
            timings["cfg_copy"] = seconds
        return loaded.replica

    def _image(self, path: str) -> Image.Image:
        if path not in self._images:
            self._images[path], self._image_notes[path] = open_with_notes(path, "control image")
        return self._images[path]

    def _ensure_model(self, model_id: str, base: tuple[str, str], timings: dict[str, float], asked: str) -> _Loaded:
        if self._loaded is not None and self._loaded.key == (model_id, base[0], self.device):
            return self._loaded  # adopted in memory
        key = (model_id, locate(*base, model_id), self.device, str(self.dtype), asked)
        if self._loaded is not None and self._loaded.key == key:
            return self._loaded
        check_placeable(asked, self.device)
        if self.cfg_device is not None and asked in ("model", "sequential"):
            self._refuse_cfg_parallel(asked)
        self.close()
        self._adopted = False
        start = time.perf_counter()
        model = _POOL.take(key) if _POOL is not None else None
        if model is None:
            pipe = read_pipeline(base[0], base[1], self.device, self.dtype, model_id)
            checkpoint = CheckpointWeights.of(pipe.transformer)  # stamped now: a later change of its files shows
            choice = self._offload(asked, pipe, model_id, base)
            place(pipe, choice.mode, self.device)  # as the server: the mode first, the LoRA later
            renderer = part(model_id, "wiring").Renderer(pipe)
            model = LoadedModel(key, pipe, LoraState.for_pipe(pipe), renderer, choice)
            model.lora.fused.checkpoint = checkpoint
            timings["model_load"] = time.perf_counter() - start
            if _POOL is not None:
                _POOL.add(model)
        self._set_copy_rules(model, model_id, base)
        if not model.lora.fused.keep_pristine and model.lora.fused.path is None:
            self._copy_notes.append(
                "no copy of the LoRA-targeted weights is kept: every case of this run on this model applies the same "
                "LoRA at the same scale, so nothing is ever restored"
            )
        self._loaded = self._hold(model)
        return self._loaded

    def _cases_on(self, model_id: str, base: tuple[str, str]) -> list[Case]:
        """The planned cases on this model that will render (a refused one never does), and the case asking now
        (calibrate and draw-previews plan nothing)."""
        asking = [self._asking] if self._asking is not None else []
        return [c for c in (*self._plan, *asking) if (c.model, self.base_of(c)) == (model_id, base) and not c.refused]

    def _largest_case(self, model_id: str, cases: list[Case]) -> tuple[int, str]:
        """Of `cases`, the one with the most activations: (estimated bytes, the case in words)."""
        activations = part(model_id, "geometry").activation_bytes
        sized = [(activations(c.effective.width, c.effective.height, len(c.effective.control_images)), c) for c in cases]
        most, largest = max(sized, key=lambda item: item[0], default=(0, None))
        if largest is None:
            return 0, "none planned"
        eff = largest.effective
        return most, f"{largest.name}, {eff.width}x{eff.height}, {len(eff.control_images)} control image(s)"

    def _copy_room(self, model_id: str, base: tuple[str, str]):
        """What the weight copy may take on the GPU: the room left after twice the largest planned case's estimated
        activations (offload.reserve_for). Measured at full size under an 80 GB cap: with a copy split onto the GPU
        that left ~1 GB free at peak, the first case rendered other bits than the server's (three later cases at the
        same headroom did not); with the copy in host memory, or 36 GB left free, every case matched
        (benchmarks/results/h200-2026-12-01b). The working explanation is that libraries pick kernels by the
        workspace they can get."""
        if not self.device.startswith("cuda"):
            return None

        def room() -> int:
            activations = self._largest_case(model_id, self._cases_on(model_id, base))[0]
            return max(0, device_budget(self.device) - offloading.reserve_for(activations))

        return room

    def _offload(self, asked: str, pipe, model_id: str, base: tuple[str, str]) -> offloading.Choice:
        """The offload mode to run in; `auto` sizes the model and the largest planned case on it against the
        GPU's room."""
        if asked != "auto" or not self.device.startswith("cuda"):
            return offloading.choose(asked, self.device)
        if self.cfg_device is not None:
            return offloading.Choice("none", "auto with CFG-parallel, which runs with offload none only")
        cases = self._cases_on(model_id, base)
        most, named = self._largest_case(model_id, cases)
        weights = weight_bytes(pipe)
        loras = [os.path.getsize(lora.path) for c in cases for lora in c.loras if os.path.isfile(lora.path)]
        weights["transformer"] = weights.get("transformer", 0) + max(loras, default=0)  # the adapter rides with it
        need = offloading.Need(weights, most, named)
        return offloading.choose(asked, self.device, need, device_budget(self.device))

    def close(self, failed: bool = False) -> None:
        """Let go of the loaded model and free its memory (`failed`: after CUDA ran out of memory, so that the
        next case reloads it cleanly). With a ModelPool the model is handed back instead, its LoRA removed."""
        self._images.clear()
        self._image_notes.clear()
        self._fresh = None
        if self._loaded is None:
            return
        loaded, self._loaded = self._loaded, None
        if loaded.replica is not None:
            loaded.replica.close()
        if _POOL is not None and not self._adopted:
            if not failed and _POOL.keep(loaded.model):
                return
            _POOL.drop(loaded.key)
        del loaded
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def describe(self) -> dict[str, object]:
        """Device facts for the environment fingerprint."""
        info: dict[str, object] = {"device": self.device, "dtype": str(self.dtype).replace("torch.", "")}
        if self.cfg_device is not None:
            info["cfg_device"] = self.cfg_device
        if self.device.startswith("cuda"):
            index = torch.device(self.device).index or 0
            info["device_name"] = torch.cuda.get_device_name(index)
            info["compute_capability"] = ".".join(map(str, torch.cuda.get_device_capability(index)))
            # the run's peaks: the largest of its cases' (each case resets the allocator's statistics)
            peaks = {d: max(self._run_peaks.get(d, 0.0), torch.cuda.max_memory_allocated(d) / 1e9) for d in self._cuda_devices()}
            info["peak_memory_gb"] = round(peaks[self.device], 2)
            info["peak_memory_by_device"] = {d: round(v, 2) for d, v in peaks.items()}
            if self.cfg_device is not None and self.cfg_device in peaks:  # the CFG copy's device
                info["cfg_peak_memory_gb"] = round(peaks[self.cfg_device], 2)
        else:
            info["device_name"] = "cpu"
            info["threads"] = torch.get_num_threads()
            info["cpu_capability"] = torch.backends.cpu.get_cpu_capability().lower()
        info["environment_class"] = envclass.from_device_info(info).key
        return info


def _copy_note(lora: LoraState, seconds: float, device: str) -> str:
    """Where the untouched LoRA-targeted weights come from when a switch restores them, said once in the report."""
    source = lora.read_back_from()
    if source is not None:
        return (
            f"no copy of the LoRA-targeted weights is kept: it does not fit on {device} beside the largest planned "
            f"case, and the plan restores them only {lora.fused.read_back_restores} time(s), so each restore reads "
            f"them back from the checkpoint ({source}), checked against fingerprints of the loaded bits (taken in "
            f"{seconds:.2f} s)"
        )
    places = ", ".join(f"{gb / 1e9:.2f} GB on {where}" for where, gb in lora.pristine_places().items())
    return (
        f"a copy of the LoRA-targeted weights is kept ({places}; made once, in {seconds:.2f} s): the plan switches "
        "LoRA states on this model, and each switch restores the untouched weights"
    )


def _lora_file_facts(path: str) -> dict[str, object]:
    """The RuntimeFacts a LoRA file gives: its weights' dtype and the alpha the server's loader applies."""
    try:
        lora = lorafile.inspect(path)
    except ModelLoadError:
        return {}  # the case's own LoRA check says what is wrong with the file
    return {"lora_file_dtype": lora.dtype_text or None, "lora_alpha_scale": lora.alpha_scale(), "lora_alpha_text": lora.alpha_text}
