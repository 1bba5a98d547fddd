"""Environment classes: which baselines and tolerances belong to which machines (pure; no torch).

A render's last bits depend on the device, the dtype and the kernels that do the arithmetic. Pinned baselines are
kept per class, keyed `<device>-<dtype>-<kernels>` (as diffusers keys expected outputs by device type and compute
capability):

- device and dtype: a CPU float32 render and a CUDA bf16 render of the tiny model share almost nothing
  (SSIM ~0.2), so a class never falls back across them;
- kernels: on the CPU, ATen's kernel set (`torch.backends.cpu.get_cpu_capability()`: default, avx2, avx512 …,
  what `ATEN_CPU_CAPABILITY` switches); on a GPU its compute capability (`sm90` for the H100/H200), which decides
  the cuBLAS and attention kernels. Neighbouring kernel sets differ by rounding noise only, so a run without a
  set of its own falls back to the nearest one in its family and says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CPU_KERNEL_LADDER = ("default", "avx2", "avx512")  # ATen's x86 kernel sets, from the plainest
_KEY = re.compile(r"^(cpu|cuda)-(float32|bfloat16|float16)-([a-z0-9_]+)$")


@dataclass(frozen=True)
class EnvClass:
    device: str  # cpu | cuda
    dtype: str  # float32 | bfloat16 | float16
    kernels: str  # cpu: ATen capability (avx2 …); cuda: compute capability (sm90 …)

    @property
    def key(self) -> str:
        return f"{self.device}-{self.dtype}-{self.kernels}"

    @property
    def family(self) -> tuple[str, str]:
        """Classes of one family share baselines as a fallback; other families never do."""
        return (self.device, self.dtype)

    def __str__(self) -> str:
        return self.key


def parse(key: str) -> EnvClass | None:
    """The class a folder name stands for, or None when it is not a class key."""
    match = _KEY.match(key)
    return EnvClass(*match.groups()) if match else None


def from_device_info(info: dict[str, object]) -> EnvClass:
    """The class of a run, from the engine's device facts (`Engine.describe()`)."""
    device = str(info.get("device", "cpu")).split(":")[0]
    dtype = str(info.get("dtype") or ("bfloat16" if device == "cuda" else "float32"))
    if device == "cuda":
        capability = str(info.get("compute_capability") or "unknown")
        kernels = "sm" + capability.replace(".", "") if capability != "unknown" else "unknown"
    else:
        kernels = str(info.get("cpu_capability") or "unknown").lower()
    return EnvClass(device, dtype, kernels)


def distance(a: EnvClass, b: EnvClass) -> float:
    """How far two classes of one family are apart (0: the same; inf: another family)."""
    if a.family != b.family:
        return float("inf")
    if a.kernels == b.kernels:
        return 0.0
    if a.device == "cpu":
        ladder = CPU_KERNEL_LADDER
        if a.kernels in ladder and b.kernels in ladder:
            return float(abs(ladder.index(a.kernels) - ladder.index(b.kernels)))
        return 10.0
    sa, sb = _sm(a.kernels), _sm(b.kernels)
    if sa is None or sb is None:
        return 100.0
    return float(abs(sa[0] - sb[0]) * 10 + abs(sa[1] - sb[1]))


def nearest(current: EnvClass, available: list[EnvClass]) -> EnvClass | None:
    """The exact class if available, else the nearest one of its family (ties: the sorted-first key), else None."""
    same_family = [c for c in available if c.family == current.family]
    if not same_family:
        return None
    return min(same_family, key=lambda c: (distance(current, c), c.key))


def _sm(kernels: str) -> tuple[int, int] | None:
    match = re.match(r"^sm(\d+)(\d)$", kernels)
    return (int(match.group(1)), int(match.group(2))) if match else None
