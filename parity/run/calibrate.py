"""`parity calibrate`: measure each case's noise floor in this environment class and propose thresholds from it.

Per case, with the reference wiring as `parity run` renders it:
- repeat: the case rendered twice, the second time with the text embeddings and control latents computed anew
  (a second set of caches, empty at the start of the repeat pass);
- kernels: on the CPU, the case rendered in a second process under another ATen kernel set
  (`ATEN_CPU_CAPABILITY`); on a GPU, in the other precision (float32 where the run is bf16) — the other precision
  is another environment class with a set of its own, so that figure is reported but does not feed thresholds;
- JPEG previews are judged after the trainer's encoding (PIL's default quality 75; session.jpeg_check): repeat and
  kernels are measured through that encoding, and the encoding's own effect on the output is reported (it is what
  the comparison after encoding takes out; it does not feed thresholds).
The floor is the worst of the measurements that feed; the thresholds leave calibration.MARGIN_TEXT's margin. One
calibration.yaml per suite and class goes next to that class's baselines (calibration.py); runs read it.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from parity.cases.suite import SuiteLoad
from parity.core import envclass
from parity.core.errors import ParityError
from parity.core.images import OutputEncoding, encode_output
from parity.core.thresholds import DEFAULTS
from parity.facts.case import Case
from parity.judge.calibration import (
    MARGIN_TEXT,
    Calibration,
    CaseCalibration,
    Measurement,
    calibration_path,
    propose,
    worst,
)
from parity.judge.calibration import write as write_calibration
from parity.judge.compare import Metrics, measure


@dataclass(frozen=True)
class SuiteCalibration:
    suite: str
    path: str  # where calibration.yaml was (or would be) written
    calibration: Calibration


def calibrate(loads: list[SuiteLoad], device: str = "cpu", write: bool = True, log=print) -> list[SuiteCalibration]:
    """Measure every case of the valid suites and write (or, with `write=False`, only return) their calibrations."""
    from parity.core.environment import fingerprint
    from parity.render.engine import Engine

    for case in (case for load in loads for case in load.cases if case.refused):
        log(f"parity calibrate: skipped {case.id}: the reference server refuses it ({'; '.join(case.refused)})")
    loads = [replace(load, cases=tuple(case for case in load.cases if not case.refused)) for load in loads]
    cases = [case for load in loads for case in load.cases]
    if not cases:
        raise ParityError("no valid case to calibrate")
    engine = Engine(device)
    info = engine.describe()
    run_class = envclass.from_device_info(info)
    log(f"parity calibrate: {len(cases)} case(s) in {run_class.key}; rendering each case twice ...")
    first = {case.id: engine.render(case).image for case in cases}
    repeat = {case.id: engine.render(case, fresh_caches=True).image for case in cases}
    engine.close()
    other, other_measurement = _other_kernels(loads, engine, device, info, log)

    made = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    keep = ("versions", "device", "device_name", "compute_capability", "cpu_capability", "dtype", "mkl_cbwr", "machine")
    made_in = {k: v for k, v in fingerprint(info).items() if k in keep}
    results = []
    for load in loads:
        if not load.cases:
            continue
        encoding = _preview_encoding(load.cases[0])
        through = f", both saved as the trainer saves previews ({encoding.value})" if encoding else ""
        measurements = [
            Measurement("repeat", f"rendered twice in this process, the second time without cached embeddings or latents{through}", True)
        ]
        if other_measurement is not None:
            measurements.append(replace(other_measurement, description=other_measurement.description + through))
        if encoding is not None:
            measurements.append(Measurement(
                "encoding",
                f"the output against its own {encoding.value}: what the comparison after that encoding takes out of a "
                "raw comparison with a preview",
                False,
            ))
        entries = {}
        for case in load.cases:
            measured = _measure_case(case, first[case.id], repeat[case.id], other.get(case.id), other_measurement, encoding)
            floor = worst([measured[m.name] for m in measurements if m.feeds_thresholds and m.name in measured])
            entries[case.name] = CaseCalibration(floor=floor, thresholds=propose(floor), measured=measured)
        calibration = Calibration(run_class.key, made, MARGIN_TEXT, tuple(measurements), entries, made_in)
        path = calibration_path(load.cases[0].baselines_dir, run_class)
        if write:
            write_calibration(path, calibration)
        results.append(SuiteCalibration(load.path.stem, path, calibration))
    return results


def _measure_case(case: Case, image, again, other, other_measurement: Measurement | None, encoding) -> dict[str, Metrics]:
    """A preview suite is judged after the trainer's encoding (session.jpeg_check): its floors are measured there."""
    tolerance = _pixel_tolerance(case)

    def saved(array):
        return encode_output(array, encoding) if encoding is not None else array

    measured = {"repeat": measure(saved(image), saved(again), tolerance)}
    if other is not None and other_measurement is not None:
        measured[other_measurement.name] = measure(saved(image), saved(other), tolerance)
    if encoding is not None:
        measured["encoding"] = measure(image, saved(image), tolerance)
    return measured


