"""Weights read back from the checkpoint a model component was loaded from: its diffusers folder (a local folder or
the snapshot folder of an HF id in the local cache), one safetensors file or several with their index.

When the GPU has no room for a copy of the LoRA-targeted weights, a change of the fused LoRA reads the untouched
weights back from here instead of keeping ~40 GB in pinned host memory (whose allocation alone took 36.8 s at
full size). What `from_pretrained` read is what is read again: the same bytes, cast to the live weight's dtype;
each restore is checked against fingerprints of the loaded bits (lora.py), and a file that changed since the load
(size or modification time, stamped when the model was loaded) is not read at all.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class CheckpointWeights:
    folder: str
    files: dict[str, str]  # tensor key -> file path
    stamps: dict[str, tuple[int, int]]  # file path -> (size, mtime_ns) when first looked at

    @classmethod
    def of(cls, module: torch.nn.Module) -> CheckpointWeights | None:
        """The files a diffusers model was loaded from, stamped now (call it right after the load), or None where
        it cannot be told (built in memory, no safetensors weights). Only diffusers' own names count: parity
        loads without `variant`, so a variant's files (`*.fp16.safetensors`) were never read."""
        from diffusers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFETENSORS_WEIGHTS_NAME

        config = getattr(module, "config", None)
        folder = getattr(config, "_name_or_path", None) if config is not None else None
        if not folder or not os.path.isdir(folder):
            return None
        index, single = os.path.join(folder, SAFE_WEIGHTS_INDEX_NAME), os.path.join(folder, SAFETENSORS_WEIGHTS_NAME)
        try:
            if os.path.isfile(index):  # diffusers prefers the sharded checkpoint's index when both exist
                with open(index, encoding="utf-8") as fh:
                    weight_map = json.load(fh)["weight_map"]
                files = {key: os.path.join(folder, name) for key, name in weight_map.items()}
            elif os.path.isfile(single):
                from safetensors import safe_open

                with safe_open(single, framework="pt") as fh:
                    files = dict.fromkeys(fh.keys(), single)
            else:
                return None
            stamps = {path: _stamp(path) for path in set(files.values())}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        return cls(folder, files, stamps)

    def holds(self, keys: list[str]) -> bool:
        return all(key in self.files for key in keys)

    def unchanged(self) -> bool:
        """Whether every file is still the one the model was loaded from (same size, same modification time)."""
        try:
            return all(_stamp(path) == stamp for path, stamp in self.stamps.items())
        except OSError:
            return False

    def read_into(self, targets: dict[str, torch.Tensor]) -> None:
        """Copy each stored tensor into its target (key -> live tensor), cast on the CPU to the target's dtype as
        from_pretrained casts it. For a GPU target the bytes pass through two pinned buffers, so that the host copy
        of one tensor out of the page cache overlaps the transfer of the one before (a pageable copy straight from
        the mapped file crossed at ~7 GB/s at full size)."""
        slots: list[tuple[torch.Tensor, torch.cuda.Event | None]] = []
        for number, (key, stored) in enumerate(self.read(list(targets))):
            target = targets[key]
            if stored.shape != target.shape:
                raise ValueError(f"{key} is {tuple(stored.shape)} in the checkpoint, {tuple(target.shape)} in the model")
            source = stored.to(target.dtype)
            if target.device.type != "cuda":
                target.copy_(source)
                continue
            if not slots:
                largest = max(t.numel() * t.element_size() for t in targets.values() if t.device.type == "cuda")
                slots = [(torch.empty(largest, dtype=torch.uint8, pin_memory=True), None) for _ in range(2)]
            buffer, busy = slots[number % 2]
            if busy is not None:
                busy.synchronize()  # its last transfer has finished: the buffer may be written again
            staged = buffer[: source.numel() * source.element_size()].view(source.dtype).view(source.shape)
            staged.copy_(source)
            with torch.cuda.device(target.device):
                target.copy_(staged, non_blocking=True)
                done = torch.cuda.Event()
                done.record()
            slots[number % 2] = (buffer, done)
        for _, busy in slots:
            if busy is not None:
                busy.synchronize()

    def read(self, keys: list[str]) -> Iterator[tuple[str, torch.Tensor]]:
        """(key, tensor on the CPU as stored), file by file in the order asked within each file."""
        from safetensors import safe_open

        by_file: dict[str, list[str]] = {}
        for key in keys:
            by_file.setdefault(self.files[key], []).append(key)
        for path, wanted in by_file.items():
            with safe_open(path, framework="pt") as fh:
                for key in wanted:
                    yield key, fh.get_tensor(key)


def _stamp(path: str) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_size, info.st_mtime_ns
