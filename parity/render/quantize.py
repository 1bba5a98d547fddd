"""The trainer's quantized model, replayed: the transformer and the text encoder quantized as ai-toolkit quantizes
them, and swapped in and out of a loaded pipeline without touching the loaded weights.

What ai-toolkit does (ostris/ai-toolkit 27a03a9; the Qwen classes in extensions_built_in/diffusion_models/qwen_image/):
- the transformer, after `from_pretrained` and before the LoRA network exists (`quantize_model`,
  toolkit/util/quantize.py): each of `transformer_blocks` is moved to the training device in the training dtype,
  every module quantized (`_quantize_submodule`, one by one, a module that fails left as it is) and frozen, then
  moved back to the CPU; then the modules outside the blocks are quantized where they lie (the CPU), the blocks'
  quantized modules skipped by class name. Qwen names no module to keep in full precision;
- the text encoder, moved to the training device first, quantized whole and frozen (`quantize` + `freeze`);
- a LoRA cannot be merged into a quantized base: it runs as an unmerged float32 branch (`can_merge_in` false).

Here each quantizable module is quantized from the loaded module (quanto's `quantize_module` makes a new module and
leaves the original's weights alone) and put in its place; the originals are kept, so going back is exact, and the
quantized modules are kept per qtype, so going forth again costs nothing. optimum-quanto is imported only when a
qtype is replayed: the reference path never loads it.
"""

from __future__ import annotations

import copy
import os
import time
from contextlib import contextmanager
from importlib import metadata

import torch

from parity.core.errors import CaseRunError, ModelLoadError
from parity.facts import quant
from parity.render import uintx

BLOCKS = "transformer_blocks"  # QwenImageModel.get_transformer_block_names


def installed() -> dict[str, str | None]:
    """The versions of the trainer's quantization libraries here (None: not installed)."""
    versions: dict[str, str | None] = {}
    for library in quant.PINS:
        try:
            versions[library] = metadata.version(library)
        except metadata.PackageNotFoundError:
            versions[library] = None
    return versions


