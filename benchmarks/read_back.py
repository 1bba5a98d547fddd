"""Reading the LoRA-targeted weights back from a checkpoint: what a restore costs when no copy fits on the GPU.

The full-size transformer (random bf16 weights of the real architecture, built on the GPU) is saved once with
`save_pretrained` (--folder; 40.9 GB) and loaded back onto the GPU with `from_pretrained`, as parity loads a
user's checkpoint. Its 840 block linears (the layers a LoRA targets) are then restored from the files
`--repeats` times each way, alternating:

- direct: each weight copied straight from the memory-mapped file to the GPU (a pageable copy), as the first
          version of the read-back did;
- staged: `CheckpointWeights.read_into`, through two pinned buffers so that one tensor's host copy overlaps the
          transfer of the one before (what parity does now).

Every restore ends synchronised and is checked against the fingerprints of the loaded weights (pristine.fingerprint),
so a fast but wrong copy cannot pass. The page cache is warm (the files were just written and read), as after a
model load on a machine whose memory holds the checkpoint.

Usage (GPU machine):  python benchmarks/read_back.py --folder /tmp/qwen-2511-transformer --out OUT
Check only (CPU):     python benchmarks/read_back.py --tiny --out OUT
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from parity.models.qwen.tiny import LORA_TARGETS
from parity.render.checkpoint import CheckpointWeights
from parity.render.pristine import fingerprint


def build_and_save(folder: Path, device: str, tiny: bool) -> dict:
    from diffusers import QwenImageTransformer2DModel

    start = time.perf_counter()
    if tiny:
        from parity.models.qwen.tiny import ensure_tiny

        transformer = QwenImageTransformer2DModel.from_pretrained(str(ensure_tiny() / "transformer"))
    else:
        torch.manual_seed(0)
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.bfloat16)
        try:
            with torch.device(device):
                transformer = QwenImageTransformer2DModel(
                    patch_size=2, in_channels=64, out_channels=16, num_layers=60, attention_head_dim=128,
                    num_attention_heads=24, joint_attention_dim=3584, axes_dims_rope=(16, 56, 56), zero_cond_t=True,
                )
        finally:
            torch.set_default_dtype(previous)
    built = time.perf_counter() - start
    start = time.perf_counter()
    transformer.save_pretrained(str(folder), safe_serialization=True)
    return {"build_s": round(built, 2), "save_s": round(time.perf_counter() - start, 2)}


def targeted(transformer) -> dict[str, torch.Tensor]:
    """The block linears a LoRA targets (LORA_TARGETS in every block), by state-dict key."""
    modules = dict(transformer.named_modules())
    names = [n for n in modules if n.startswith("transformer_blocks.") and n.split(".", 2)[-1] in LORA_TARGETS]
    return {f"{name}.weight": modules[name].weight.data for name in names}


def restore_direct(checkpoint: CheckpointWeights, weights: dict[str, torch.Tensor]) -> None:
    for key, stored in checkpoint.read(list(weights)):
        weights[key].copy_(stored.to(weights[key].dtype))


def timed(how: str, checkpoint, weights, fingerprints, device: str) -> dict:
    for weight in weights.values():  # every restore has something to write
        weight.zero_()
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    if how == "direct":
        restore_direct(checkpoint, weights)
    else:
        checkpoint.read_into(weights)
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    exact = all(torch.equal(fingerprint(w), fingerprints[k]) for k, w in weights.items())
    return {"how": how, "seconds": round(seconds, 3), "exact": exact}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, help="where the transformer is saved (saved there first if missing)")
    parser.add_argument("--device", default=None, help="default cuda:0 (cpu with --tiny)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help="the tiny model on the CPU: checks this script, measures nothing")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    device = args.device or ("cpu" if args.tiny else "cuda:0")
    folder = args.folder or Path(tempfile.mkdtemp(prefix="read-back-"))
    meta: dict = {"device": torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu", "torch": torch.__version__}
    if not (folder / "config.json").is_file():
        meta.update(build_and_save(folder, device, args.tiny))
    from diffusers import QwenImageTransformer2DModel

    dtype = torch.float32 if args.tiny else torch.bfloat16
    start = time.perf_counter()
    transformer = QwenImageTransformer2DModel.from_pretrained(str(folder), torch_dtype=dtype).to(device)
    meta["load_s"] = round(time.perf_counter() - start, 2)
    checkpoint = CheckpointWeights.of(transformer)
    if checkpoint is None:
        print(f"no checkpoint found for {folder}", file=sys.stderr)
        return 2
    weights = targeted(transformer)
    fingerprints = {key: fingerprint(w) for key, w in weights.items()}
    meta["targeted"] = len(weights)
    meta["targeted_gb"] = round(sum(w.numel() * w.element_size() for w in weights.values()) / 1e9, 2)
    rows = []
    for repeat in range(args.repeats):
        for how in ("direct", "staged") if repeat % 2 == 0 else ("staged", "direct"):
            rows.append({"repeat": repeat, **timed(how, checkpoint, weights, fingerprints, device)})
            print(json.dumps(rows[-1]), flush=True)
    summary = {}
    for how in ("direct", "staged"):
        seconds = [r["seconds"] for r in rows if r["how"] == how]
        summary[f"{how} s (median of {len(seconds)})"] = statistics.median(seconds)
        summary[f"{how} GB/s"] = round(meta["targeted_gb"] / statistics.median(seconds), 2)
    summary["every restore exact"] = all(r["exact"] for r in rows)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows, "summary": summary}, indent=1))
    print(json.dumps({"meta": meta, "summary": summary}, indent=1))
    return 0 if summary["every restore exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
