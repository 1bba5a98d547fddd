"""Measured tolerances: a case's noise floor in one environment class and the thresholds proposed from it.

`parity calibrate` measures, per case, how far outputs move when nothing but the arithmetic changes (a repeat
render; the same case under another kernel set; for preview suites, the trainer's JPEG encoding) and writes one
`calibration.yaml` per suite and environment class, next to that class's baselines:
`<baselines>/<class key>/calibration.yaml`. A run reads the one of the class it compares with and takes the
thresholds from it, below the case file's own keys (a person's explicit limit wins). Pure: no torch, no renders.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields

import yaml

from parity.cases import yamlfile
from parity.core import envclass
from parity.core.atomic import write_text
from parity.core.envclass import EnvClass
from parity.core.thresholds import Thresholds
from parity.judge.compare import Metrics

CALIBRATION_FILE = "calibration.yaml"
FORMAT = 1

MARGIN = 2.0  # thresholds leave twice the measured distance from identical
MIN_SSIM_GAP = 0.0005  # and at least this much below SSIM 1 ...
MIN_MEAN_GAP = 0.05  # ... this many levels of mean |diff| ...
MAX_PSNR = 60.0  # ... and ask for no more than 60 dB (an RMS error of a quarter level)
MARGIN_TEXT = (
    f"{MARGIN:g}x the measured distance from identical: SSIM >= 1 - {MARGIN:g}·(1 - floor), "
    f"PSNR >= floor - {20 * math.log10(MARGIN):.2f} dB, mean |diff| <= {MARGIN:g}·floor; "
    f"at least {MIN_SSIM_GAP:g} below SSIM 1 and {MIN_MEAN_GAP:g} levels of mean |diff|, PSNR at most {MAX_PSNR:g} dB"
)


@dataclass(frozen=True)
class Measurement:
    """One way the arithmetic was changed, and whether its spread must be absorbed by the thresholds."""

    name: str  # repeat | kernels | dtype | jpeg
    description: str
    feeds_thresholds: bool


@dataclass(frozen=True)
class CaseCalibration:
    floor: Metrics  # the worst of the measurements that feed the thresholds
    thresholds: Thresholds  # proposed from the floor with the margin
    measured: dict[str, Metrics] = field(default_factory=dict)  # every measurement, by name


@dataclass(frozen=True)
class Calibration:
    env_class: str
    made: str
    margin: str
    measurements: tuple[Measurement, ...]
    cases: dict[str, CaseCalibration]  # by case name
    environment: dict[str, object] = field(default_factory=dict)  # the fingerprint of the machine it was made on

    def for_case(self, name: str) -> CaseCalibration | None:
        return self.cases.get(name)


def worst(metrics: list[Metrics]) -> Metrics:
    """Metric by metric, the farthest from identical."""
    return Metrics(
        ssim=min(m.ssim for m in metrics),
        psnr=min(m.psnr for m in metrics),
        max_abs_diff=max(m.max_abs_diff for m in metrics),
        mean_abs_diff=max(m.mean_abs_diff for m in metrics),
        changed_pixels=max(m.changed_pixels for m in metrics),
        pixel_tolerance=metrics[0].pixel_tolerance,
    )


def propose(floor: Metrics) -> Thresholds:
    """Thresholds that pass the floor with the margin (MARGIN_TEXT says it in words)."""
    ssim_gap = max(MARGIN * (1.0 - floor.ssim), MIN_SSIM_GAP)
    psnr = MAX_PSNR if math.isinf(floor.psnr) else min(MAX_PSNR, floor.psnr - 20 * math.log10(MARGIN))
    return Thresholds(
        ssim_min=_floor_to(max(0.0, 1.0 - ssim_gap), 6),
        psnr_min=_floor_to(max(0.0, psnr), 2),
        mean_abs_diff_max=_ceil_to(max(MARGIN * floor.mean_abs_diff, MIN_MEAN_GAP), 4),
    )


def margin_of(threshold: float | None, floor: float, metric: str) -> str:
    """How much room a threshold leaves beyond the floor, in the metric's own terms."""
    if threshold is None:
        return "—"
    if metric == "psnr":
        return "floor identical" if math.isinf(floor) else f"{floor - threshold:+.2f} dB"
    if metric == "ssim":
        return f"{(1 - threshold) / (1 - floor):.1f}x the gap" if floor < 1 else f"{1 - threshold:.4g} below 1"
    return f"{threshold / floor:.1f}x the floor" if floor > 0 else f"{threshold:.4g} above 0"