class Part:
    """One model part (transformer or text encoder) with its quantizable modules swappable.

    On a GPU the modules out of use wait in host memory: the loaded ones while a qtype's are in, and a qtype's while
    the loaded ones are in (moves between devices copy bits exactly), so the GPU holds one set at a time: the full
    model and its quantized copy do not fit twice on an 80 GB card."""

    def __init__(self, root: torch.nn.Module, name: str):
        self.root, self.name = root, name
        self.originals: dict[str, torch.nn.Module] = {}  # module name -> the loaded module
        self.homes: dict[str, torch.device | None] = {}  # module name -> the device the loaded module lies on
        self.made: dict[str, dict[str, torch.nn.Module]] = {}  # qtype -> module name -> its quantized module
        self.state = "none"

    def use(self, qtype: str, quantize_where, adapter: str | None = None) -> None:
        """Put the modules of `qtype` in ("none": the loaded ones). `quantize_where(name)`: the device a module
        is quantized on (None: where it lies)."""
        if qtype == self.state:
            return
        if self.state != "none":
            self._place(self.made[self.state], park=True)
        self._swap(self.originals)
        self._place(self.originals, park=False)
        self.state = "none"
        setattr(self.root, quant.TAG, None)
        if qtype == "none":
            return
        if qtype not in self.made:
            parsed = quant.QType.parse(qtype)
            if parsed.adapter is None:
                self.made[qtype] = self._quantize(qtype, quantize_where)
            else:
                self.made[qtype] = self._adapted(parsed.name, adapter or parsed.adapter)
        made = self.made[qtype]
        self._place(made, park=False)
        self._swap(made)
        in_use = {id(m) for module in made.values() for m in module.modules()}  # an adapter's unquantized base
        self._place({n: m for n, m in self.originals.items() if id(m) not in in_use}, park=True)
        self.state = qtype
        setattr(self.root, quant.TAG, qtype)

    def _place(self, modules: dict[str, torch.nn.Module], park: bool) -> None:
        """Modules to host memory (`park`), or back to the device their loaded module lies on. Nothing moves on
        the CPU."""
        for name, module in modules.items():
            home = self.homes.get(name)
            if home is not None and home.type != "cpu":
                module.to("cpu" if park else home)

    def _keep(self, name: str, module: torch.nn.Module, made: torch.nn.Module) -> None:
        """Record the loaded module; the made one gets its own copies of any parameter it shares with it (quanto
        hands the bias over), so parking one never moves the other's."""
        self.originals.setdefault(name, module)
        self.homes.setdefault(name, _device_of(module))
        shared = {id(p) for p in module.parameters()}
        for owner in made.modules():
            for key, param in list(owner._parameters.items()):
                if param is not None and id(param) in shared and owner is not module:
                    owner._parameters[key] = torch.nn.Parameter(param.detach().clone(), requires_grad=False)

    def described(self) -> str:
        """'transformer qfloat8 (34 layers)'."""
        count = len(self.made.get(self.state, {}))
        if count == 0:
            return f"{self.name} {self.state} (no layer: ai-toolkit quantizes none with {self.state})"
        return f"{self.name} {self.state} ({count} layer{'s' if count != 1 else ''})"

    def _quantize(self, qtype: str, quantize_where) -> dict[str, torch.nn.Module]:
        """Every module the trainer's loop would quantize, quantized from a module the loaded one is never: quanto
        builds a new module; torchao changes a module in place, so it quantizes a copy. A module that cannot be
        quantized stays as it is, as the trainer prints and goes on."""
        make = _maker(qtype)
        made: dict[str, torch.nn.Module] = {}
        precision = torch.get_float32_matmul_precision()  # torchao 0.10.0's quantize_ sets "high" for good
        try:
            for name, module in list(self.root.named_modules()):
                if not name:
                    continue
                home = _device_of(module)
                device = quantize_where(name)
                moved = device is not None and home is not None and torch.device(device) != home
                try:
                    quantized = make(module, moved and device)
                except Exception:  # noqa: BLE001 - as the trainer: a module that cannot be quantized stays as it is
                    quantized = None
                if quantized is None:
                    continue
                if home is not None:
                    quantized.to(home)
                made[name] = quantized
                self._keep(name, module, quantized)
                self._place({name: module}, park=True)  # one layer at a time: the GPU never holds both sets
        finally:
            torch.set_float32_matmul_precision(precision)
        return made

    def _adapted(self, qtype: str, path: str) -> dict[str, torch.nn.Module]:
        """ai-toolkit's path with an accuracy recovery adapter: the adapter's LoRA network over the linears it
        names; each of those quantized with `qtype` where it lies (the CPU), the others with uint8, which
        quantizes nothing; the adapter's branch on the model's device, in the model's dtype."""
        from parity.cases import lorafile
        from parity.render.lora import lora_pairs

        try:
            lorafile.check(path)  # readable, a LoRA of a kind a PEFT network loads
            pairs = lora_pairs(path)  # finite
        except ModelLoadError as exc:
            raise CaseRunError(
                f"the accuracy recovery adapter of model.qtype ({qtype}|…): {exc.what}",
                "use the adapter file the job trained with: a path (relative to the case file), or user/repo/file "
                "in the local HF cache",
            ) from None
        modules = dict(self.root.named_modules())
        missing = sorted(name for name in pairs if not isinstance(modules.get(name), torch.nn.Linear))
        if missing:
            raise CaseRunError(
                f"the accuracy recovery adapter {path} names {len(missing)} layer(s) this transformer lacks "
                f"({', '.join(missing[:3])}{', …' if len(missing) > 3 else ''}): it belongs to another model",
                "use the adapter the job trained with, for this base model",
            )
        bits = uintx.BITS[qtype]
        made: dict[str, torch.nn.Module] = {}
        for name, (down, up) in pairs.items():
            module = modules[name]
            home = _device_of(module)
            base = module
            if uintx.can_quantize(module, bits):
                base = uintx.UIntXLinear(copy.deepcopy(module).to("cpu") if home != torch.device("cpu") else module, bits)
                base.to(home)
            dtype = module.weight.dtype
            made[name] = uintx.AdaptedLinear(base, down, up, dtype, home)
            self._keep(name, module, made[name])
        return made

    def _swap(self, modules: dict[str, torch.nn.Module]) -> None:
        for name, module in modules.items():
            parent, _, child = name.rpartition(".")
            setattr(self.root.get_submodule(parent) if parent else self.root, child, module)


