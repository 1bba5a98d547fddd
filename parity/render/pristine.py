"""The store of untouched LoRA-targeted weights: what a restore puts back before a different LoRA state is fused.

Three ways to keep them, chosen by the run's memory policy (parity/render/memory.py) and handed to the LoRA state
as one `Keep` value: a copy on the model's GPU (when it fits beside the planned cases' activations), a copy in
pinned host memory, or nothing but per-row fingerprints, the weights being read back from the checkpoint the model
was loaded from. A plan that never restores keeps nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from parity.render.checkpoint import CheckpointWeights


class PristineMissing(Exception):
    """A change of the fused LoRA needs the untouched weights, and none were kept (the plan said one state would
    do), or reading them back from the checkpoint failed (`reason`). The engine drops the model and loads it
    again instead (exact, only slower)."""

    def __init__(self, reason: str = "", same_bits: bool = True):
        super().__init__(reason)
        self.reason = reason
        self.same_bits = same_bits  # False: the model loaded again is not the one loaded before (its files changed)


@dataclass(frozen=True)
class Keep:
    """How the untouched weights are kept for a restore."""

    copy: bool = True  # False: the plan fuses one LoRA at one scale and never leaves it, so nothing is kept
    room: Callable[[], int] | None = None  # bytes a copy may take on the GPU; None: as much as the GPU has
    read_back: CheckpointWeights | None = None  # where a copy does not fit, restores may read the weights from here
    restores: int = 0  # the restores the plan foresees when read_back is allowed (said in the report)

    def take(self, pipe, wrapped: dict[str, torch.nn.Module]) -> Untouched:
        """What a restore needs, in one of three places: copies of the weights a fuse changes in one buffer (one
        allocation, not one per layer) on the model's GPU when the whole copy fits in `room`; else, where read_back
        allows and the checkpoint holds them, nothing but fingerprints; else the copies in pinned CPU memory."""
        weights = {name: module.get_base_layer().weight.data for name, module in wrapped.items()}
        biases = {
            name: module.get_base_layer().bias.data
            for name, module in wrapped.items()
            if getattr(module.get_base_layer(), "bias", None) is not None
        }
        room = self.room() if self.room is not None else None
        if room is not None and nbytes(weights.values()) > room and self._can_read_back(pipe, weights):
            fingerprints = {name: fingerprint(weight) for name, weight in weights.items()}
            return Untouched({}, _copy_all(biases), self.read_back, fingerprints)
        sources = {**{("weight", n): t for n, t in weights.items()}, **{("bias", n): t for n, t in biases.items()}}
        copies = _copy_all(sources, room)
        return Untouched(
            {n: t for (kind, n), t in copies.items() if kind == "weight"},
            {n: t for (kind, n), t in copies.items() if kind == "bias"},
        )

    def _can_read_back(self, pipe, weights: dict[str, torch.Tensor]) -> bool:
        """Whether restores may read the weights back from the checkpoint: allowed, every weight in place on one
        device (not behind offload hooks, where a layer holds a placeholder or waits in host memory), the files
        unchanged since the load, holding every targeted weight, and giving back exactly the loaded bits of the
        first and the last of them (checked before any fuse)."""
        checkpoint = self.read_back
        if not self.restores or checkpoint is None or not weights or any_hooked(pipe):
            return False
        if len({w.device for w in weights.values()}) != 1 or next(iter(weights.values())).is_meta:
            return False
        keys = [f"{name}.weight" for name in weights]
        if not checkpoint.holds(keys) or not checkpoint.unchanged():
            return False
        for key, stored in checkpoint.read(list(dict.fromkeys((keys[0], keys[-1])))):
            live = weights[key[: -len(".weight")]]
            if stored.shape != live.shape or not same_bits(stored.to(live.dtype).to(live.device), live):
                return False
        return True


@dataclass
class Untouched:
    """The kept state: exact copies (views into one buffer), or fingerprints and the checkpoint to read back."""

    weights: dict[str, torch.Tensor]  # empty when read back from `checkpoint`
    biases: dict[str, torch.Tensor]  # exact copies (small: kept on the device)
    checkpoint: CheckpointWeights | None = None
    fingerprints: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    def check_unchanged(self) -> None:
        """PristineMissing (another model) when the checkpoint's files changed since the load."""
        if self.checkpoint is not None and not self.checkpoint.unchanged():
            raise PristineMissing(
                f"the base model's files in {self.checkpoint.folder} changed after it was loaded, so the untouched "
                "weights cannot be read back from them",
                same_bits=False,
            )

    def restore(self, wrapped: dict[str, torch.nn.Module]) -> None:
        """Put the untouched weights and biases back into the wrapped layers' base layers."""
        if self.checkpoint is not None:
            self._read_back(wrapped)
        for name, module in wrapped.items():
            base = module.get_base_layer()
            if self.checkpoint is None:
                base.weight.data.copy_(self.weights[name])
            if name in self.biases:
                base.bias.data.copy_(self.biases[name])

    def _read_back(self, wrapped: dict[str, torch.nn.Module]) -> None:
        """The loaded weights from the checkpoint, each cast on the CPU as from_pretrained casts it, then checked
        against the fingerprint taken before the first fuse; a mismatch leaves the model to be loaded again."""
        assert self.checkpoint is not None and self.fingerprints is not None
        weights = {name: module.get_base_layer().weight.data for name, module in wrapped.items()}
        try:
            self.checkpoint.read_into({f"{name}.weight": weight for name, weight in weights.items()})
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise PristineMissing(f"reading the untouched weights back from {self.checkpoint.folder} failed ({first})") from exc
        for name, weight in weights.items():
            if not torch.equal(fingerprint(weight), self.fingerprints[name]):
                raise PristineMissing(f"{name}.weight read back from {self.checkpoint.folder} is not the weight the model loaded")

    @property
    def nbytes(self) -> int:
        return nbytes((*self.weights.values(), *self.biases.values()))

    def places(self) -> dict[str, int]:
        """Where the kept copy lies: device -> bytes."""
        found: dict[str, int] = {}
        for t in (*self.weights.values(), *self.biases.values()):
            found[str(t.device)] = found.get(str(t.device), 0) + t.numel() * t.element_size()
        return found

    def note(self, seconds: float, device: str, restores: int) -> str:
        """Where the untouched weights come from when a switch restores them, said once in the report."""
        if self.checkpoint is not None:
            return (
                f"no copy of the LoRA-targeted weights is kept: it does not fit on {device} beside the largest planned "
                f"case, and the plan restores them only {restores} time(s), so each restore reads them back from the "
                f"checkpoint ({self.checkpoint.folder}), checked against fingerprints of the loaded bits (taken in "
                f"{seconds:.2f} s)"
            )
        places = ", ".join(f"{gb / 1e9:.2f} GB on {where}" for where, gb in self.places().items())
        return (
            f"a copy of the LoRA-targeted weights is kept ({places}; made once, in {seconds:.2f} s): the plan switches "
            "LoRA states on this model, and each switch restores the untouched weights"
        )


