"""The reference server's offload modes and parity's `auto` choice among them (pure; no torch).

ai-toolkit-inference applies exactly one of three modes when it loads a pipeline (src/pipelines/base.py
`_apply_offload_mode`, before `_load_lora`; the setting is OFFLOAD_MODE, default none):
- none: `pipe.to(device)`: every component on the GPU; a FUSE model's LoRA is fused there.
- model: diffusers' `enable_model_cpu_offload()`: components wait on the CPU and move whole to the GPU when they
  run; a FUSE model's LoRA is loaded and fused while the transformer sits on the CPU (PEFT computes a bf16 delta
  in float32 there), so the fused weights, and the pixels, differ from none.
- sequential: `enable_sequential_cpu_offload()`: every submodule's weights move to the GPU only for its forward.
The pixels follow the mode: each mode is its own reference.
"""

from __future__ import annotations

from dataclasses import dataclass

MODES = ("none", "model", "sequential")
CHOICES = (*MODES, "auto")
DEFAULT = "none"  # the server's OFFLOAD_MODE default

# what each mode does to the pixels, said in the report beside the mode
EFFECT = {
    "none": "every component on the GPU (the server's default)",
    "model": "components move whole between CPU and GPU when they run; a LoRA the server fuses (FUSE models) is "
    "fused while the transformer sits on the CPU (float32 delta), so such pixels differ from offload none, as the "
    "server's do",
    "sequential": "each layer's weights move to the GPU only for its own forward (the least GPU memory, the slowest)",
}


def reserve_for(activations: int) -> int:
    """What the GPU must keep free for a render: twice its estimated activations, room for the libraries'
    workspaces too. Both `auto` and the weight copy's placement keep it (a GPU filled to the brim ran other
    kernels at full size; the factor 2 is a judgement, not a measured threshold)."""
    return 2 * activations


def check(mode: str) -> str:
    """The mode, or ValueError naming the choices."""
    if mode not in CHOICES:
        raise ValueError(f"offload must be one of {', '.join(CHOICES)}, not {mode!r}")
    return mode


@dataclass(frozen=True)
class Need:
    """GPU memory a run asks for, in bytes: each component's weights and the largest case's activations."""

    weights: dict[str, int]  # component name -> bytes of its parameters and buffers
    activations: int
    largest: str  # which case, in words

    @property
    def reserve(self) -> int:
        return reserve_for(self.activations)

    def for_mode(self, mode: str) -> int:
        """Bytes a mode needs on the GPU: every component (none); the largest component, which runs alone
        (model); one layer at a time, counted as nothing (sequential); each with the reserve."""
        if mode == "none":
            return sum(self.weights.values()) + self.reserve
        if mode == "model":
            return max(self.weights.values(), default=0) + self.reserve
        return self.reserve


@dataclass(frozen=True)
class Choice:
    mode: str
    reason: str


def choose(requested: str, device: str, need: Need | None = None, budget: int | None = None) -> Choice:
    """The mode a run uses: the one asked for; for `auto`, none when it fits in `budget` bytes, else model, else
    sequential (on the CPU: none, as there is no GPU memory to save)."""
    if check(requested) != "auto":
        return Choice(requested, "asked for")
    if not device.startswith("cuda") or need is None or budget is None:
        return Choice("none", "auto on the CPU: the weights already sit in host memory")
    for mode in MODES:
        if need.for_mode(mode) <= budget or mode == "sequential":
            return Choice(mode, _why(mode, need, budget, device))
    raise AssertionError("unreachable")


def _why(mode: str, need: Need, budget: int, device: str) -> str:
    gb = 1e9
    room = f"{device} allows {budget / gb:.1f} GB"
    estimate = (
        f"weights {sum(need.weights.values()) / gb:.1f} GB (largest component {max(need.weights.values(), default=0) / gb:.1f} GB)"
        f" + twice the activations of the largest case ({need.largest}, ~{need.activations / gb:.1f} GB)"
    )
    if mode == "none":
        return f"auto: everything fits ({estimate}; {room})"
    if mode == "model":
        return f"auto: the whole model does not fit, its largest component does ({estimate}; {room})"
    if need.for_mode("sequential") > budget:
        return f"auto: not even one component fits; sequential offload is the last resort ({estimate}; {room})"
    return f"auto: no component fits whole ({estimate}; {room})"


def note(choice: Choice, cuda: bool) -> str | None:
    """What the report says of the mode a render ran in: nothing for the server's default as asked on a GPU."""
    if not cuda and choice.reason != "asked for":
        return f"offload {choice.mode} ({choice.reason})"
    if choice.mode != DEFAULT or choice.reason != "asked for":
        return f"offload {choice.mode} ({choice.reason}): {EFFECT[choice.mode]}"
    return None

