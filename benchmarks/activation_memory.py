"""GPU memory a render takes beyond the weights, stage by stage, on the full-size random-weight model.

`offload: auto` decides by an estimate of the largest case's activations (the model package's
`geometry.activation_bytes`); this script measures what that estimate is fitted to and checked against. For each
output size and number of control images it renders one case with parity's reference wiring (2 steps, CFG) and
records, per stage, the peak allocated memory above what was allocated before the render (the weights):
text encoder, VAE encode of the control images, each transformer pass, VAE decode. It prints a table and the
estimate beside the measured peak; --out writes the rows as JSON.

    python benchmarks/activation_memory.py --out benchmarks/results/activation-memory.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from full_size import build_pipeline

from parity.models.qwen.geometry import activation_bytes
from parity.models.qwen.wiring import Renderer, Request

SHAPES = [(512, 512, 1), (1024, 1024, 1), (1024, 1024, 2), (1024, 1024, 3), (1536, 1024, 1), (1536, 1536, 3)]


class StagePeaks:
    """Peak allocated bytes above a base, per stage, from hooks around each component's calls."""

    def __init__(self, pipe, device: str):
        self.device, self.base, self.peaks = device, 0, {}
        self._handles = []
        for name in ("text_encoder", "transformer"):
            module = getattr(pipe, name)
            self._handles.append(module.register_forward_pre_hook(lambda *_: self._start()))
            self._handles.append(module.register_forward_hook(lambda *_, n=name: self._stop(n)))
        for name in ("encode", "decode"):
            real = getattr(pipe.vae, name)

            def wrapped(*args, _real=real, _name=name, **kwargs):
                self._start()
                out = _real(*args, **kwargs)
                self._stop(f"vae_{_name}")
                return out

            setattr(pipe.vae, name, wrapped)

    def _start(self) -> None:
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)

    def _stop(self, stage: str) -> None:
        torch.cuda.synchronize(self.device)
        above = torch.cuda.max_memory_allocated(self.device) - self.base
        self.peaks[stage] = max(self.peaks.get(stage, 0), above)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--device", default="cuda:0")
    args = parser.parse_args(argv)
    torch.cuda.set_device(args.device)
    pipe = build_pipeline(args.device, seed=0)
    stages = StagePeaks(pipe, args.device)
    rows = []
    for width, height, controls in SHAPES:
        images = tuple(Image.new("RGB", (1024, 1024 - 256 * (i % 2)), (40 * i, 90, 160)) for i in range(controls))
        renderer = Renderer(pipe)  # fresh caches: every stage runs
        torch.cuda.synchronize(args.device)
        stages.base, stages.peaks = torch.cuda.memory_allocated(args.device), {}
        renderer.render(Request("a photo of a cat wearing a hat", "", width, height, 2, 4.0, 0, images))
        peak = max(stages.peaks.values())
        estimate = activation_bytes(width, height, controls)
        rows.append({
            "width": width, "height": height, "controls": controls,
            "stages_gb": {k: round(v / 1e9, 3) for k, v in stages.peaks.items()},
            "peak_gb": round(peak / 1e9, 3), "estimate_gb": round(estimate / 1e9, 3),
        })
        print(json.dumps(rows[-1]), flush=True)
    print("\n| size | controls | text encoder | VAE encode | transformer | VAE decode | peak GB | estimate GB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        s = r["stages_gb"]
        print(f"| {r['width']}x{r['height']} | {r['controls']} | {s.get('text_encoder')} | {s.get('vae_encode')} | "
              f"{s.get('transformer')} | {s.get('vae_decode')} | {r['peak_gb']} | {r['estimate_gb']} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"gpu": torch.cuda.get_device_name(args.device), "torch": torch.__version__, "rows": rows}, indent=1))
    return 0 if all(r["estimate_gb"] >= r["peak_gb"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