def _preview_encoding(case: Case) -> OutputEncoding | None:
    """The encoding a run compares after: the trainer's JPEG for JPEG previews (as session.jpeg_check), else none."""
    return OutputEncoding.JPEG_75 if case.baseline and case.baseline.lower().endswith((".jpg", ".jpeg")) else None


def _pixel_tolerance(case: Case) -> float:
    for layer in (case.sample_thresholds, case.suite_thresholds, DEFAULTS[case.baseline_kind]):
        if layer is not None and layer.pixel_tolerance is not None:
            return layer.pixel_tolerance
    return 0.0


def _other_kernels(loads, engine, device: str, info: dict, log) -> tuple[dict[str, np.ndarray], Measurement | None]:
    """The cases rendered under another kernel set: another ATen capability (CPU) or the other precision (GPU)."""
    cases = [case for load in loads for case in load.cases]
    if device.startswith("cuda"):
        import torch

        from parity.render.engine import Engine

        other = torch.float32 if engine.dtype != torch.float32 else torch.bfloat16
        name = str(other).replace("torch.", "")
        log(f"parity calibrate: rendering each case again in {name} on {device} ...")
        second = Engine(device, dtype=other)
        try:
            images = {case.id: second.render(case).image for case in cases}
        except torch.cuda.OutOfMemoryError:
            log(f"parity calibrate: the model does not fit {device} in {name}; that measurement is left out")
            return {}, None
        finally:
            second.close(failed=True)
        note = f"rendered in {name} on the same GPU: another environment class (its own set); reported, not used"
        return images, Measurement("dtype", note, False)
    current = str(info.get("cpu_capability", "default"))
    target = "default" if current != "default" else "avx2"
    log(f"parity calibrate: rendering each case again with ATEN_CPU_CAPABILITY={target} (a second process) ...")
    images = render_in_subprocess([str(load.path) for load in loads], device, {"ATEN_CPU_CAPABILITY": target})
    description = f"rendered in a second process with ATEN_CPU_CAPABILITY={target} (this run: {current})"
    return images, Measurement("kernels", description, True)


def render_in_subprocess(paths: list[str], device: str, env: dict[str, str]) -> dict[str, np.ndarray]:
    """Every case of `paths` rendered with the reference wiring by a fresh Python process with `env` added."""
    from PIL import Image

    with tempfile.TemporaryDirectory(prefix="parity-calibrate-") as folder:
        command = [sys.executable, "-m", "parity.run.calibrate", "--render", folder, "--device", device, *paths]
        done = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ParityError(f"the second render process failed ({' '.join(f'{k}={v}' for k, v in env.items())}):\n{done.stderr[-2000:]}")
        index = json.loads((Path(folder) / "index.json").read_text(encoding="utf-8"))
        return {case_id: np.asarray(Image.open(Path(folder) / file).convert("RGB")) for case_id, file in index.items()}


def _render_worker(folder: str, device: str, paths: list[str]) -> int:
    """The second process: render every case and save it losslessly, with an index by case id."""
    from parity.cases.suite import load_all
    from parity.core.environment import reproducible_cpu_math
    from parity.core.images import save_png
    from parity.render.engine import Engine

    reproducible_cpu_math()
    engine = Engine(device)
    index = {}
    for load in load_all([Path(p) for p in paths]):
        for case in (case for case in load.cases if not case.refused):  # as calibrate skips them
            file = f"{len(index)}.png"
            save_png(engine.render(case).image, Path(folder) / file)
            index[case.id] = file
    (Path(folder) / "index.json").write_text(json.dumps(index), encoding="utf-8")
    return 0


def table(result: SuiteCalibration) -> str:
    """The calibration of one suite as a markdown table: each measurement, the floor, the thresholds."""
    c = result.calibration
    names = [m.name for m in c.measurements]
    lines = [
        f"### {result.suite} — {c.env_class} ({result.path})",
        "",
        *(f"- {m.name}: {m.description}{'' if m.feeds_thresholds else ' (not used for thresholds)'}" for m in c.measurements),
        f"- margin: {c.margin}",
        "",
        "| case | " + " | ".join(f"{n}: SSIM / PSNR / mean" for n in names) + " | floor: SSIM / PSNR / mean | thresholds: SSIM ≥ / PSNR ≥ / mean ≤ |",
        "|---|" + "---|" * (len(names) + 2),
    ]
    for name, entry in c.cases.items():
        cells = [_triple(entry.measured[n]) if n in entry.measured else "—" for n in names]
        t = entry.thresholds
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {_triple(entry.floor)} | {t.ssim_min:.6f} / {t.psnr_min:.2f} / {t.mean_abs_diff_max:.4f} |")
    return "\n".join(lines) + "\n"


def _triple(m: Metrics) -> str:
    psnr = "inf" if m.psnr == float("inf") else f"{m.psnr:.2f}"
    return f"{m.ssim:.6f} / {psnr} / {m.mean_abs_diff:.4f}"


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m parity.run.calibrate", description="calibrate's render worker")
    parser.add_argument("--render", required=True, metavar="DIR")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("paths", nargs="+")
    arguments = parser.parse_args()
    sys.exit(_render_worker(arguments.render, arguments.device, arguments.paths))