def _maker(qtype: str):
    """`make(module, device)`: the module quantized as the trainer's library quantizes it (on `device`, else where it
    lies), or None where that library leaves it alone."""
    if quant.REPLAYED[qtype] == "optimum-quanto":
        from optimum.quanto import qtypes
        from optimum.quanto.nn import QModuleMixin, quantize_module

        weights = qtypes[qtype]

        def quanto_make(module, device):
            if isinstance(module, QModuleMixin):
                return None
            source = copy.deepcopy(module).to(device) if device else module  # quanto leaves its source alone
            quantized = quantize_module(source, weights=weights)
            if quantized is not None:
                quantized.freeze()
            return quantized

        return quanto_make
    if qtype in uintx.BITS:
        bits = uintx.BITS[qtype]

        def uintx_make(module, device):
            if not uintx.can_quantize(module, bits):
                return None
            return uintx.UIntXLinear(copy.deepcopy(module).to(device) if device else module, bits)

        return uintx_make
    from torchao.quantization.quant_api import Float8WeightOnlyConfig, Int8WeightOnlyConfig, quantize_

    config = {"int8": Int8WeightOnlyConfig, "float8": Float8WeightOnlyConfig}[qtype]()  # ai-toolkit's torchao_qtypes

    def torchao_make(module, device):
        if not isinstance(module, torch.nn.Linear):  # the trainer's loop hands torchao one linear at a time
            return None
        copied = copy.deepcopy(module)
        quantize_(copied.to(device) if device else copied, config)
        return copied

    return torchao_make


def locate_adapter(adapter: str, folder: str) -> str | None:
    """The file of an accuracy recovery adapter as the trainer names it: a path (relative ones from the case
    file's folder), else `user/repo/file.safetensors` in the local HF cache. Never downloaded (None: not here)."""
    path = os.path.join(folder, os.path.expanduser(adapter))
    if os.path.isfile(path):
        return path
    source = quant.adapter_source(adapter)
    if source is None:
        return None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return hf_hub_download(source[0], filename=source[1], local_files_only=True)
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None


def _device_of(module: torch.nn.Module) -> torch.device | None:
    tensor = next(module.parameters(recurse=False), None)
    return None if tensor is None else tensor.device


class Quantization:
    """A pipeline's quantization state: the trainer's qtypes for its transformer and its text encoder, or none."""

    def __init__(self, pipe, device: str):
        self.pipe, self.device = pipe, device
        self.transformer = Part(pipe.transformer, "transformer")
        self.text_encoder = Part(pipe.text_encoder, "text encoder")

    @property
    def state(self) -> tuple[str, str]:
        return self.transformer.state, self.text_encoder.state

    @property
    def on(self) -> bool:
        return self.state != ("none", "none")

    def apply(self, transformer_qtype: str, text_encoder_qtype: str, before, adapters: dict | None = None) -> dict[str, float]:
        """Quantize (or un-quantize) each part as asked; `before()` runs first when the transformer changes (the
        LoRA comes off: the trainer builds its network on the quantized base). Returns stage timings."""
        if (transformer_qtype, text_encoder_qtype) == self.state:
            return {}
        adapters = adapters or {}
        for qtype in (transformer_qtype, text_encoder_qtype):
            if qtype != "none":
                problem = quant.replay_problem(qtype, installed(), adapters)
                if problem:
                    raise CaseRunError(f"the trainer's quantization cannot be replayed: {problem}", quant.INSTALL)
        start = time.perf_counter()
        if transformer_qtype != self.transformer.state:
            before()
            adapter = quant.QType.parse(transformer_qtype).adapter if transformer_qtype != "none" else None
            self.transformer.use(transformer_qtype, self._transformer_where, adapters.get(adapter))
        self.text_encoder.use(text_encoder_qtype, lambda name: None)  # quantized where it lies: the device
        return {"quantize": time.perf_counter() - start}

    def note(self) -> str:
        """What the report says beside a render on quantized parts."""
        parts = [part.described() for part in (self.transformer, self.text_encoder) if part.state != "none"]
        versions = installed()
        libraries = {quant.REPLAYED[quant.QType.parse(p.state).name] for p in (self.transformer, self.text_encoder) if p.state != "none"}
        library = ", ".join(f"{name} {versions[name]}" for name in sorted(libraries))
        return f"rendered on the trainer's quantized model: {', '.join(parts)} ({library}, as ai-toolkit's quantize_model and quantize)"

    @contextmanager
    def regime(self):
        """The trainer's process state while rendering on these parts: after any torchao quantization, torchao 0.10.0
        has set `torch.set_float32_matmul_precision("high")` for the rest of the run (TF32 for float32 matmuls on
        CUDA); parity sets it for the render alone and puts the reference path's back."""
        torchao = any(quant.QType.parse(p.state).name in quant.SETS_HIGH_PRECISION for p in (self.transformer, self.text_encoder))
        if not torchao:
            yield
            return
        precision = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("high")
        try:
            yield
        finally:
            torch.set_float32_matmul_precision(precision)

    def _transformer_where(self, name: str) -> str | None:
        """The blocks on the training device (where the transformer lies here), the rest on the CPU."""
        return None if name == BLOCKS or name.startswith(BLOCKS + ".") else "cpu"
