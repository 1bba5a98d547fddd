"""A LoRA file read without torch: its header, the modules it targets and the shapes of their weights.

`parity validate` and the loader both start here, so a file `run` would refuse for its own content (not a
safetensors file, a damaged header, no LoRA weights, a down/up pair that does not fit together) is refused by
`validate` as well. What only the model can tell (a shape that does not fit its layers) is checked against the
loaded transformer before anything is loaded into it (parity.render.lora).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from parity.core.errors import ModelLoadError

DOWN_SUFFIXES = (".lora_A.weight", ".lora_down.weight")
UP_SUFFIXES = (".lora_B.weight", ".lora_up.weight")
PREFIXES = ("diffusion_model.", "transformer.")


@dataclass(frozen=True)
class LoraLayer:
    """One targeted linear: down is [rank, in_features], up is [out_features, rank]."""

    down: tuple[int, ...]
    up: tuple[int, ...]

    @property
    def rank(self) -> int:
        return self.down[0]


@dataclass(frozen=True)
class LoraFile:
    path: str
    layers: dict[str, LoraLayer]  # transformer module name -> shapes


def module_name(key: str, suffix: str) -> str:
    name = key[: -len(suffix)]
    for prefix in PREFIXES:
        name = name.removeprefix(prefix)
    return name


def inspect(path: str) -> LoraFile:
    """The file's targeted modules and weight shapes; ModelLoadError saying what is wrong and what to do."""
    if not path.endswith(".safetensors"):
        raise ModelLoadError(
            f"LoRA is not a .safetensors file: {path} (pickled checkpoints are never loaded)",
            "use the .safetensors file ai-toolkit saved",
        )
    if not os.path.isfile(path):
        raise ModelLoadError(f"LoRA file not found: {path}", "check `loras[].path` (relative to the case file)")
    from safetensors import safe_open

    try:
        with safe_open(path, framework="numpy") as fh:
            shapes = {key: tuple(fh.get_slice(key).get_shape()) for key in fh.keys()}  # noqa: SIM118
    except Exception as exc:  # noqa: BLE001 (safetensors raises its own SafetensorError and OSError; both mean the same)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        size = os.path.getsize(path)
        raise ModelLoadError(
            f"LoRA {path} ({size:,} bytes) is not a readable safetensors file: {reason}",
            "the file is empty, truncated or damaged: copy it again from the training output folder",
        ) from None
    halves: dict[str, dict[str, tuple[int, ...]]] = {}
    for key, shape in shapes.items():
        for role, suffixes in (("down", DOWN_SUFFIXES), ("up", UP_SUFFIXES)):
            for suffix in suffixes:
                if key.endswith(suffix):
                    halves.setdefault(module_name(key, suffix), {})[role] = shape
    if not halves:
        raise ModelLoadError(
            f"LoRA {path} holds no LoRA weights ({len(shapes)} tensors, none named *.lora_A/lora_B or "
            "*.lora_down/lora_up)",
            "point `loras[].path` at a LoRA file (ai-toolkit or diffusers key format), not a model checkpoint",
        )
    layers: dict[str, LoraLayer] = {}
    for name, pair in sorted(halves.items()):
        if set(pair) != {"down", "up"}:
            missing = "up" if "down" in pair else "down"
            raise ModelLoadError(f"LoRA {path}: {name} has no {missing} weight", "re-save the LoRA; the file is incomplete")
        down, up = pair["down"], pair["up"]
        if len(down) != 2 or len(up) != 2 or down[0] != up[1]:
            raise ModelLoadError(
                f"LoRA {path}: {name}: down {list(down)} and up {list(up)} do not fit together "
                "(down is [rank, inputs], up is [outputs, rank])",
                "re-save the LoRA; the file is damaged or not a linear LoRA",
            )
        layers[name] = LoraLayer(down, up)
    return LoraFile(path, layers)


def shape_problems(lora: LoraFile, linears: dict[str, tuple[int, int]]) -> list[str]:
    """Targeted layers whose shapes do not fit the model's linears ({name: (in_features, out_features)})."""
    problems = []
    for name, layer in lora.layers.items():
        if name not in linears:
            continue
        inputs, outputs = linears[name]
        if layer.down[1] != inputs or layer.up[0] != outputs:
            problems.append(
                f"{name}: the LoRA maps {layer.down[1]} -> {layer.up[0]} features, the model's layer {inputs} -> {outputs}"
            )
    return problems
