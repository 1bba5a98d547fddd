"""LoRA files as ai-toolkit's trainer writes them for a Qwen transformer, written for the tests from a reading of its
code (ai-toolkit 27a03a9), not imported from it:

- `NetworkConfig` (toolkit/config_modules.py): type lora by default; linear 4; alpha 1.0 and linear_alpha = alpha;
  transformer_only true; LoKr with lokr_full_rank (its default) sets linear = linear_alpha = 9999999999.
- `LoRASpecialNetwork.__init__` / `create_modules` (toolkit/lora_special.py): a Qwen model is a transformer, which
  forces the PEFT format (LoKr excepted under `old_lokr_format: true`), and a PEFT-format network sets alpha = lora_dim.
  Modules: every Linear under the QwenImageTransformer2DModel named `transformer.<path>`; a full-weight module
  (`full_if_contains`, or `all_layers` for leaves that are not linear) instead of a LoRA; skipped when a word of
  `ignore_if_contains` is in the name, or (`transformer_only`) when the name lacks `transformer_blocks`; with
  `only_if_contains`, kept only when a word of it is in the name.
- Module tensors: LoRAModule lora_down [rank, in] / lora_up [out, rank] (fullrank: lora_down [out, in] and no up) and
  an alpha buffer; DoRAModule lora_down / lora_up and a magnitude [out] (no alpha); LokrModule (toolkit/models/lokr.py)
  lokr_w1 [out_l, in_m] and lokr_w2 [out_k, in_n], or lokr_w2_a [out_k, dim] / lokr_w2_b [dim, in_n] when
  dim < max(out_k, in_n) / 2, and an alpha buffer (alpha = dim when both factors are full); FullModule diff [out, in]
  and diff_b [out].
- `get_state_dict` (toolkit/network_mixins.py): every tensor cast to save.dtype (`get_torch_dtype`: 8bit is float8
  e4m3); in PEFT format `.alpha` dropped except for LoKr, lora_down -> lora_A, lora_up -> lora_B, `$$` -> `.`; old
  LoKr names `lora_transformer_…` become `lycoris_…`; then `QwenImageModel.convert_lora_weights_before_save` turns
  every `transformer.` into `diffusion_model.`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

SAVE_DTYPES = {"float16": torch.float16, "fp16": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
               "float32": torch.float32, "fp32": torch.float32, "8bit": torch.float8_e4m3fn}
LOKR_FULL_RANK = 9999999999


@dataclass(frozen=True)
class Network:
    """A job config's `network:` block (the keys the network code reads)."""

    type: str = "lora"
    linear: int = 4
    linear_alpha: float | None = None  # None: NetworkConfig's alpha, 1.0
    transformer_only: bool = True
    only_if_contains: tuple[str, ...] | None = None
    ignore_if_contains: tuple[str, ...] = ()
    full_if_contains: tuple[str, ...] = ()
    all_layers: bool = False
    lokr_full_rank: bool = True
    lokr_factor: int = -1
    old_lokr_format: bool = False


def factors(dimension: int, factor: int = -1) -> tuple[int, int]:
    """LoKr's split of a dimension into (m, n), m <= n, m x n = dimension: a given factor that divides it, else the
    divisor pair closest to the square root (no larger than `factor` when one is given)."""
    if factor > 0 and dimension % factor == 0:
        return factor, dimension // factor
    limit = dimension if factor <= 0 else factor
    best = 1
    for m in range(1, int(dimension**0.5) + 1):
        if dimension % m == 0 and m <= limit:
            best = m
    return best, dimension // best


