"""Compare an output image with its baseline: metrics, threshold verdict and a diff heatmap (pure numpy)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from parity.core.thresholds import Thresholds


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


# The metric table, once: (name in verdicts, label with its unit, Metrics field, Thresholds field, kind). The
# verdict (check), the terminal and pytest text (describe) and the HTML report's table all read it.
METRIC_TABLE = (
    ("SSIM", "SSIM", "ssim", "ssim_min", "min"),
    ("PSNR", "PSNR (dB)", "psnr", "psnr_min", "min"),
    ("mean |diff|", "mean |diff| (levels)", "mean_abs_diff", "mean_abs_diff_max", "max"),
    ("max |diff|", "max |diff| (levels)", "max_abs_diff", "max_abs_diff_max", "max"),
    ("changed pixels", "changed pixels", "changed_pixels", "changed_pixels_max", "max"),
)


@dataclass(frozen=True)
class MetricLine:
    """One metric of a comparison against its limit (None: no limit set)."""

    name: str
    label: str
    field: str
    limit_field: str
    kind: str  # "min" or "max"
    value: float
    limit: float | None

    @property
    def ok(self) -> bool:
        return self.limit is None or (self.value >= self.limit if self.kind == "min" else self.value <= self.limit)


def metric_lines(metrics: Metrics, limits: Thresholds) -> tuple[MetricLine, ...]:
    """Every metric of the table with its value and limit; the changed-pixels label names its tolerance."""
    lines = []
    for name, label, metric, limit_field, kind in METRIC_TABLE:
        if metric == "changed_pixels":
            label = f"changed pixels (> {metrics.pixel_tolerance:g} levels)"
        lines.append(MetricLine(name, label, metric, limit_field, kind, float(getattr(metrics, metric)), getattr(limits, limit_field)))
    return tuple(lines)


def check(metrics: Metrics, limits: Thresholds) -> tuple[Violation, ...]:
    """Every threshold the metrics miss."""
    return tuple(Violation(line.name, line.value, line.limit, line.kind) for line in metric_lines(metrics, limits) if not line.ok)


def describe(metrics: Metrics, limits: Thresholds) -> str:
    """The metric table on one line, each value with its limit (terminal and pytest failure text)."""
    parts = []
    for line in metric_lines(metrics, limits):
        bound = "" if line.limit is None else f" ({'≥' if line.kind == 'min' else '≤'} {_fmt(line.limit)})"
        parts.append(f"{line.label} {_fmt(line.value)}{bound}")
    return ", ".join(parts)


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
