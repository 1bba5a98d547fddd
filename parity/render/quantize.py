"""The trainer's quantized model, replayed: the transformer and the text encoder quantized as ai-toolkit quantizes
them, and swapped in and out of a loaded pipeline without touching the loaded weights.

What ai-toolkit does (ostris/ai-toolkit 27a03a9; the Qwen classes in extensions_built_in/diffusion_models/qwen_image/):
- the transformer, after `from_pretrained` and before the LoRA network exists (`quantize_model`,
  toolkit/util/quantize.py): each of `transformer_blocks` is moved to the training device in the training dtype,
  every module quantized (its `quantize` loop: one module at a time, a module whose quantization raises left as
  it is), frozen, moved back to the CPU; then the modules outside the blocks are quantized where they lie (the
  CPU), the blocks' quantized modules skipped. Qwen names no module to keep in full precision. With an accuracy
  recovery adapter, see adapter.py;
- the text encoder, moved to the training device first, quantized whole and frozen (`quantize` + `freeze`);
- a LoRA cannot be merged into a quantized base: it runs as an unmerged float32 branch (`can_merge_in` false).

Here each quantizable module is quantized from the loaded module (quanto makes a new module and leaves its source
alone; torchao and the uintx backend work on a copy) and put in its place; the loaded modules are kept, so going
back is exact, and the quantized ones are kept per qtype, so going forth again costs no quantization. The
libraries are imported only when a qtype is replayed: the reference path never loads them.
"""

from __future__ import annotations

import copy
import time
from contextlib import contextmanager
from importlib import metadata

import torch

from parity.core.errors import QuantizationRefused
from parity.facts import quant
from parity.render import adapter as adapting
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
    the loaded ones are in (moves between devices copy bits exactly); modules go one at a time, so the GPU never
    holds both sets: the full model and its quantized copy do not fit twice on an 80 GB card."""

    def __init__(self, root: torch.nn.Module, name: str):
        self.root, self.name = root, name
        self.originals: dict[str, torch.nn.Module] = {}  # module name -> the loaded module
        self.homes: dict[str, torch.device | None] = {}  # module name -> the device the loaded module lies on
        self.made: dict[str, dict[str, torch.nn.Module]] = {}  # key -> module name -> its quantized module
        self.skipped: dict[str, int] = {}  # key -> modules whose quantization raised (left as loaded, as the trainer)
        self.state, self.label = "none", "none"  # the key in use; the qtype as the case wrote it

    def use(self, key: str, label: str, build) -> None:
        """Put the modules of `key` in ("none": the loaded ones); `build()` makes them the first time."""
        if key == self.state:
            return
        if self.state != "none":
            self._place(self.made[self.state], park=True)
        self._swap(self.originals)
        self._place(self.originals, park=False)
        self.state, self.label = "none", "none"
        setattr(self.root, quant.TAG, None)
        if key == "none":
            return
        if key not in self.made:
            self.made[key] = build()
        made = self.made[key]
        in_use = {id(m) for module in made.values() for m in module.modules()}  # an adapter's unquantized base
        for name, module in made.items():  # one at a time: out goes the loaded module, in comes the made one
            if id(self.originals[name]) not in in_use:
                self._place({name: self.originals[name]}, park=True)
            self._place({name: module}, park=False)
            self._swap({name: module})
        self.state, self.label = key, label
        setattr(self.root, quant.TAG, key)

    def quantize(self, qtype: str, quantize_where) -> dict[str, torch.nn.Module]:
        """Every module the trainer's loop would quantize, quantized from a module the loaded one never is. A module
        whose quantization raises stays as it is, as the trainer prints and goes on (counted for the note); running
        out of memory is not that."""
        make = _maker(qtype)
        made: dict[str, torch.nn.Module] = {}
        skipped = 0
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
                except torch.OutOfMemoryError:
                    raise
                except Exception:  # noqa: BLE001 - the trainer's loop: print, go on
                    quantized, skipped = None, skipped + 1
                if quantized is None:
                    continue
                if hasattr(quantized, "freeze"):
                    quantized.freeze()  # quanto's freeze, outside the trainer's try as well
                if home is not None:
                    quantized.to(home)
                made[name] = quantized
                self._keep(name, module, quantized)
                self._place({name: module}, park=True)  # one layer at a time
        finally:
            torch.set_float32_matmul_precision(precision)
        self.skipped[qtype] = skipped
        return made

    def adapted(self, path: str, bits: int) -> dict[str, torch.nn.Module]:
        """The accuracy recovery adapter's linears (adapter.build), the loaded ones kept."""
        made = adapting.build(self.root, path, bits)
        modules = dict(self.root.named_modules())
        for name, module in made.items():
            self._keep(name, modules[name], module)
        return made

    def described(self) -> str:
        """'transformer qfloat8 (34 layers)'."""
        count = len(self.made.get(self.state, {}))
        qtype = quant.QType.parse(self.label).name
        if count == 0:
            return f"{self.name} {self.label} (no layer: ai-toolkit quantizes none with {qtype})"
        skipped = self.skipped.get(self.state, 0)
        left = f"; {skipped} left as loaded: the library raised on them, and the trainer goes on" if skipped else ""
        return f"{self.name} {self.label} ({count} layer{'s' if count != 1 else ''}{left})"

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

    def _swap(self, modules: dict[str, torch.nn.Module]) -> None:
        for name, module in modules.items():
            parent, _, child = name.rpartition(".")
            setattr(self.root.get_submodule(parent) if parent else self.root, child, module)


