"""The devices an engine renders on: their peak memory per case and per run, and their facts for the environment
fingerprint."""

from __future__ import annotations

import torch

from parity.core import envclass
from parity.core.errors import ModelLoadError


def check(device: str, cfg_device: str | None) -> None:
    """ModelLoadError for a CUDA device torch cannot see, or a CFG-parallel device that is the main one."""
    for name in (device, cfg_device):
        if name is not None and name.startswith("cuda") and not torch.cuda.is_available():
            raise ModelLoadError(f"device {name!r} asked for, but torch sees no CUDA device", "run with --device cpu")
    if cfg_device is not None and device.startswith("cuda") and torch.device(cfg_device) == torch.device(device):
        raise ModelLoadError(
            f"CFG-parallel device {cfg_device!r} is the main device {device!r}",
            "name a second GPU (e.g. --device cuda:0 --cfg-device cuda:1)",
        )


class Devices:
    """The main device and the CFG-parallel copy's, with the run's peak GPU memory on each."""

    def __init__(self, device: str, cfg_device: str | None, dtype: torch.dtype):
        self.device, self.cfg_device, self.dtype = device, cfg_device, dtype
        self.run_peaks: dict[str, float] = {}  # device -> the largest case peak so far, GB

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")

    def gpus(self) -> list[str]:
        """The GPUs this engine renders on: the main device, and the CFG-parallel copy's."""
        return [d for d in dict.fromkeys((self.device, self.cfg_device)) if d is not None and d.startswith("cuda")]

    def start_case(self) -> None:
        for device in self.gpus():
            torch.cuda.reset_peak_memory_stats(device)

    def case_peaks(self) -> dict[str, float]:
        """This case's peak allocated GB per GPU (kept for the run's peaks too)."""
        peaks = {d: round(torch.cuda.max_memory_allocated(d) / 1e9, 3) for d in self.gpus()}
        for d, gb in peaks.items():
            self.run_peaks[d] = max(self.run_peaks.get(d, 0.0), gb)
        return peaks

    def describe(self) -> dict[str, object]:
        """Device facts for the environment fingerprint."""
        info: dict[str, object] = {"device": self.device, "dtype": str(self.dtype).replace("torch.", "")}
        if self.cfg_device is not None:
            info["cfg_device"] = self.cfg_device
        if self.cuda:
            index = torch.device(self.device).index or 0
            info["device_name"] = torch.cuda.get_device_name(index)
            info["compute_capability"] = ".".join(map(str, torch.cuda.get_device_capability(index)))
            # the run's peaks: the largest of its cases' (each case resets the allocator's statistics)
            peaks = {d: max(self.run_peaks.get(d, 0.0), torch.cuda.max_memory_allocated(d) / 1e9) for d in self.gpus()}
            info["peak_memory_gb"] = round(peaks[self.device], 2)
            info["peak_memory_by_device"] = {d: round(v, 2) for d, v in peaks.items()}
            if self.cfg_device is not None and self.cfg_device in peaks:  # the CFG copy's device
                info["cfg_peak_memory_gb"] = round(peaks[self.cfg_device], 2)
        else:
            info["device_name"] = "cpu"
            info["threads"] = torch.get_num_threads()
            info["cpu_capability"] = torch.backends.cpu.get_cpu_capability().lower()
        info["environment_class"] = envclass.from_device_info(info).key
        return info