def state_dict(transformer: torch.nn.Module, network: Network, save_dtype: str = "float16", seed: int = 0,
               zero_up: bool = False) -> dict[str, torch.Tensor]:
    """The tensors ai-toolkit's `save_weights` writes for this network on this transformer."""
    kind = network.type.lower()
    peft = not (kind == "lokr" and network.old_lokr_format)
    dim = network.linear
    alpha = network.linear_alpha if network.linear_alpha is not None else 1.0
    if kind == "lokr" and network.lokr_full_rank:
        dim = alpha = LOKR_FULL_RANK
    if peft:
        alpha = dim
    draw = np.random.default_rng(seed)
    tensors: dict[str, torch.Tensor] = {}
    for child, module in transformer.named_modules():
        if not child:
            continue
        clean = f"transformer.{child}"
        name = clean.replace(".", "$$") if peft else f"lora_transformer.{child}".replace(".", "_")
        linear = type(module).__name__ == "Linear"
        leaf = not list(module.children()) and isinstance(getattr(module, "weight", None), torch.nn.Parameter)
        full = leaf and (any(w in clean or w in name for w in network.full_if_contains) or (network.all_layers and not linear))
        if any(w in clean for w in network.ignore_if_contains) or (network.transformer_only and "transformer_blocks" not in clean):
            continue
        if network.only_if_contains is not None and not any(w in clean or w in name for w in network.only_if_contains):
            continue
        if full:
            tensors[f"{name}.diff"] = _values(draw, tuple(module.weight.shape))
            if getattr(module, "bias", None) is not None:
                tensors[f"{name}.diff_b"] = _values(draw, tuple(module.bias.shape))
        elif linear:
            tensors.update(_module(name, module, kind, dim, alpha, network, draw, zero_up))
    return _saved_form(tensors, peft, kind, SAVE_DTYPES[save_dtype])


def _module(name, linear, kind, dim, alpha, network, draw, zero_up) -> dict[str, torch.Tensor]:
    out, inp = linear.out_features, linear.in_features
    up = (lambda shape: torch.zeros(shape)) if zero_up else (lambda shape: _values(draw, shape))
    if kind == "lokr":
        out_l, out_k = factors(out, network.lokr_factor)
        in_m, in_n = factors(inp, network.lokr_factor)
        found = {f"{name}.lokr_w1": _values(draw, (out_l, in_m))}
        full_w2 = dim >= max(out_k, in_n) / 2
        if full_w2:
            found[f"{name}.lokr_w2"] = up((out_k, in_n))
        else:
            found[f"{name}.lokr_w2_a"] = _values(draw, (out_k, dim))
            found[f"{name}.lokr_w2_b"] = up((dim, in_n))
        found[f"{name}.alpha"] = torch.tensor(dim if full_w2 else alpha)  # both factors full: scale 1
        return found
    if kind == "fullrank":
        return {f"{name}.lora_down.weight": _values(draw, (out, inp)), f"{name}.alpha": torch.tensor(alpha)}
    found = {f"{name}.lora_down.weight": _values(draw, (dim, inp)), f"{name}.lora_up.weight": up((out, dim))}
    if kind == "dora":
        found[f"{name}.magnitude"] = linear.weight.detach().float().norm(dim=1) if not linear.weight.is_meta else _values(draw, (out,))
    else:
        found[f"{name}.alpha"] = torch.tensor(alpha)
    return found


def _saved_form(tensors: dict[str, torch.Tensor], peft: bool, kind: str, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    saved = {}
    for key, value in tensors.items():
        value = value.detach().clone().to("cpu").to(dtype)
        if peft:
            if key.endswith(".alpha") and kind != "lokr":
                continue
            key = key.replace("lora_down", "lora_A").replace("lora_up", "lora_B").replace("$$", ".")
        elif kind == "lokr":
            key = key.replace("$$", ".").replace("lora_transformer_", "lycoris_")
        saved[key.replace("transformer.", "diffusion_model.")] = value
    return saved


def _values(draw: np.random.Generator, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.from_numpy(draw.uniform(-0.2, 0.2, size=shape).astype(np.float32))


def save(path: Path, transformer: torch.nn.Module, network: Network, save_dtype: str = "float16", **kwargs) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state_dict(transformer, network, save_dtype, **kwargs), str(path))
    return path