def _maker(qtype: str):
    """`make(module, device)`: the module quantized as the trainer's library quantizes it (on `device`, else where it
    lies), unfrozen, or None where that library leaves it alone."""
    if quant.REPLAYED[qtype] == "optimum-quanto":
        from optimum.quanto import qtypes
        from optimum.quanto.nn import QModuleMixin, quantize_module

        weights = qtypes[qtype]

        def quanto_make(module, device):
            if isinstance(module, QModuleMixin):
                return None
            return quantize_module(copy.deepcopy(module).to(device) if device else module, weights=weights)

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
    def on(self) -> bool:
        return (self.transformer.state, self.text_encoder.state) != ("none", "none")

    @property
    def transformer_on(self) -> bool:
        return self.transformer.state != "none"

    def apply(self, transformer_qtype: str, text_encoder_qtype: str, before, adapters: dict | None = None) -> dict[str, float]:
        """Quantize (or un-quantize) each part as asked; `before()` runs first when the transformer changes (the
        LoRA comes off: the trainer builds its network on the quantized base). `adapters`: an adapter as written ->
        its file. QuantizationRefused, before anything changes, where the replay cannot run. Returns timings."""
        adapters = adapters or {}
        libraries = installed()
        for qtype in (transformer_qtype, text_encoder_qtype):
            parsed = quant.QType.parse(qtype)
            path = adapters.get(parsed.adapter) if parsed.adapter is not None else None
            problem = None if qtype == "none" else quant.replay_problem(
                qtype, libraries, {parsed.adapter: (path, path and adapting.problem(path))} if parsed.adapter else None
            )
            if problem:
                raise QuantizationRefused(f"the trainer's quantization cannot be replayed: {problem}", quant.INSTALL)
        key, build = self._transformer_build(transformer_qtype, adapters)
        start = time.perf_counter()
        if key != self.transformer.state:
            before()
            self.transformer.use(key, transformer_qtype, build)
        self.text_encoder.use(  # quantized where it lies: the training device
            text_encoder_qtype, text_encoder_qtype, lambda: self.text_encoder.quantize(text_encoder_qtype, lambda name: None)
        )
        return {"quantize": time.perf_counter() - start}

    def _transformer_build(self, qtype: str, adapters: dict):
        """The key of the transformer's set (an adapter's file stamp included) and how to make it."""
        if qtype == "none":
            return "none", None
        parsed = quant.QType.parse(qtype)
        if parsed.adapter is None:
            return qtype, lambda: self.transformer.quantize(qtype, self._transformer_where)
        path = adapters[parsed.adapter]
        return f"{parsed.name}|{adapting.stamp(path)}", lambda: self.transformer.adapted(path, uintx.BITS[parsed.name])

    def note(self) -> str:
        """What the report says beside a render on quantized parts."""
        parts = [p for p in (self.transformer, self.text_encoder) if p.state != "none"]
        versions = installed()
        libraries = sorted({quant.REPLAYED[quant.QType.parse(p.label).name] for p in parts})
        library = ", ".join(f"{name} {versions[name]}" for name in libraries)
        shown = ", ".join(p.described() for p in parts)
        return f"rendered on the trainer's quantized model: {shown} ({library}, as ai-toolkit's quantize_model and quantize)"

    @contextmanager
    def regime(self):
        """The trainer's process state while rendering on these parts: after any torchao quantization, torchao 0.10.0
        has set `torch.set_float32_matmul_precision("high")` for the rest of the run (TF32 for float32 matmuls on
        CUDA); parity sets it for the render alone and puts the reference path's back."""
        parts = (self.transformer, self.text_encoder)
        if not any(quant.QType.parse(p.label).name in quant.SETS_HIGH_PRECISION for p in parts):
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
