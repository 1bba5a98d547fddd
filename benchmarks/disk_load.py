"""Loading a real checkpoint from local disk: parity's load against a plain `from_pretrained` of the same folder.

The full-size model (random bf16 weights of the real architecture, built on the GPU as full_size.py builds it) is
saved once with `save_pretrained` to a local folder (--folder; 57.7 GB, so the disk must hold it). Then, in
alternating order, each driver loads it `--repeats` times:

- plain:  `QwenImageEditPlusPipeline.from_pretrained(folder, torch_dtype=bfloat16)`, then `.to(device)` (what the
          reference server does with offload none);
- parity: an Engine on the device asked for the folder as a case's `base_model` (locate, from_pretrained, the
          offload placement), as `parity run` loads a user's checkpoint.

Each load ends when the weights are on the GPU (synchronised). `--cold` drops the page cache before every load
(needs root; the results say whether it could), so both drivers read from the disk; without it the second and
later loads read from memory. The GPU is emptied between loads, and both drivers load the tiny model once first,
untimed (the first load of a process imports the model code).

Usage (GPU machine):  python benchmarks/disk_load.py --folder /tmp/qwen-2511 --repeats 2 --cold --out OUT
Check only (CPU):     python benchmarks/disk_load.py --tiny --out OUT
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def drop_page_cache() -> bool:
    """Write dirty pages and drop the page cache; False where this process may not (not root, read-only /proc)."""
    subprocess.run(["sync"], check=False)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def _release(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def save_full_size(folder: Path, device: str, seed: int) -> dict:
    """Build the random full-size model on the GPU and save it as a diffusers folder (once)."""
    from full_size import build_pipeline

    start = time.perf_counter()
    pipe = build_pipeline(device, seed)
    built = time.perf_counter() - start
    start = time.perf_counter()
    pipe.save_pretrained(str(folder), safe_serialization=True)
    subprocess.run(["sync"], check=False)
    saved = time.perf_counter() - start
    del pipe
    _release(device)
    return {"build_s": round(built, 2), "save_s": round(saved, 2)}


def load_plain(folder: Path, device: str):
    from diffusers import QwenImageEditPlusPipeline

    pipe = QwenImageEditPlusPipeline.from_pretrained(str(folder), torch_dtype=torch.bfloat16 if device.startswith("cuda") else torch.float32)
    pipe.to(device)
    return pipe


def load_parity(folder: Path, device: str):
    from parity.render.engine import Engine

    engine = Engine(device)
    engine.model(str(folder), ".")
    return engine


def timed_load(driver: str, folder: Path, device: str, cold: bool) -> dict:
    dropped = drop_page_cache() if cold else False
    start = time.perf_counter()
    held = (load_plain if driver == "plain" else load_parity)(folder, device)
    _sync(device)
    seconds = time.perf_counter() - start
    if driver == "parity":
        held.close()
    del held
    _release(device)
    return {"driver": driver, "seconds": round(seconds, 4), "page_cache_dropped": dropped}


def warm_up(device: str) -> None:
    """Both drivers load the tiny model once, untimed: the first load in a process imports the pipeline and model
    modules (seconds), which neither driver should be charged with."""
    from parity.models.qwen.tiny import ensure_tiny

    tiny = ensure_tiny()
    for driver in ("plain", "parity"):
        timed_load(driver, tiny, device, cold=False)


def summarize(rows: list[dict]) -> dict:
    by = {d: [r["seconds"] for r in rows if r["driver"] == d] for d in ("plain", "parity")}
    summary = {f"{d} load s (median of {len(v)})": round(statistics.median(v), 2) for d, v in by.items() if v}
    if by["plain"] and by["parity"]:
        summary["parity / plain (medians)"] = round(statistics.median(by["parity"]) / statistics.median(by["plain"]), 3)
        summary["per repeat parity / plain"] = [round(p / q, 3) for p, q in zip(by["parity"], by["plain"])]
    summary["every load read from disk (page cache dropped)"] = all(r["page_cache_dropped"] for r in rows)
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, help="where the full-size checkpoint is (saved there first if missing)")
    parser.add_argument("--device", default=None, help="default cuda:0 (cpu with --tiny)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cold", action="store_true", help="drop the page cache before every load (root)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="the bundled tiny model's folder on the CPU: checks this script, measures nothing")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    args.device = args.device or ("cpu" if args.tiny else "cuda:0")
    meta: dict = {"device": torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu", "torch": torch.__version__}
    if args.tiny:
        from parity.models.qwen.tiny import ensure_tiny

        folder = ensure_tiny()
    else:
        folder = args.folder
        if folder is None:
            parser.error("--folder is required without --tiny")
        if not (folder / "model_index.json").is_file():
            meta.update(save_full_size(folder, args.device, args.seed))
    meta["folder_bytes"] = folder_bytes(folder)
    meta["folder_gb"] = round(meta["folder_bytes"] / 1e9, 2)
    warm_up(args.device)
    rows = []
    for repeat in range(args.repeats):
        order = ("plain", "parity") if repeat % 2 == 0 else ("parity", "plain")
        for driver in order:
            row = {"repeat": repeat, **timed_load(driver, folder, args.device, args.cold)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {"meta": meta, "rows": rows, "summary": summarize(rows)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result["summary"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
