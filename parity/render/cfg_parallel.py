"""CFG-parallel: each step's unconditional transformer pass runs on a second device while the conditional pass
runs on the first, on a bit-identical copy of the transformer.

Each pass is the same batch-1 forward it is in the stock loop (no batching of cond and uncond), so on two GPUs
of the same model the kernels and their bits are the same (on the CPU only in MKL's reproducible mode, which
parity sets: the copy's weights sit at other addresses, and MKL otherwise picks a branch by alignment); the unconditional output is copied back (a copy is
exact) and combined on the first device by the same code as before (`denoise.generate`). Running both at once
is what the threads buy: PyTorch releases the GIL while it launches and waits for kernels, like
`torch.nn.parallel.parallel_apply`.

The copy holds the *base* modules of the source transformer: a fused PEFT layer's forward is its base layer's
forward, so the copy carries the fused weights and no PEFT wrapper. It follows the source's weights whenever
the LoRA state changes (`follow`), and its `zero_cond_t` flags before every render (a knob flips them).
An unmerged LoRA branch (ai-toolkit's forward hooks on the source) cannot be mirrored that way: the engine
renders such a wiring on one device.
"""

from __future__ import annotations

import copy
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext

import torch

from parity.core.errors import ModelLoadError
from parity.models.knobs import LoraMethod
from parity.render.lora import is_tuner

# LoRA applications that live in the main transformer's modules, which the copy (base weights) lacks
ONE_DEVICE_METHODS = (LoraMethod.AITK_UNMERGED, LoraMethod.DIFFUSERS_ADAPTER)


class CfgParallel:
    """An engine's second device: the copy of the loaded model's transformer there, made when a model is held."""

    def __init__(self, device: str, cfg_device: str):
        self.device, self.cfg_device = device, cfg_device
        self.replica: UncondReplica | None = None

    def refuse(self, mode: str) -> None:
        """ModelLoadError: a whole transformer on each device is offload none only."""
        raise ModelLoadError(
            f"CFG-parallel keeps a whole transformer on {self.cfg_device} beside one on {self.device}; it runs with "
            f"offload none only, and this case asks for offload {mode}",
            "drop --cfg-device (--parity-cfg-device), or run with --offload none (--parity-offload none, or "
            "`offload: none` in the case file) on GPUs that hold the model",
        )

    def hold(self, transformer: torch.nn.Module, mode: str) -> None:
        if mode != "none":
            self.refuse(mode)
        self.replica = UncondReplica(transformer, self.cfg_device)

    def for_render(self, lora_key: tuple, method: LoraMethod, timings: dict[str, float]) -> UncondReplica | None:
        """The copy, holding the weights the main transformer holds now; None when it cannot (an unmerged LoRA)."""
        if self.replica is None or method in ONE_DEVICE_METHODS:
            return None
        seconds = self.replica.follow(lora_key)
        if seconds is not None:
            timings["cfg_copy"] = seconds
        return self.replica

    def skipped_note(self, method: LoraMethod, quantized: bool = False) -> str:
        why = "the transformer is quantized as the trainer quantized it" if quantized else f"the LoRA runs unmerged ({method.value})"
        return f"CFG-parallel not used for this render: {why}, in the transformer on {self.device} only; both passes ran there"

    def close(self) -> None:
        if self.replica is not None:
            self.replica.close()
            self.replica = None


