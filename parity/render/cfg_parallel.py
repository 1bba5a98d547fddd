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

from parity.render.lora import is_tuner


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
