"""Environment fingerprint of a run: library versions and platform, read without importing torch."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

PACKAGES = ("parity", "torch", "diffusers", "transformers", "peft", "accelerate", "safetensors", "tokenizers", "scikit-image", "pillow")


def versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def fingerprint(device_info: dict[str, object] | None = None) -> dict[str, object]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "versions": versions(),
        **(device_info or {}),
    }
