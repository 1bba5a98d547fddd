"""Compare an output image with its baseline: metrics, threshold verdict and a diff heatmap (pure numpy)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from .thresholds import Thresholds


@dataclass(frozen=True)
class Metrics:
    """How far two same-sized RGB images are apart; pixel differences in 0..255 levels."""

    ssim: float
    psnr: float  # math.inf for identical images
    max_abs_diff: int
    mean_abs_diff: float
    changed_pixels: float  # share of pixels with any channel off by more than pixel_tolerance
    pixel_tolerance: float


@dataclass(frozen=True)
class Violation:
    """One threshold a comparison missed."""

    metric: str
    value: float
    limit: float
    kind: str  # "min" or "max"

    def __str__(self) -> str:
        op = "<" if self.kind == "min" else ">"
        return f"{self.metric} {_fmt(self.value)} {op} {_fmt(self.limit)}"


@dataclass(frozen=True)
class Comparison:
    """The outcome of comparing one output with its baseline."""

    metrics: Metrics | None
    violations: tuple[Violation, ...]
    output_size: tuple[int, int]
    baseline_size: tuple[int, int]
    heatmap_scale: int = 0

    @property
    def size_mismatch(self) -> bool:
        return self.output_size != self.baseline_size

    @property
    def passed(self) -> bool:
        return not self.size_mismatch and not self.violations

    def summary(self) -> str:
        if self.size_mismatch:
            (ow, oh), (bw, bh) = self.output_size, self.baseline_size
            return f"size mismatch: output {ow}x{oh}, baseline {bw}x{bh}"
        if self.violations:
            return "; ".join(str(v) for v in self.violations)
        return "within thresholds"


def measure(output: np.ndarray, baseline: np.ndarray, pixel_tolerance: float) -> Metrics:
    """Metrics of two uint8 HxWx3 images of the same size."""
    a = output.astype(np.int16)
    b = baseline.astype(np.int16)
    diff = np.abs(a - b)
    per_pixel = diff.max(axis=2)
    side = min(output.shape[0], output.shape[1])
    win = min(7, side if side % 2 else side - 1)
    ssim = float(structural_similarity(output, baseline, channel_axis=2, data_range=255, win_size=max(win, 1)))
    if not diff.any():
        psnr = math.inf
    else:
        psnr = float(peak_signal_noise_ratio(baseline, output, data_range=255))
    return Metrics(
        ssim=ssim,
        psnr=psnr,
        max_abs_diff=int(diff.max()),
        mean_abs_diff=float(diff.mean()),
        changed_pixels=float((per_pixel > pixel_tolerance).mean()),
        pixel_tolerance=float(pixel_tolerance),
    )


def check(metrics: Metrics, limits: Thresholds) -> tuple[Violation, ...]:
    """Every threshold the metrics miss."""
    out = []
    for metric, value, limit, kind in (
        ("SSIM", metrics.ssim, limits.ssim_min, "min"),
        ("PSNR", metrics.psnr, limits.psnr_min, "min"),
        ("mean |diff|", metrics.mean_abs_diff, limits.mean_abs_diff_max, "max"),
        ("max |diff|", float(metrics.max_abs_diff), limits.max_abs_diff_max, "max"),
        ("changed pixels", metrics.changed_pixels, limits.changed_pixels_max, "max"),
    ):
        if limit is None:
            continue
        if (kind == "min" and value < limit) or (kind == "max" and value > limit):
            out.append(Violation(metric, value, limit, kind))
    return tuple(out)


def compare(output: np.ndarray, baseline: np.ndarray, limits: Thresholds) -> Comparison:
    """Compare two uint8 RGB images; a size mismatch is a finding with both sizes, not an exception."""
    out_size = (int(output.shape[1]), int(output.shape[0]))
    base_size = (int(baseline.shape[1]), int(baseline.shape[0]))
    if out_size != base_size:
        return Comparison(None, (), out_size, base_size)
    tolerance = limits.pixel_tolerance if limits.pixel_tolerance is not None else 0.0
    metrics = measure(output, baseline, tolerance)
    return Comparison(metrics, check(metrics, limits), out_size, base_size, heatmap_scale(output, baseline))


def heatmap_scale(output: np.ndarray, baseline: np.ndarray) -> int:
    """Levels that map to the hottest colour: the largest difference, but at least 8 so noise stays dark."""
    return max(8, int(np.abs(output.astype(np.int16) - baseline.astype(np.int16)).max()))


def heatmap(output: np.ndarray, baseline: np.ndarray, scale: int) -> np.ndarray:
    """Per-pixel largest channel difference as a black-red-yellow-white image (uint8 HxWx3)."""
    diff = np.abs(output.astype(np.int16) - baseline.astype(np.int16)).max(axis=2).astype(np.float32)
    t = np.clip(diff / float(max(scale, 1)), 0.0, 1.0)
    r = np.clip(3.0 * t, 0.0, 1.0)
    g = np.clip(3.0 * t - 1.0, 0.0, 1.0)
    b = np.clip(3.0 * t - 2.0, 0.0, 1.0)
    return (np.stack([r, g, b], axis=2) * 255.0 + 0.5).astype(np.uint8)


def _fmt(value: float) -> str:
    if math.isinf(value):
        return "inf"
    return f"{value:.4g}"