def any_hooked(pipe) -> bool:
    """Whether an offload mode holds the transformer (accelerate hooks on it or on its layers)."""
    return any(hasattr(m, "_hf_hook") for m in pipe.transformer.modules())


def nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _bits(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.view({1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[tensor.element_size()])


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit equality (torch.equal on floats takes -0.0 for 0.0 and never NaN for NaN)."""
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(_bits(a), _bits(b))


def fingerprint(weight: torch.Tensor) -> torch.Tensor:
    """Per row, the sum of the weight's bit patterns as integers (exact integer arithmetic, no float rounding):
    a changed value, a differently rounded cast, a swapped or transposed row changes it. Not a hash: values
    permuted within a row, or changes that cancel in the sum, would pass."""
    return _bits(weight).reshape(weight.shape[0], -1).sum(dim=1, dtype=torch.int64)


def _copy_all(tensors: dict, room: int | None = None) -> dict:
    """Exact copies of same-device tensors, as views into one buffer per dtype, all in one place: on their GPU when
    the whole copy fits in `room` bytes (None: when the GPU has the memory), else all of it in pinned CPU memory
    (never split: see memory.MemoryPlan.copy_room); CPU tensors are copied on the CPU."""
    by_dtype: dict[torch.dtype, list] = {}
    for key, tensor in tensors.items():
        by_dtype.setdefault(tensor.dtype, []).append((key, tensor))
    device = next(iter(tensors.values())).device if tensors else torch.device("cpu")
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    if device.type != "cuda" or room is None or total <= room:
        copies: dict = {}
        try:
            for dtype, items in by_dtype.items():
                _copy_into(items, torch.empty(sum(t.numel() for _, t in items), dtype=dtype, device=device), copies)
            return copies
        except torch.cuda.OutOfMemoryError:
            del copies  # what was made on the GPU goes: the whole copy moves to host memory
    copies = {}
    for dtype, items in by_dtype.items():
        pinned = torch.empty(sum(t.numel() for _, t in items), dtype=dtype, device="cpu", pin_memory=True)
        _copy_into(items, pinned, copies)
    return copies


def _copy_into(items: list, buffer: torch.Tensor, copies: dict) -> None:
    offset = 0
    for key, tensor in items:
        view = buffer[offset : offset + tensor.numel()].view(tensor.shape)
        view.copy_(tensor)
        copies[key] = view
        offset += tensor.numel()