def calibration_path(baselines_dir: str, env: EnvClass) -> str:
    return os.path.join(baselines_dir, env.key, CALIBRATION_FILE)


def calibrated_classes(baselines_dir: str) -> list[EnvClass]:
    """The classes that have a calibration in a suite's baselines folder."""
    if not os.path.isdir(baselines_dir):
        return []
    found = []
    for entry in sorted(os.listdir(baselines_dir)):
        env = envclass.parse(entry)
        if env is not None and os.path.isfile(os.path.join(baselines_dir, entry, CALIBRATION_FILE)):
            found.append(env)
    return found


def write(path: str, calibration: Calibration) -> None:
    header = (
        "# Written by `parity calibrate`: the noise floor of every case in this environment class and the thresholds\n"
        "# proposed from it. Review it and commit it with the baselines; rerun calibrate after a library upgrade.\n"
    )
    data = {
        "format": FORMAT,
        "environment_class": calibration.env_class,
        "made": calibration.made,
        "margin": calibration.margin,
        "measurements": {m.name: {"what": m.description, "feeds_thresholds": m.feeds_thresholds} for m in calibration.measurements},
        "environment": calibration.environment,
        "cases": {
            name: {
                "thresholds": _plain_thresholds(c.thresholds),
                "floor": _plain_metrics(c.floor),
                "measured": {k: _plain_metrics(v) for k, v in c.measured.items()},
            }
            for name, c in calibration.cases.items()
        },
    }
    write_text(path, header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120))


def read(path: str) -> Calibration | None:
    """The calibration at `path`, or None when there is none. A file parity cannot read is an error that names it."""
    if not os.path.isfile(path):
        return None
    from parity.core.errors import CaseRunError

    try:
        with open(path, encoding="utf-8") as fh:
            data = yamlfile.load(fh.read())
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format') if isinstance(data, dict) else data!r}, expected {FORMAT}")
        cases = {
            str(name): CaseCalibration(
                floor=_metrics(entry["floor"]),
                thresholds=Thresholds(**{k: float(v) for k, v in (entry.get("thresholds") or {}).items()}),
                measured={str(k): _metrics(v) for k, v in (entry.get("measured") or {}).items()},
            )
            for name, entry in (data.get("cases") or {}).items()
        }
        measurements = tuple(
            Measurement(str(k), str(v.get("what", "")), bool(v.get("feeds_thresholds")))
            for k, v in (data.get("measurements") or {}).items()
        )
        return Calibration(
            env_class=str(data["environment_class"]),
            made=str(data.get("made", "")),
            margin=str(data.get("margin", "")),
            measurements=measurements,
            cases=cases,
            environment=dict(data.get("environment") or {}),
        )
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as exc:
        raise CaseRunError(
            f"calibration {path} cannot be read ({type(exc).__name__}: {exc})",
            "run `parity calibrate` on the suite again, or delete the file to use the default thresholds",
        ) from None


def _plain_metrics(m: Metrics) -> dict[str, object]:
    return {
        "ssim": round(m.ssim, 8),
        "psnr": m.psnr if math.isinf(m.psnr) else round(m.psnr, 4),
        "max_abs_diff": int(m.max_abs_diff),
        "mean_abs_diff": round(m.mean_abs_diff, 6),
        "changed_pixels": round(m.changed_pixels, 6),
        "pixel_tolerance": m.pixel_tolerance,
    }


def _metrics(data: dict) -> Metrics:
    return Metrics(**{f.name: data[f.name] for f in fields(Metrics)})


def _plain_thresholds(t: Thresholds) -> dict[str, float]:
    return {f.name: getattr(t, f.name) for f in fields(Thresholds) if getattr(t, f.name) is not None}


def _floor_to(value: float, digits: int) -> float:
    scale = 10**digits
    return math.floor(value * scale) / scale


def _ceil_to(value: float, digits: int) -> float:
    scale = 10**digits
    return math.ceil(value * scale) / scale
