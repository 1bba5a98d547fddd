"""Quantized preview suite at full size: peak GPU memory and wall of `parity run --diagnose` against `parity run`.

The trainer drew its previews on a quantized model (default: qfloat8 on the transformer and the text encoder, the
trainer UI's default job). This script builds the full-size model of benchmarks/full_size.py (random bf16 weights,
the true architecture), saves it to --folder once (parity loads it as a user's checkpoint), writes a suite of
--cases cases with a `training:` block that quantizes, draws its previews with parity's preview wiring
(`parity draw-previews`, the quantized replay), then runs the suite twice in this process, each from a fresh load:
  run        `parity run`: the reference wiring only (the cases fail: the previews are the quantized model's)
  diagnose   `parity run --diagnose`: every variant, the quantized transformer swapped in and out beside the loaded one
and records for each (and for the drawing) the wall time and the GPU's peak allocated memory, the verdicts, and
writes results.json and results.md under --out. --tiny runs the bundled tiny model on the CPU: it checks this
script (the verdicts included) and measures nothing.

    python benchmarks/quantized.py --out benchmarks/results/quantized --folder /tmp/qwen-2511 --cases 2
    python benchmarks/quantized.py --out /tmp/quantized --tiny
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import full_size  # the benchmark's model, LoRA and suite (found through the path above)

from parity.cli import main as parity


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--folder", type=Path, default=None, help="where the full-size model is saved (once) and loaded from")
    parser.add_argument("--cases", type=full_size.case_names, default=full_size.case_names("2"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--qtype", default="qfloat8", help="model.qtype of the job (the transformer)")
    parser.add_argument("--qtype-te", default="qfloat8", help="model.qtype_te of the job (the text encoder; 'none': not quantized)")
    parser.add_argument("--device", default=None, help="the GPU (default cuda:0; cpu with --tiny)")
    parser.add_argument("--tiny", action="store_true", help="the bundled tiny model on the CPU: checks this script, measures nothing")
    args = parser.parse_args(argv)
    args.device = args.device or ("cpu" if args.tiny else "cuda:0")
    if args.folder is None and not args.tiny:
        parser.error("--folder is needed at full size: parity loads the model from files, as a user's checkpoint")
    # what full_size.set_up reads
    args.label, args.tflops, args.cap_gb = "quantized", 0.0, None
    return args


def write_quantized_suite(args, plain: Path) -> Path:
    """The benchmark suite as a preview suite of a quantized job."""
    suite = json.loads(plain.read_text())
    suite["base_model"] = "tiny" if args.tiny and args.folder is None else str(args.folder.resolve())
    suite["baseline_kind"] = "preview"
    # exact: the full preview wiring must reproduce the previews bit for bit, and the diagnosis then names every
    # knob it needs (at looser limits it stops at the first set that passes)
    suite["thresholds"] = {"ssim_min": 1.0, "psnr_min": 1000, "max_abs_diff_max": 0, "mean_abs_diff_max": 0}
    te = args.qtype_te != "none"
    suite["training"] = {"quantize": True, "qtype": args.qtype, "quantize_te": te, **({"qtype_te": args.qtype_te} if te else {})}
    for sample in suite["sample"]["samples"]:
        sample["baseline"] = f"previews/{sample['name']}.jpg"  # the trainer's default format
    path = plain.with_name("quantized.yaml")
    path.write_text(json.dumps(suite))
    return path


def measured(device: str, argv: list[str]) -> dict:
    """One parity command in this process: its exit code, wall seconds, the GPU's peak allocated GB, its output."""
    gc.collect()
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    printed = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(printed):
        code = parity(argv)
    row = {"argv": argv, "exit": code, "wall_s": round(time.perf_counter() - start, 1)}
    if cuda:
        row["peak_gb"] = round(torch.cuda.max_memory_allocated(device) / 1e9, 2)
        row["card_gb"] = round(torch.cuda.get_device_properties(device).total_memory / 1e9, 1)
    row["output_tail"] = printed.getvalue()[-2000:]
    return row


def verdicts(results: Path) -> list[str]:
    """Each case's verdict and what its full preview wiring measured against the preview."""
    lines = []
    for case in json.loads(results.read_text())["cases"]:
        diagnosis = case.get("diagnosis") or {}
        full = (diagnosis.get("full_preview") or {}).get("metrics") or {}
        lines.append(f"{case['id']}: {diagnosis.get('verdict', case.get('status'))}; full preview max |diff| {full.get('max_abs_diff', '—')}")
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    pipe, _, lora, meta = full_size.set_up(args)  # builds and saves the model (--folder), writes the LoRA
    del pipe
    gc.collect()
    plain = full_size.write_suite(Path(lora).parent, args.cases, args.size, args.steps, lora, shrink=8 if args.tiny else 1)
    suite = write_quantized_suite(args, plain)
    meta.update({"qtype": args.qtype, "qtype_te": args.qtype_te, "suite": str(suite)})
    data: dict = {"meta": meta}
    data["draw"] = measured(args.device, ["draw-previews", str(suite), "--device", args.device, "--force"])
    data["run"] = measured(args.device, ["run", str(suite), "--device", args.device, "--out", str(args.out / "run")])
    data["diagnose"] = measured(args.device, ["run", str(suite), "--device", args.device, "--diagnose", "--out", str(args.out / "diagnose")])
    data["verdicts"] = verdicts(args.out / "diagnose" / "results.json")
    (args.out / "results.json").write_text(json.dumps(data, indent=2))
    lines = [f"# quantized --diagnose ({meta['gpu']}, {args.qtype} / {args.qtype_te}, {len(args.cases)} cases, {args.steps} steps)", "",
             "| command | exit | wall s | peak GB |", "|---|---|---|---|"]
    for key in ("draw", "run", "diagnose"):
        row = data[key]
        lines.append(f"| {key} | {row['exit']} | {row['wall_s']} | {row.get('peak_gb', '—')} |")
    lines += ["", *[f"- {v}" for v in data["verdicts"]]]
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if data["draw"]["exit"] == 0 and data["diagnose"]["exit"] in (0, 1) else 1


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
