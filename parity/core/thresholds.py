"""Pass/fail limits for one comparison, and how per-sample, per-suite and default limits combine."""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields, replace


class BaselineKind(enum.Enum):
    """Where a suite's stored images come from."""

    PINNED = "pinned"  # outputs of this harness, written by it; expected to match almost exactly
    PREVIEW = "preview"  # training previews saved by ai-toolkit; never written by parity


@dataclass(frozen=True)
class Thresholds:
    """Limits a comparison must meet; None means the limit is not checked."""

    ssim_min: float | None = None
    psnr_min: float | None = None
    mean_abs_diff_max: float | None = None
    max_abs_diff_max: float | None = None
    changed_pixels_max: float | None = None
    pixel_tolerance: float | None = None

    def merged_over(self, base: Thresholds) -> Thresholds:
        """These limits where set, else the ones of `base` (per-sample over per-suite over default)."""
        return replace(base, **{f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None})


# Pinned baselines come from this harness: on the same machine they are bit-identical; across CPUs and
# library builds float32 rounding moves a few pixels by a level or two, so the limits leave room for that.
# Previews come from a different pipeline (and usually JPEG), so only structural agreement is asked for.
DEFAULTS: dict[BaselineKind, Thresholds] = {
    BaselineKind.PINNED: Thresholds(ssim_min=0.995, psnr_min=40.0, pixel_tolerance=4.0),
    BaselineKind.PREVIEW: Thresholds(ssim_min=0.90, psnr_min=25.0, pixel_tolerance=4.0),
}

THRESHOLD_KEYS: tuple[str, ...] = tuple(f.name for f in fields(Thresholds))

THRESHOLD_HELP: dict[str, str] = {
    "ssim_min": "Lowest structural similarity (scikit-image SSIM over the colour image, 0..1) that passes.",
    "psnr_min": "Lowest peak signal-to-noise ratio in dB (identical images count as infinite) that passes.",
    "mean_abs_diff_max": "Highest mean absolute pixel difference, in 0..255 levels, that passes.",
    "max_abs_diff_max": "Highest single-pixel absolute difference, in 0..255 levels, that passes.",
    "changed_pixels_max": "Highest share (0..1) of pixels off by more than pixel_tolerance that passes.",
    "pixel_tolerance": "Levels (0..255) a pixel may be off before it counts as changed (default 4).",
}


class ThresholdSource(enum.Enum):
    """Where a limit came from, most specific first."""

    SAMPLE = "sample"  # the sample's own key in the case file
    SUITE = "suite"  # the case file's `thresholds:`
    CALIBRATED = "calibrated"  # `parity calibrate`, measured in this environment class
    DEFAULT = "default"  # the baseline kind's default


def combine(kind: BaselineKind, suite: Thresholds | None, sample: Thresholds | None) -> Thresholds:
    """Per sample, else per suite, else the kind's default — field by field."""
    return layered(kind, suite, sample, None)[0]


def layered(
    kind: BaselineKind, suite: Thresholds | None, sample: Thresholds | None, calibrated: Thresholds | None
) -> tuple[Thresholds, dict[str, ThresholdSource]]:
    """The limits in force, field by field: the sample's, else the suite's, else the calibrated ones, else the
    default; and where each came from. A person's explicit value beats a measured one."""
    result = DEFAULTS[kind]
    sources = {name: ThresholdSource.DEFAULT for name in THRESHOLD_KEYS}
    for layer, source in ((calibrated, ThresholdSource.CALIBRATED), (suite, ThresholdSource.SUITE), (sample, ThresholdSource.SAMPLE)):
        if layer is None:
            continue
        result = layer.merged_over(result)
        for name in THRESHOLD_KEYS:
            if getattr(layer, name) is not None:
                sources[name] = source
    return result, sources
