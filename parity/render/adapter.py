"""ai-toolkit's accuracy recovery adapter (`qtype: "uint3|<adapter>"`), replayed: where its file is, whether it is
one the trainer's network would load, and the linears it wraps.

What the trainer does (toolkit/util/quantize.py `quantize_model`, ostris/ai-toolkit 27a03a9): the file is a local
path, else `user/repo/file` fetched from the hub; its keys `diffusion_model.` -> `transformer.`; a PEFT-format
LoRASpecialNetwork is built over the linears it names, at the rank of the first `lora_A` with alpha = rank, moved
to the training device in the model dtype, multiplier 1, never merged (`is_ara`, `can_merge_in` false); each of
those linears is then quantized with the qtype, the rest of the transformer with uint8 (which quantizes nothing).
Its LoRA module's forward (toolkit/network_mixins.py): the base output plus lora_up(lora_down(x)) x scale x
multiplier, cast to the base output's dtype. The user's network, built later, wraps that forward.
"""

from __future__ import annotations

import functools
import os

import torch
import torch.nn.functional as F

from parity.core.errors import ModelLoadError, QuantizationRefused
from parity.facts import quant
from parity.render import uintx

FIX = "use the adapter file the job trained with: a path (relative to the case file), or user/repo/file in the local HF cache"


def locate(adapter: str, folder: str) -> str | None:
    """The adapter's file: a path (relative ones from the case file's folder), else `user/repo/file.safetensors` in
    the local HF cache. Never downloaded (None: not here)."""
    path = os.path.join(folder, os.path.expanduser(adapter))
    if os.path.isfile(path):
        return os.path.abspath(path)
    source = quant.adapter_source(adapter)
    if source is None:
        return None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return hf_hub_download(source[0], filename=source[1], local_files_only=True)
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None


def stamp(path: str) -> str:
    """The file as it is now (path, change time, size): quantized sets are kept per stamp, so an edited file is read
    again and two case files naming one relative path in different folders never share one."""
    stat = os.stat(path)
    return f"{os.path.abspath(path)}@{stat.st_mtime_ns}:{stat.st_size}"


def problem(path: str) -> str | None:
    """Why the trainer's network would not load this file as parity replays it (None: it would)."""
    stat = os.stat(path)
    return _problem(os.path.abspath(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _problem(path: str, mtime_ns: int, size: int) -> str | None:
    try:
        pairs = _pairs(path)
    except ModelLoadError as exc:
        return exc.what
    if not pairs:
        return f"{path} holds no LoRA pair"
    ranks = sorted({down.shape[0] for down, _ in pairs.values()})
    if len(ranks) > 1:
        return (
            f"{path} mixes ranks {ranks}: the trainer builds every adapter layer at the first lora_A's rank and cuts "
            "or pads the others while loading, which parity does not replay"
        )
    return None


def _pairs(path: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    from parity.cases import lorafile
    from parity.render.lora import lora_pairs

    lorafile.check(path)  # readable, of a kind a PEFT network loads
    return lora_pairs(path)  # finite, by module name


def build(root: torch.nn.Module, path: str, bits: int) -> dict[str, torch.nn.Module]:
    """The adapted linears of `root`, by name: each named linear quantized with uint`bits` on the CPU where its input
    width allows (uintx.can_quantize), wrapped with the adapter's branch on its device in its dtype. Names or
    shapes the model does not have are refused before anything is made (QuantizationRefused: the model stays)."""
    pairs = _pairs(path)
    modules = dict(root.named_modules())
    missing = sorted(name for name in pairs if not isinstance(modules.get(name), torch.nn.Linear))
    if missing:
        raise QuantizationRefused(
            f"the accuracy recovery adapter {path} names {len(missing)} layer(s) this transformer lacks "
            f"({', '.join(missing[:3])}{', …' if len(missing) > 3 else ''}): it belongs to another model",
            "use the adapter the job trained with, for this base model",
        )
    wrong = [
        f"{name} ({tuple(down.shape)} / {tuple(up.shape)} on a {modules[name].in_features}->{modules[name].out_features} linear)"
        for name, (down, up) in pairs.items()
        if down.shape[1] != modules[name].in_features or up.shape[0] != modules[name].out_features or up.shape[1] != down.shape[0]
    ]
    if wrong:
        raise QuantizationRefused(f"the accuracy recovery adapter {path} does not fit this transformer: {'; '.join(wrong[:3])}", FIX)
    made: dict[str, torch.nn.Module] = {}
    for name, (down, up) in pairs.items():
        module = modules[name]
        home = module.weight.device
        base = module
        if uintx.can_quantize(module, bits):
            source = module if home.type == "cpu" else _cpu_copy(module)  # quantized where the trainer's lies
            base = uintx.UIntXLinear(source, bits).to(home)
        made[name] = AdaptedLinear(base, down, up, module.weight.dtype, home)
    return made


def _cpu_copy(module: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(module).to("cpu")


class AdaptedLinear(torch.nn.Linear):
    """A linear with the adapter's branch around it: the base's output (quantized where it could be) plus the
    branch in the model's dtype, as the trainer's LoRA module forward computes it. A Linear, so the user's LoRA
    finds and wraps it."""

    def __init__(self, base: torch.nn.Linear, down: torch.Tensor, up: torch.Tensor, dtype: torch.dtype, device):
        torch.nn.Module.__init__(self)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.base = base
        self.register_buffer("down", down.to(device, dtype))
        self.register_buffer("up", up.to(device, dtype))
        self.register_buffer("scale", torch.tensor(1.0, dtype=dtype, device=device))  # alpha / rank, cast by force_to
        self.register_buffer("multiplier", torch.tensor((1.0,), dtype=dtype, device=device))  # the network's, 1

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    @property
    def bias(self):
        return self.base.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        branch = F.linear(F.linear(x.to(self.down.dtype), self.down), self.up) * self.scale
        multiplier = self.multiplier.view(*self.multiplier.shape, *([1] * (branch.dim() - self.multiplier.dim())))
        return out + (branch * multiplier).to(out.dtype)
