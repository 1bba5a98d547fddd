"""LoRA application, four ways: diffusers fuse or adapter (the reference server) and ai-toolkit's merge or unmerged
branch.

- FusedLora: `load_lora_weights(dir, weight_name=file, adapter_name="lora")` + `fuse_lora(lora_scale=...)`, as
  ai-toolkit-inference does for its FUSE models; before a different scale is fused, the targeted weights and
  PEFT's scaling are restored, so a case's weights never depend on the cases run before it. The same loaded
  adapter also serves the server's SET_ADAPTERS models: kept unfused, its scale set by diffusers'
  `set_weights_and_activate_adapters` (PEFT's scaling = scale x alpha / r, absolute, so a switch is exact).
- AitkLora: ai-toolkit's own network as its sampler applies it (toolkit/network_mixins.py): `merge_in` adds
  `multiplier * (up @ down) * scale` computed in float32 and writes it back in the model dtype; unmerged, each
  targeted linear adds `(up(down(x.float())) * scale) * multiplier`, cast to the output dtype. `scale` is alpha /
  rank as the trainer sets it: 1 for every Qwen network (PEFT format: alpha = rank), whatever the job's linear_alpha.
- LoraState: keeps one of them active on a pipeline and switches between them exactly; a LoraScale (the multiplier
  and which alpha goes with it) becomes each one's arithmetic here.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from parity.cases import lorafile
from parity.core.errors import LoraRefused, ModelLoadError
from parity.facts.scale import Alpha, LoraScale
from parity.models.knobs import LoraMethod
from parity.render.pristine import Keep, PristineMissing, Untouched, any_hooked

ADAPTER = "lora"


def lora_module_names(path: str) -> set[str]:
    """Transformer module names an ai-toolkit / diffusers LoRA file targets."""
    return set(lorafile.inspect(path).layers)


@dataclass(frozen=True)
class LoadedLora:
    """What loading a LoRA into the model showed, for its audit: how its modules meet the model's linears, and
    whether its weights change anything."""

    path: str
    modules_in_file: int
    modules_matched: int
    linears_in_model: int
    unmatched: tuple[str, ...]
    changes_nothing: str | None  # why it changes nothing (every lora_B zero, ...); None: it changes the model


def check_fits(
    path: str, transformer: torch.nn.Module, allow_partial: bool
) -> tuple[dict[str, torch.nn.Module], set[str]]:
    """The transformer's linears the LoRA targets, and every module name it targets; checked before anything is
    loaded into the model: a file the server's loader refuses, names that match nothing (or only some, unless
    allowed) and shapes that do not fit, each a LoraRefused that says what the server does and the fix."""
    try:
        info = lorafile.check(path)
    except ModelLoadError as exc:
        raise LoraRefused(exc.what, exc.fix) from None
    linears = model_linears(transformer)
    wanted = set(info.layers)
    missing = sorted(wanted - set(linears))
    if missing and (not allow_partial or len(missing) == len(wanted)):
        raise LoraRefused(*_unmatched(path, missing, wanted))
    misfits = lorafile.shape_problems(info, {n: (m.in_features, m.out_features) for n, m in linears.items()})
    if misfits:
        raise LoraRefused(
            f"LoRA {path}: {len(misfits)} of {len(wanted)} layers do not fit the model's shapes ({_shown(misfits)}): "
            "the reference server's loader refuses it too (PEFT raises a size mismatch), so nothing renders",
            "use a LoRA trained for this base model (the rank may be anything; the layers' sizes must match)",
        )
    return {n: linears[n] for n in wanted if n in linears}, wanted


def model_linears(transformer: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    return {n: m for n, m in transformer.named_modules() if isinstance(m, torch.nn.Linear)}


def changes_nothing(pairs: dict[str, tuple[torch.Tensor, torch.Tensor]], zero_alpha: bool = False) -> str | None:
    """Why a LoRA's targeted layers add nothing to the model ({module: (down, up)} as loaded), or None: every
    `.alpha` key 0 (the server's loader multiplies the weights by alpha / rank), every lora_B all zero (a step-0
    checkpoint: ai-toolkit initialises lora_B to zeros), or else a zero factor in every layer."""
    if not pairs or any(t.is_meta for pair in pairs.values() for t in pair):
        return None
    if zero_alpha:
        return "this LoRA changes nothing: every .alpha key in the file is 0, and the server's loader multiplies the weights by alpha / rank"
    if all(not torch.any(up) for _, up in pairs.values()):
        return f"this LoRA changes nothing: every lora_B is zero ({len(pairs)} targeted layers), as in a step-0 checkpoint"
    if all(not torch.any(down) or not torch.any(up) for down, up in pairs.values()):
        return f"this LoRA changes nothing: each of its {len(pairs)} targeted layers has an all-zero lora_A or lora_B"
    return None


def check_finite(path: str, tensors: dict[str, torch.Tensor]) -> None:
    """A LoRA whose weights hold NaN or infinity would turn every output into NaN: refused with its cause."""
    bad = [key for key, tensor in tensors.items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if bad:
        raise LoraRefused(
            f"LoRA {path}: {len(bad)} of {len(tensors)} tensors hold NaN or infinite values ({_shown(sorted(bad))}): "
            "the training diverged before this checkpoint was saved",
            "use an earlier checkpoint of the run (its *_<step>.safetensors files), or train again with a lower "
            "learning rate",
        )


class FusedLora:
    """Which LoRA a pipeline holds, at which scale, fused or as an unfused adapter; every fuse starts from pristine
    weights."""

    def __init__(self, pipe):
        self.pipe = pipe
        self.path: str | None = None
        self.scale: float | None = None  # None: loaded as from disk (PEFT's scaling alpha / r), nothing applied
        self.fused = True  # how `scale` is applied: fused into the weights, or as the adapter's scaling
        self.notes: list[str] = []
        self.loaded: LoadedLora | None = None  # what loading the LoRA showed (its audit's model side)
        self.keep = Keep()  # how the untouched weights are kept for a restore (the run's memory policy hands it in)
        self.untouched: Untouched | None = None  # what a restore puts back (taken before the first fuse)
        self._restoring = False  # True while a restore writes the weights: one that did not finish left them mixed

    def apply(
        self, path: str | None, scale: float | None, allow_partial: bool = False, fuse: bool = True
    ) -> dict[str, float]:
        """Make the pipeline's weights those of a fresh `load → fuse(scale)` (`fuse=False`: of a fresh load with the
        adapter's scale set, the server's SET_ADAPTERS); returns stage timings."""
        timings: dict[str, float] = {}
        if self._restoring:
            raise PristineMissing("an earlier restore of the LoRA-targeted weights did not finish")
        if path != self.path:
            self._drop()
            if path is not None:
                self._load(path, allow_partial, timings)
        if path is not None and (scale, fuse) != (self.scale, self.fused):
            if fuse and self.untouched is None and self.keep.copy:
                # the base weights are still the loaded ones (an adapter leaves them alone): kept before the first
                # fuse, so a plan that never fuses (the server's SET_ADAPTERS models) never pays for it
                start = time.perf_counter()
                self.untouched = self.keep.take(self.pipe, self._wrapped())
                _sync(self.pipe)
                timings["lora_snapshot"] = time.perf_counter() - start
            start = time.perf_counter()
            if self.scale is not None and self.fused:
                self._restore()
            if fuse:
                for module in self._wrapped().values():
                    module.unscale_layer()  # PEFT's own alpha / r, as loaded (an adapter scale set before is undone)
                self.pipe.fuse_lora(adapter_names=[ADAPTER], lora_scale=scale)
                self._note_placeholders()
            elif scale != 1.0 or self.scale is not None:  # loading activates the adapter at 1.0; any switch sets it
                from diffusers.utils.peft_utils import set_weights_and_activate_adapters

                set_weights_and_activate_adapters(self.pipe.transformer, [ADAPTER], [scale])
            self.scale, self.fused = scale, fuse
            _sync(self.pipe)
            timings["lora_fuse" if fuse else "lora_scale"] = time.perf_counter() - start
        return timings

    def _load(self, path: str, allow_partial: bool = False, timings: dict | None = None) -> None:
        start = time.perf_counter()
        targets, wanted = check_fits(path, self.pipe.transformer, allow_partial)
        missing = sorted(wanted - set(targets))
        linears = len(model_linears(self.pipe.transformer))  # counted before PEFT adds its own
        checked = time.perf_counter()
        folder, name = os.path.split(path)
        try:
            # low_cpu_mem_usage: PEFT makes the adapter's layers empty instead of randomly initialising them on the
            # CPU only to overwrite them (2-30 s at full size, most of a suite's time outside denoising); the
            # loaded values and the fused weights are the server's default load's (tests/render/test_loading.py)
            with warnings.catch_warnings():
                # PEFT warns once that torchao 0.10.0 (the trainer's pin, parity[trainer]) is too old for its
                # torchao layers; the server's layers are plain linears, and PEFT's choice does not depend on it
                warnings.filterwarnings("ignore", message="Found an incompatible version of torchao", category=UserWarning)
                self.pipe.load_lora_weights(
                    folder, weight_name=name, adapter_name=ADAPTER, local_files_only=True, low_cpu_mem_usage=True
                )
        except (ValueError, KeyError, RuntimeError, OSError) as exc:
            self._unload_after_failure()
            raise ModelLoadError(
                f"LoRA {path} could not be loaded: {str(exc).splitlines()[0]} (the reference server makes this same "
                "call, so it fails on this file too)",
                "check that it is a LoRA for this model, saved by ai-toolkit or in diffusers' key format",
            ) from None
        loaded = time.perf_counter()
        wrapped = self._wrapped()
        unwrapped = sorted(wanted - set(wrapped) - set(missing))
        if unwrapped or not wrapped:
            self.pipe.unload_lora_weights()
            raise ModelLoadError(*_unmatched(path, unwrapped or sorted(wanted), wanted))
        try:
            self._check_loaded_finite(path, wrapped)
        except LoraRefused as refused:
            self._unload_after_failure()  # nothing was fused: the base weights are the loaded ones again
            if self._wrapped():  # the adapter could not be taken out: the engine must drop the model
                raise ModelLoadError(refused.what, refused.fix) from None
            raise
        if timings is not None:  # the checks (the shapes before the load, the values after it) and the server's load
            timings["lora_check"] = (checked - start) + (time.perf_counter() - loaded)
            timings["lora_load"] = loaded - checked
        self.notes = []
        if missing:
            note = f"LoRA {os.path.basename(path)}: {len(missing)} of {len(wanted)} target modules match nothing"
            self.notes = [
                f"{note} (allowed by allow_partial_lora; the reference server drops them too and applies the rest): "
                + _shown(missing)
            ]
        nothing = changes_nothing(_adapter_pairs(wrapped), zero_alpha=lorafile.inspect(path).alpha_scale() == 0.0)
        if nothing is not None:
            self.notes.append(f"LoRA {os.path.basename(path)}: {nothing}")
        self.loaded = LoadedLora(path, len(wanted), len(targets), linears, tuple(missing), nothing)
        self.path = path

    def _check_loaded_finite(self, path: str, wrapped: dict[str, torch.nn.Module]) -> None:
        """check_finite on what the load put into the model, where it lies (on the GPU: milliseconds), instead of
        reading the file a second time: the adapter's weights and each layer's scaling (its alpha / rank). Where
        the weights wait behind offload hooks as placeholders, the file itself is read."""
        tensors: dict[str, torch.Tensor] = {}
        for name, module in wrapped.items():
            for role in ("lora_A", "lora_B"):
                layers = getattr(module, role, None)
                if layers is not None and ADAPTER in layers:
                    tensors[f"{name}.{role}"] = layers[ADAPTER].weight
            scaling = getattr(module, "scaling", {}).get(ADAPTER)
            if scaling is not None:
                tensors[f"{name}.alpha"] = torch.tensor(float(scaling))
        if not tensors or any(t.is_meta for t in tensors.values()):
            from safetensors.torch import load_file

            tensors = load_file(path)
        check_finite(path, tensors)

    def _note_placeholders(self) -> None:
        """Under sequential offload the layers hold meta placeholders and the real weights wait in the offload
        hooks: diffusers' fuse_lora merges into the placeholders, so the rendered image has no LoRA at all. The
        server's does the same; said beside the case, whose bits stay the server's."""
        note = (
            "the LoRA is NOT applied: under offload sequential the layers hold placeholders (the weights wait in "
            "host memory) and diffusers' fuse_lora merges into those, so the reference server renders the base "
            "model alone, and so does this run (bit for bit); compare the LoRA with offload none or model"
        )
        if note not in self.notes and any(m.get_base_layer().weight.is_meta for m in self._wrapped().values()):
            self.notes.append(note)

    def _unload_after_failure(self) -> None:
        """A load that failed half-way may have wrapped some layers already; take them out again (the engine also
        drops the model after any failed case, so the next case never sees this one's leftovers)."""
        with contextlib.suppress(Exception):  # best effort: the engine drops the model after a failed case anyway
            self.pipe.unload_lora_weights()
        self.path, self.scale, self.untouched, self.fused, self.notes, self.loaded = None, None, None, True, [], None
        self._restoring = False

    def _wrapped(self) -> dict[str, torch.nn.Module]:
        return {name: m for name, m in self.pipe.transformer.named_modules() if is_tuner(m)}

    def _restore(self) -> None:
        """Back to the state right after loading: untouched base weights and PEFT's own scaling (alpha / r).

        diffusers' fuse_lora(lora_scale=s) multiplies each layer's PEFT scaling by s in place and unfuse_lora()
        does not undo it, so unfuse -> fuse(t) fuses at s*t (t == 1.0: still at s). Resetting the scaling here
        is what makes a later fuse equal a fresh one.
        """
        if self.untouched is None:
            raise PristineMissing()
        self.untouched.check_unchanged()
        self._restoring = True
        self.pipe.unfuse_lora()
        wrapped = self._wrapped()
        self.untouched.restore(wrapped)
        for module in wrapped.values():
            module.unscale_layer()
        self.scale = None
        self._restoring = False

    def _drop(self) -> None:
        if self.path is None:
            return
        if self.scale is not None and self.fused:
            self._restore()
        self.pipe.unload_lora_weights()
        self.path, self.scale, self.untouched, self.fused, self.notes, self.loaded = None, None, None, True, [], None


def _adapter_pairs(wrapped: dict[str, torch.nn.Module]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The loaded adapter's (lora_A, lora_B) weights per wrapped module."""
    pairs = {}
    for name, module in wrapped.items():
        down, up = getattr(module, "lora_A", {}), getattr(module, "lora_B", {})
        if ADAPTER in down and ADAPTER in up:
            pairs[name] = (down[ADAPTER].weight, up[ADAPTER].weight)
    return pairs


def is_tuner(module: torch.nn.Module) -> bool:
    """Whether a module is a PEFT wrapper (a LoRA layer around its base layer)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return isinstance(module, BaseTunerLayer)


def _shown(names: list[str]) -> str:
    return ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")


def _unmatched(path: str, missing: list[str], wanted: set[str]) -> tuple[str, str]:
    """A LoRA with names the model does not have: what the reference server does with it, and the fix."""
    if len(missing) == len(wanted):
        return (
            (f"LoRA {path}: none of its {len(wanted)} target modules exists in this model's transformer ({_shown(missing)}): "
            "it is a LoRA for another model, and the reference server refuses it (PEFT raises "
            "`NoMatchingPeftModuleError: Target modules … not found in the base model`), so nothing renders"),
            "use the LoRA trained for this base model, or set `model:` / `base_model:` to the model it was trained for",
        )
    return (
        (f"LoRA {path}: {len(missing)} of {len(wanted)} target modules match nothing in the transformer ({_shown(missing)}): "
        f"the reference server applies the {len(wanted) - len(missing)} that match and drops these with a warning "
        "(diffusers logs `unexpected keys`), so it serves less than was trained"),
        ("use the LoRA trained for this base model; or set `allow_partial_lora: true` in the case file to compare what "
        "the server serves (the report lists the dropped modules)"),
    )


def _sync(pipe) -> None:
    if torch.cuda.is_available() and pipe.device.type == "cuda":
        torch.cuda.synchronize(pipe.device)


def lora_pairs(path: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(down, up) weight pairs of a LoRA file by transformer module name, as float32 like ai-toolkit's network.
    Read after check_fits, whose lorafile.check has already refused files with an incomplete pair."""
    from safetensors.torch import load_file

    tensors = load_file(path)
    check_finite(path, tensors)
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        for role, suffixes in (("down", lorafile.DOWN_SUFFIXES), ("up", lorafile.UP_SUFFIXES)):
            for suffix in suffixes:
                if key.endswith(suffix):
                    pairs.setdefault(lorafile.module_name(key, suffix), {})[role] = value.float()
    return {name: (p["down"], p["up"]) for name, p in pairs.items()}


def alpha_scales(path: str, alpha: Alpha) -> dict[str, float]:
    """Each module's alpha / rank as a side applies it: the file's `.alpha` keys (the server's loader), or 1 for
    every layer (ai-toolkit's Qwen networks: alpha = rank)."""
    if alpha is Alpha.RANK:
        return {}
    return {name: scale for name, scale in lorafile.inspect(path).alpha_scales().items() if scale is not None}


def diffusers_scale(path: str, scale: LoraScale) -> float:
    """The `lora_scale` that makes diffusers apply `scale`: the request's scale as it is (its loader bakes the file's
    alpha into the weights), or divided by the file's alpha / rank where `scale` wants alpha = rank."""
    if scale.alpha is Alpha.FILE:
        return scale.multiplier
    factor = lorafile.inspect(path).alpha_scale()
    return scale.multiplier if factor in (None, 1.0) else scale.multiplier / factor


class AitkLora:
    """ai-toolkit's LoRA, merged (float32 delta) or as an unmerged float32 branch; pristine weights kept."""

    def __init__(self, pipe):
        self.pipe = pipe
        self.state: tuple | None = None  # (method, path, scale)
        self._pristine: dict[str, torch.Tensor] = {}
        self._hooks: list = []

    def apply(self, method: LoraMethod, path: str, scale: LoraScale, allow_partial: bool = False) -> None:
        state = (method, path, scale)
        if state == self.state:
            return
        self.clear()
        modules, _ = check_fits(path, self.pipe.transformer, allow_partial)
        pairs = {name: pair for name, pair in lora_pairs(path).items() if name in modules}
        layer_scales = alpha_scales(path, scale.alpha)
        multiplier = scale.multiplier
        device = self.pipe.transformer.device
        if method is LoraMethod.AITK_MERGE:
            for name, (down, up) in pairs.items():
                linear = modules[name]
                self._pristine[name] = linear.weight.data.clone()
                weight = linear.weight.data.float()
                merged = weight + multiplier * (up.to(device) @ down.to(device)) * layer_scales.get(name, 1.0)
                linear.weight.data.copy_(merged.to(linear.weight.dtype))
        else:
            torch_multiplier = torch.tensor((multiplier,)).to(device, dtype=torch.float32)
            for name, (down, up) in pairs.items():
                runtime_scale = torch.tensor(layer_scales.get(name, 1.0), dtype=torch.float32, device=device)
                self._hooks.append(
                    modules[name].register_forward_hook(_branch(down.to(device), up.to(device), runtime_scale, torch_multiplier))
                )
        self.state = state

    def clear(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()
        if self._pristine:
            modules = dict(self.pipe.transformer.named_modules())
            for name, weight in self._pristine.items():
                modules[name].weight.data.copy_(weight)
            self._pristine.clear()
        self.state = None


def _branch(down: torch.Tensor, up: torch.Tensor, runtime_scale: torch.Tensor, multiplier: torch.Tensor):
    """A forward hook adding ai-toolkit's unmerged LoRA output to a linear layer's output."""

    def hook(module, inputs, output):
        lora_input = inputs[0].to(down.dtype)
        lora_output = F.linear(F.linear(lora_input, down), up) * runtime_scale
        scaled = lora_output * multiplier.view(*multiplier.shape, *([1] * (lora_output.dim() - multiplier.dim())))
        return output + scaled.to(output.dtype)

    return hook


@dataclass
class LoraState:
    """The LoRA a pipeline carries now: none, diffusers-fused, or ai-toolkit merged/unmerged; switches exactly."""

    fused: FusedLora
    aitk: AitkLora

    @classmethod
    def for_pipe(cls, pipe) -> LoraState:
        return cls(FusedLora(pipe), AitkLora(pipe))

    @property
    def notes(self) -> list[str]:
        return self.fused.notes

    @property
    def pristine_bytes(self) -> int:
        """Size of the kept copy of the LoRA-targeted weights (0: none kept)."""
        return 0 if self.fused.untouched is None else self.fused.untouched.nbytes

    def read_back_from(self) -> str | None:
        """The checkpoint folder restores read the untouched weights from (None: a copy is kept, or nothing)."""
        kept = self.fused.untouched
        return None if kept is None or kept.checkpoint is None else kept.checkpoint.folder

    @property
    def key(self) -> tuple:
        """What the transformer's weights are now (equal keys: equal weights)."""
        return (self.fused.path, self.fused.scale, self.fused.fused, self.aitk.state)

    def apply(
        self, method: LoraMethod, path: str | None, scale: LoraScale | None, allow_partial: bool = False
    ) -> dict[str, float]:
        """Put `path` on the model at `scale` the way `method` applies it (None: no LoRA)."""
        start = time.perf_counter()
        timings: dict[str, float] = {}
        if method in (LoraMethod.DIFFUSERS_FUSE, LoraMethod.DIFFUSERS_ADAPTER) and path is not None and scale is not None:
            self.aitk.clear()
            value = diffusers_scale(path, scale)
            return self.fused.apply(path, float(value), allow_partial, fuse=method is LoraMethod.DIFFUSERS_FUSE)
        if method in (LoraMethod.AITK_MERGE, LoraMethod.AITK_UNMERGED) and path is not None and scale is not None:
            if any_hooked(self.fused.pipe):  # refused before anything changes: the model stays loaded
                raise LoraRefused(
                    "ai-toolkit's LoRA (the preview wiring: --diagnose, draw-previews) is applied to weights on the "
                    "GPU, and under offload model or sequential they wait in host memory or behind hooks",
                    "diagnose or draw previews with offload none (--offload none, --parity-offload none, or "
                    "`offload: none` in the case file)",
                )
            timings.update(self.fused.apply(None, None))
            self.aitk.apply(method, path, scale, allow_partial)
            timings["lora_fuse"] = time.perf_counter() - start
            return timings
        self.aitk.clear()
        return self.fused.apply(None, None)
