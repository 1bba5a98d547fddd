"""Environment fingerprint of a run (library versions and platform, read without importing torch), and the CPU
math mode parity runs in.

Intel MKL, torch's BLAS on x86, picks a code branch by the operands' memory alignment and by how many threads it
gets: the same float32 matrix-vector product can end in another last bit when a weight sits at another address
(a copy, a merged weight, a model loaded another way). parity therefore runs MKL in its conditional numerical
reproducibility mode (`MKL_CBWR=AUTO,STRICT`: the best branch for this CPU, the same result for any alignment and
thread count) unless the user set `MKL_CBWR`. MKL reads the variable when it first computes, so the doors set it
before any torch arithmetic; `cpu_math_mode()` records what is in force.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

PACKAGES = ("parity", "torch", "diffusers", "transformers", "peft", "accelerate", "safetensors", "tokenizers", "scikit-image", "pillow")
MKL_REPRODUCIBLE = "AUTO,STRICT"


def reproducible_cpu_math() -> None:
    """Ask MKL for alignment- and thread-independent results (a user's own MKL_CBWR wins). Takes effect only if
    MKL has not computed anything yet in this process."""
    os.environ.setdefault("MKL_CBWR", MKL_REPRODUCIBLE)


def cpu_math_mode() -> str:
    return os.environ.get("MKL_CBWR", "unset")


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
        "mkl_cbwr": cpu_math_mode(),
        **(device_info or {}),
    }


# What a pinned baseline's environment is compared on (`<baseline>.env.json` against this run's fingerprint).
ENV_KEYS = (("versions", "torch"), ("versions", "diffusers"), ("versions", "transformers"), ("versions", "peft"),
            ("device_name", None), ("compute_capability", None), ("cpu_capability", None), ("dtype", None),
            ("mkl_cbwr", None), ("environment_class", None))


def env_changes(baseline_env: dict | None, run_env: dict) -> tuple[str, ...]:
    """What differs between the environment a pinned baseline was made in and this run's, one line each."""
    if not baseline_env:
        return ()
    changes = []
    for key, sub in ENV_KEYS:
        then = baseline_env.get(key, {}).get(sub) if sub else baseline_env.get(key)
        now = run_env.get(key, {}).get(sub) if sub else run_env.get(key)
        if then != now and (then is not None or now is not None):
            changes.append(f"{sub or key.replace('_', ' ')}: baseline {then or '—'}, this run {now or '—'}")
    return tuple(changes)