class UncondReplica:
    """A weight-for-weight copy of a transformer on another device, and a thread that runs passes on it."""

    def __init__(self, transformer: torch.nn.Module, device: str):
        self.source = transformer
        self.device = torch.device(device)
        self.model = _plain_copy(transformer, self.device)
        self.state: object = _UNSYNCED
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parity-cfg-parallel")

    def follow(self, state: object) -> float | None:
        """Copy the source's current weights if `state` (the LoRA state they come from) changed; seconds taken."""
        if state == self.state:
            return None
        start = time.perf_counter()
        self.state = _UNSYNCED
        sources = dict(_base_tensors(self.source))
        for name, target in _base_tensors(self.model):
            target.copy_(sources[name])
        _sync(self.device)
        self.state = state
        return time.perf_counter() - start

    def mirror_flags(self) -> None:
        """The per-module `zero_cond_t` switches, as the source has them now."""
        for name, module in self.source.named_modules():
            if hasattr(module, "zero_cond_t") and not is_tuner(module):
                self.model.get_submodule(name).zero_cond_t = module.zero_cond_t

    def submit(self, *, embeds, mask, model_input, timestep, img_shapes, tokens: int, attention_kwargs) -> Future:
        """Start one unconditional pass (inputs on the source device, `timestep` already divided by 1000);
        the future's result is the output cut to `tokens`, back on the source device."""
        back = model_input.device
        return self._pool.submit(
            self._pass, embeds, mask, model_input, timestep, img_shapes, tokens, dict(attention_kwargs), back
        )

    def _pass(self, embeds, mask, model_input, timestep, img_shapes, tokens, attention_kwargs, back):
        device = self.device
        guard = torch.cuda.device(device) if device.type == "cuda" else nullcontext()
        with torch.inference_mode(), guard, self.model.cache_context("uncond"):
            out = self.model(
                hidden_states=model_input.to(device),
                timestep=timestep.to(device),
                guidance=None,
                encoder_hidden_states_mask=None if mask is None else mask.to(device),
                encoder_hidden_states=embeds.to(device),
                img_shapes=img_shapes,
                attention_kwargs=attention_kwargs,
                return_dict=False,
            )[0]
            return out[:, :tokens].to(back)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.model = None


_UNSYNCED = object()


def _plain_copy(transformer: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The transformer's module tree on `device` with every PEFT wrapper replaced by its base layer.

    Built by deepcopy so every attribute the forward reads is the source's; parameters and buffers become
    uninitialised tensors on `device` (no second copy on the source device), filled by `follow`.
    """
    memo: dict[int, object] = {}
    for tensor in (*transformer.parameters(), *transformer.buffers()):
        empty = torch.empty_like(tensor, device=device)
        memo[id(tensor)] = torch.nn.Parameter(empty, requires_grad=False) if isinstance(tensor, torch.nn.Parameter) else empty
    replica = copy.deepcopy(transformer, memo)
    tuners = [name for name, module in replica.named_modules() if name and is_tuner(module)]
    for name in tuners:
        parent, _, child = name.rpartition(".")
        holder = replica.get_submodule(parent) if parent else replica
        setattr(holder, child, getattr(holder, child).get_base_layer())
    for module in replica.modules():
        _drop_hooks(module)
    return replica.eval().requires_grad_(False)


def _drop_hooks(module: torch.nn.Module) -> None:
    """deepcopy copies forward hooks too: a source holding ai-toolkit's unmerged LoRA branch (forward hooks, see
    lora.AitkLora) when the copy is made would add that branch to every later pass of the copy. The copy runs
    the plain fused forward only (the engine never gives it a render with the branch)."""
    for hooks in (module._forward_hooks, module._forward_pre_hooks, module._forward_hooks_with_kwargs,
                  module._forward_hooks_always_called, module._forward_pre_hooks_with_kwargs):
        hooks.clear()


def _base_tensors(model: torch.nn.Module):
    """(name, tensor) of every parameter and buffer a plain forward reads, named as in a model without PEFT."""
    for name, module in model.named_modules():
        if is_tuner(module):
            continue
        plain = _plain_name(name)
        for key, tensor in (*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)):
            if ".lora_" in f".{plain}":  # PEFT's own A/B weights: not part of the fused forward
                continue
            yield (f"{plain}.{key}" if plain else key), tensor.data


def _plain_name(name: str) -> str:
    return ".".join(part for part in name.split(".") if part != "base_layer")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
