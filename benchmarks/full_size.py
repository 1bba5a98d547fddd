"""Full-size benchmark: Qwen-Image-Edit-2511's true architecture with random bf16 weights, on one GPU.

Builds the transformer (60 blocks, 24 heads x 128), the Qwen2.5-VL-7B text encoder and the VAE directly on the
GPU with random values (not zeros: zeros run faster), a random ai-toolkit-format LoRA at rank 32 on every
linear of the transformer blocks, and a suite of up to 8 cases at 1024x1024 (1, 2 and 3 control images, two
LoRA scales, 25 steps, CFG). Drivers, all on the same weights in one process:
  parity-a, parity-b  parity's engine, the suite in two different orders (outputs compared with torch.equal)
  parity-cfg2         parity's engine with --cfg-device: each step's unconditional pass on a second GPU at the
                      same time (outputs compared with parity-a's with torch.equal, latency ratio reported)
  server-none         the reference server per request: prompt encoded twice, unfuse -> fuse in place on a
                      scale change, the stock pipeline call, JPEG q95 save; no offload (its fastest setting);
                      the stock call's own denoising loop is timed (first transformer pass to the last step's
                      end) so parity's loop can be set against it case by case
  server-model        the same with diffusers' model CPU offload (OFFLOAD_MODE=model)
  server-sequential   the same with diffusers' sequential CPU offload (OFFLOAD_MODE=sequential)
  parity-model, parity-sequential
                      parity's engine in that offload mode (offload: model / sequential), the suite in order
--cap-gb N holds every driver to N GB of the GPU (torch.cuda.set_per_process_memory_fraction, set once the model
is placed), as on a smaller card: 80 (A100/H100), 48 (L40S/A6000), 24.
--folder DIR saves the model there with save_pretrained (once; a folder holding model_index.json is reused) and
every driver loads it from there, as a user's checkpoint is loaded: parity's engine with the folder as base_model,
the server-style drivers with a plain from_pretrained. Only then can parity read weights back from the checkpoint
when a copy does not fit (an adopted in-memory model has no files).
Per case it records the stage timings, the denoising FLOPs counted from the actual sequence lengths against
the bound at --tflops, the time outside denoising, scale-switch time and peak memory, and writes
results.json and results.md under --out after every case (a run cut short keeps what it finished).

    python benchmarks/full_size.py --out benchmarks/results --drivers parity-a,parity-b,server-none
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import hashlib
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from parity.cases.suite import load_cases
from parity.models.knobs import LoraMethod
from parity.models.qwen.knobs import TextImageSize
from parity.models.qwen.schedulers import SCHEDULER_CONFIG
from parity.models.qwen.tiny import LORA_TARGETS, build_processor, build_tokenizer
from parity.models.qwen.wiring import condition_tensor, encode, resize_for_text
from parity.render.engine import Engine

INNER = 24 * 128  # transformer width
LAYERS = 60
# (name, control images as (width, height), LoRA multiplier)
CASES = [
    ("c1-square", [(1024, 1024)], 1.0),
    ("c2-mixed", [(768, 1024), (1024, 768)], 1.0),
    ("c3-mixed", [(1024, 1024), (768, 1024), (1024, 768)], 1.0),
    ("c1-portrait", [(768, 1024)], 1.0),
    ("c2-square", [(1024, 1024), (1024, 1024)], 0.7),
    ("c3-square", [(1024, 1024), (1024, 1024), (1024, 1024)], 0.7),
    ("c1-landscape", [(1024, 768)], 0.7),
    ("c2-portrait", [(768, 1024), (768, 1024)], 0.7),
]


def case_names(value: str) -> list[str]:
    """--cases: a count N (the first N of CASES) or names of CASES, comma-separated, in CASES order."""
    known = [name for name, _, _ in CASES]
    if value.strip().isdigit():
        count = int(value)
        if not 1 <= count <= len(known):
            raise argparse.ArgumentTypeError(f"--cases {value}: a count must be 1 to {len(known)}")
        return known[:count]
    asked = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in asked if name not in known]
    if unknown or not asked:
        raise argparse.ArgumentTypeError(f"--cases {value!r}: unknown case(s) {unknown}; known: {', '.join(known)}")
    return [name for name in known if name in asked]


def build_pipeline(device: str, seed: int):
    """The true architecture with random bf16 weights, created on the GPU by the libraries' own initialisation."""
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImageEditPlusPipeline,
        QwenImageTransformer2DModel,
    )
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tokenizer = build_tokenizer()
    processor = build_processor(tokenizer)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>")}
    te_config = Qwen2_5_VLConfig(
        text_config={
            "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
            "num_key_value_heads": 4, "vocab_size": 152064, "max_position_embeddings": 128000, "rope_theta": 1000000.0,
            "rope_scaling": {"mrope_section": [16, 24, 24], "rope_type": "default", "type": "default"},
        },
        vision_config={
            "depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "out_hidden_size": 3584,
            "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
            "fullatt_block_indexes": [7, 15, 23, 31],
        },
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        vision_token_id=ids["<|vision_pad|>"],
    )
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # the libraries' own random init, run on the GPU in bf16
    try:
        with torch.device(device):
            transformer = QwenImageTransformer2DModel(
                patch_size=2, in_channels=64, out_channels=16, num_layers=LAYERS, attention_head_dim=128,
                num_attention_heads=24, joint_attention_dim=3584, axes_dims_rope=(16, 56, 56), zero_cond_t=True,
            )
            text_encoder = Qwen2_5_VLForConditionalGeneration(te_config)
            vae = AutoencoderKLQwenImage()
    finally:
        torch.set_default_dtype(previous)
    for module in (transformer, text_encoder, vae):
        module.to(device=device, dtype=torch.bfloat16).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG)
    pipe = QwenImageEditPlusPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, processor=processor, transformer=transformer)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def write_lora(path: Path, rank: int, seed: int) -> int:
    """A random ai-toolkit-format LoRA on every linear of every transformer block (60 x 14 = 840)."""
    from safetensors.torch import save_file

    shapes = {
        "attn.to_q": (INNER, INNER), "attn.to_k": (INNER, INNER), "attn.to_v": (INNER, INNER), "attn.to_out.0": (INNER, INNER),
        "attn.add_q_proj": (INNER, INNER), "attn.add_k_proj": (INNER, INNER), "attn.add_v_proj": (INNER, INNER),
        "attn.to_add_out": (INNER, INNER), "img_mlp.net.0.proj": (INNER, 4 * INNER), "img_mlp.net.2": (4 * INNER, INNER),
        "txt_mlp.net.0.proj": (INNER, 4 * INNER), "txt_mlp.net.2": (4 * INNER, INNER),
        "img_mod.1": (INNER, 6 * INNER), "txt_mod.1": (INNER, 6 * INNER),
    }
    assert set(shapes) == set(LORA_TARGETS)
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for block in range(LAYERS):
        for target, (fan_in, fan_out) in shapes.items():
            prefix = f"diffusion_model.transformer_blocks.{block}.{target}"
            tensors[f"{prefix}.lora_A.weight"] = (torch.randn(rank, fan_in, generator=generator) / fan_in**0.5).to(torch.float16)
            tensors[f"{prefix}.lora_B.weight"] = (torch.randn(fan_out, rank, generator=generator) * 0.01).to(torch.float16)
    save_file(tensors, str(path))
    return len(tensors) // 2


def write_suite(folder: Path, names: list[str], size: int, steps: int, lora: Path, shrink: int = 1) -> Path:
    """The suite file and its random control images (`shrink`: smaller files of the same aspect, which the pipeline
    resizes to ~1 MP all the same; --tiny uses 8, so that writing them costs nothing, and gives every control image
    of one size the same pixels, so that each size is encoded once: on the CPU each ~1 MP encode takes seconds)."""
    rng = np.random.default_rng(0)
    samples = []
    pixels: dict[tuple[int, int], np.ndarray] = {}
    for name, controls, multiplier in CASES:
        if name not in names:
            continue
        entry = {"name": name, "prompt": f"benchmark case {name}: put the hat on the person", "network_multiplier": multiplier}
        for i, (w, h) in enumerate(controls, start=1):
            image = folder / f"{name}-{i}.png"
            drawn = rng.integers(0, 256, (h // shrink, w // shrink, 3), dtype=np.uint8)
            Image.fromarray(pixels.setdefault((w, h), drawn) if shrink > 1 else drawn).save(image)
            entry[f"ctrl_img_{i}"] = image.name
        samples.append(entry)
    suite = {
        "base_model": "tiny",
        "loras": [{"path": str(lora)}],
        "sample": {"width": size, "height": size, "seed": 42, "walk_seed": True, "guidance_scale": 4,
                   "sample_steps": steps, "neg": "", "samples": samples},
    }
    path = folder / "benchmark.yaml"
    path.write_text(json.dumps(suite))  # JSON is YAML
    return path


def transformer_flops(image_tokens: int, text_tokens: int) -> float:
    """One transformer forward: 12 d^2 multiply-adds per token per block in the linears of both streams,
    QK^T and AV over the joint sequence, and the input/output projections."""
    n = image_tokens + text_tokens
    per_block = 24 * INNER**2 * n + 4 * INNER * n * n
    io = 2 * image_tokens * (64 * INNER + INNER * 64) + 2 * text_tokens * 3584 * INNER
    return LAYERS * per_block + io


def image_tokens_of(case, size: int) -> int:
    from diffusers.pipelines.qwenimage.pipeline_qwenimage_edit_plus import VAE_IMAGE_SIZE, calculate_dimensions

    tokens = (size // 16) ** 2
    for path in case.effective.control_images:
        with Image.open(path) as img:
            w, h = calculate_dimensions(VAE_IMAGE_SIZE, img.size[0] / img.size[1])
        tokens += (h // 16) * (w // 16)
    return tokens


class Recorder:
    def __init__(self, out: Path, meta: dict):
        self.out, self.data = out, {"meta": meta, "runs": {}}
        out.mkdir(parents=True, exist_ok=True)

    def add(self, driver: str, row: dict) -> None:
        self.data["runs"].setdefault(driver, []).append(row)
        self.flush()

    def flush(self) -> None:
        (self.out / "results.json").write_text(json.dumps(self.data, indent=2))
        (self.out / "results.md").write_text(markdown(self.data))


def weights_fingerprint(pipe) -> str:
    """A hash over sampled weights of every component, to show two runs built the same random model."""
    digest = hashlib.sha256()
    for name in ("transformer", "text_encoder", "vae"):
        params = list(pipe.components[name].parameters())
        for p in params[:: max(1, len(params) // 16)]:
            digest.update(p.detach().flatten()[:4096].float().cpu().numpy().tobytes())
    return digest.hexdigest()


def warm_up(engine: Engine, case, tiny: bool = False) -> float:
    """One short render without the LoRA, so that first-call kernel set-up is not charged to a driver. Its caches
    are emptied again, so the first case pays its own encodings; with --tiny (which measures nothing) the render is
    at the case's size and the caches are kept."""
    from parity.models.qwen.wiring import Request

    start = time.perf_counter()
    images = tuple(Image.open(p).convert("RGB") for p in case.effective.control_images)
    replica = engine.cfg.replica if engine.cfg is not None else None
    if replica is not None:
        replica.follow(engine._loaded.lora.key)
    size = case.effective.width if tiny else 512
    engine._loaded.renderer.render(Request("warm up", "", size, size, 2, 4.0, 0, images), uncond_replica=replica)
    if not tiny:
        engine._loaded.renderer.text_cache.clear()
        engine._loaded.renderer.latent_cache.clear()
    return time.perf_counter() - start


def render_case(engine: Engine, case, size: int, tflops: float, previous_scale) -> tuple[dict, torch.Tensor]:
    """Render one case with parity's engine; its row (timings, FLOPs against the bound, hashes) and output."""
    t0 = time.perf_counter()
    rendered = engine.render(case)
    wall = time.perf_counter() - t0
    decoded = rendered.decoded.detach().to("cpu")
    renderer = engine._loaded.renderer
    key = next(k for k in renderer.text_cache if k[0] == case.effective.prompt)
    cond, uncond = renderer.text_cache[key]
    image_tokens = image_tokens_of(case, size)
    flops = case.effective.steps * (transformer_flops(image_tokens, cond.embeds.shape[1]) + transformer_flops(image_tokens, uncond.embeds.shape[1]))
    denoise = rendered.timings.get("denoise", float("nan"))
    scale = case.effective.lora_scale
    switch = rendered.timings.get("lora_fuse", 0.0) + rendered.timings.get("cfg_copy", 0.0)
    return {
        "case": case.name, "controls": len(case.effective.control_images), "lora_scale": scale, "wall_s": round(wall, 3),
        "denoise_s": round(denoise, 3), "pflop": round(flops / 1e15, 3), "bound_s": round(flops / (tflops * 1e12), 3),
        "denoise_vs_bound": round(denoise / (flops / (tflops * 1e12)), 3), "outside_denoise_s": round(wall - denoise, 3),
        "scale_switch_s": round(switch, 3) if scale != previous_scale else 0.0,
        "image_tokens": image_tokens, "text_tokens": [cond.embeds.shape[1], uncond.embeds.shape[1]],
        "peak_memory_gb": rendered.peak_memory_gb, "timings": {k: round(v, 3) for k, v in rendered.timings.items()},
        "copy_notes": [note for note in rendered.notes if "LoRA-targeted weights" in note],
        "image_sha256": hashlib.sha256(np.ascontiguousarray(rendered.image).tobytes()).hexdigest(),
        "decoded_sha256": hashlib.sha256(decoded.float().numpy().tobytes()).hexdigest(),
    }, decoded


# parity driver -> (case order, CFG-parallel on a second GPU, offload mode)
PARITY_DRIVERS = {
    "parity-a": ("forward", False, "none"),
    "parity-b": ("interleaved", False, "none"),
    "parity-cfg2": ("forward", True, "none"),
    "parity-model": ("forward", False, "model"),
    "parity-sequential": ("forward", False, "sequential"),
}


def cap(args) -> None:
    """Hold this process to --cap-gb of the GPU from now on (a smaller card); no cap: the whole GPU."""
    if args.device.startswith("cuda"):
        total = torch.cuda.get_device_properties(args.device).total_memory
        fraction = min(1.0, args.cap_gb * 1e9 / total) if args.cap_gb else 1.0
        torch.cuda.set_per_process_memory_fraction(fraction, args.device)


def uncap(args) -> None:
    if args.device.startswith("cuda"):
        torch.cuda.set_per_process_memory_fraction(1.0, args.device)


def run_parity(engine: Engine, cases, order, size, tflops, recorder, driver, outputs, copy_room_gb=None):
    engine.expect([cases[index] for index in order])  # as a parity run plans it: one scale keeps no weight copy
    if copy_room_gb is not None:  # where the weight copy goes, forced (the engine's own rule otherwise)
        fused = engine._loaded.lora.fused
        fused.keep = dataclasses.replace(fused.keep, room=lambda: int(copy_room_gb * 1e9))
    start = time.perf_counter()
    previous_scale = None
    for index in order:
        case = cases[index]
        row, outputs[case.name] = render_case(engine, case, size, tflops, previous_scale)
        recorder.add(driver, row)
        previous_scale = case.effective.lora_scale
    return time.perf_counter() - start


class StockDenoiseClock:
    """The stock call's denoising loop, timed from outside: from its first transformer pass (a forward pre-hook)
    to the end of its last step (callback_on_step_end); one CUDA sync at each end, none in between."""

    def __init__(self, pipe, device: str, steps: int):
        self.device, self.steps = device, steps
        self.start: float | None = None
        self.end: float | None = None
        self._handle = pipe.transformer.register_forward_pre_hook(self._first_pass)

    def _first_pass(self, module, args):
        if self.start is None:
            _sync(self.device)
            self.start = time.perf_counter()

    def on_step_end(self, pipe, step, timestep, kwargs):
        if step == self.steps - 1:
            _sync(self.device)
            self.end = time.perf_counter()
        return {}

    def seconds(self) -> float:
        self._handle.remove()
        return float("nan") if self.start is None or self.end is None else self.end - self.start


def run_server_style(args, pipe, cases, lora: Path, offload: str, recorder, driver, device):
    """What ai-toolkit-inference does per request, on the same weights (a fresh LoRA load first)."""
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    pipe.remove_all_hooks()  # whatever a driver before left; then the server's one mode (its _apply_offload_mode)
    if offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe.to(device)
    cap(args)
    if device.startswith("cuda"):  # from here on: the placement's peak (a rebuilt model sits whole on the GPU) is not a render's
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    t0 = time.perf_counter()
    pipe.load_lora_weights(str(lora.parent), weight_name=lora.name, adapter_name="lora", local_files_only=True)
    current = cases[0].effective.lora_scale
    pipe.fuse_lora(adapter_names=["lora"], lora_scale=current)
    recorder.add(driver, {"case": "(lora load + first fuse)", "wall_s": round(time.perf_counter() - t0, 3)})
    for case in cases:
        t0 = time.perf_counter()
        switch = 0.0
        if case.effective.lora_scale != current:
            s0 = time.perf_counter()
            pipe.unfuse_lora()
            pipe.fuse_lora(adapter_names=["lora"], lora_scale=case.effective.lora_scale)
            _sync(device)
            switch = time.perf_counter() - s0
            current = case.effective.lora_scale
        images = [Image.open(p).convert("RGB") for p in case.effective.control_images]
        execution = pipe._execution_device
        dtype = pipe.transformer.dtype
        with torch.inference_mode():
            tensors = [resize_for_text(condition_tensor(img, execution, dtype), TextImageSize.SERVER) for img in images]
            cond = encode(pipe, case.effective.prompt, tensors, execution)
            uncond = encode(pipe, "", tensors, execution)
            clock = StockDenoiseClock(pipe, device, case.effective.steps)
            image = pipe(image=images, prompt_embeds=cond.embeds, prompt_embeds_mask=cond.mask, negative_prompt_embeds=uncond.embeds,
                         negative_prompt_embeds_mask=uncond.mask, generator=torch.Generator("cpu").manual_seed(case.effective.seed),
                         true_cfg_scale=case.effective.guidance_scale, num_inference_steps=case.effective.steps,
                         height=case.effective.height, width=case.effective.width,
                         callback_on_step_end=clock.on_step_end).images[0]
            denoise = clock.seconds()
        image_sha = hashlib.sha256(np.asarray(image, dtype=np.uint8).tobytes()).hexdigest()
        with tempfile.NamedTemporaryFile(suffix=".jpg") as fh:
            image.save(fh.name, format="JPEG", quality=95)
        _sync(device)
        recorder.add(driver, {"case": case.name, "controls": len(images), "lora_scale": case.effective.lora_scale,
                              "wall_s": round(time.perf_counter() - t0, 3), "stock_denoise_s": round(denoise, 3), "scale_switch_s": round(switch, 3),
                              "peak_memory_gb": round(torch.cuda.max_memory_allocated(device) / 1e9, 3) if device.startswith("cuda") else None,
                              "image_sha256": image_sha})
    return time.perf_counter() - start


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def markdown(data: dict) -> str:
    lines = [f"# Full-size benchmark ({data['meta'].get('label', '')})", "", "```", json.dumps(data["meta"], indent=1), "```", ""]
    for driver, rows in data["runs"].items():
        lines += [f"## {driver}", ""]
        if driver.startswith("parity"):
            lines += ["| case | controls | LoRA scale | wall s | denoise s | PFLOP | bound s | denoise/bound | outside denoise s | scale switch s | peak GB |",
                      "|---|---|---|---|---|---|---|---|---|---|---|"]
            for r in rows:
                lines.append(f"| {r['case']} | {r['controls']} | {r['lora_scale']} | {r['wall_s']} | {r['denoise_s']} | {r['pflop']} | {r['bound_s']} | "
                             f"{r['denoise_vs_bound']} | {r['outside_denoise_s']} | {r['scale_switch_s']} | {r['peak_memory_gb']} |")
        else:
            lines += ["| case | controls | LoRA scale | wall s | stock call's denoise s | scale switch s | peak GB |", "|---|---|---|---|---|---|---|"]
            for r in rows:
                lines.append(f"| {r['case']} | {r.get('controls', '')} | {r.get('lora_scale', '')} | {r['wall_s']} | {r.get('stock_denoise_s', '')} | "
                             f"{r.get('scale_switch_s', '')} | {r.get('peak_memory_gb', '')} |")
        lines.append("")
    for key, value in data.get("summary", {}).items():
        lines.append(f"- {key}: {value}")
    return "\n".join(lines) + "\n"


def parse_args(argv=None, description: str = "") -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description or __doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--drivers", default="parity-a,parity-b,server-none,server-model")
    parser.add_argument("--cases", type=case_names, default=case_names("8"),
                        help="how many of the 8 cases (the first N), or their names, comma-separated (c1-square,c3-mixed)")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--tflops", type=float, default=790.0, help="bf16 matrix rate of the GPU (the H200's measured)")
    parser.add_argument("--device", default=None, help="the GPU (default cuda:0; cpu with --tiny)")
    parser.add_argument("--cfg-device", default=None, help="the second device of parity-cfg2 (default cuda:1; cpu with --tiny)")
    parser.add_argument("--label", default="")
    parser.add_argument("--server-first", action="store_true",
                        help="run the server-style drivers before parity's (each order pays the process's cold start "
                             "once: run both orders to see what the first driver pays)")
    parser.add_argument("--copy-room-gb", type=float, default=None, help="force the GB the weight copy may take on the GPU (0: none there: pinned host memory, or read back from the checkpoint where parity's rule allows)")
    parser.add_argument("--cap-gb", type=float, default=None, help="hold every driver to this many GB of the GPU (a smaller card)")
    parser.add_argument("--folder", type=Path, default=None,
                        help="save the model to this folder (once) and load every driver from it, as a user's checkpoint")
    parser.add_argument("--tiny", action="store_true", help="the bundled tiny model on the CPU: checks this script, measures nothing")
    args = parser.parse_args(argv)
    args.device = args.device or ("cpu" if args.tiny else "cuda:0")
    args.cfg_device = args.cfg_device or ("cpu" if args.tiny else "cuda:1")
    return args


def set_up(args):
    """The model (random full size, or the tiny one), the LoRA, the suite's cases and the run's facts."""
    device = args.device
    if device.startswith("cuda"):
        torch.cuda.set_device(device)
    names = args.cases
    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="parity-bench-"))
    lora = work / "lora.safetensors"
    saved_s = None
    if args.folder is not None and not (args.folder / "model_index.json").is_file():
        pipe = build_pipeline(args.device, seed=0) if not args.tiny else fresh_pipeline(args)
        s0 = time.perf_counter()
        pipe.save_pretrained(str(args.folder), safe_serialization=True)
        saved_s = round(time.perf_counter() - s0, 1)
    else:
        pipe = fresh_pipeline(args)
    if args.tiny:
        from parity.models.qwen.tiny import write_tiny_lora

        write_tiny_lora(lora)
        modules = 28
    else:
        modules = write_lora(lora, args.rank, seed=1)
    build_s = time.perf_counter() - t0
    cases = load_cases(write_suite(work, names, args.size, args.steps, lora, shrink=8 if args.tiny else 1))
    gigabytes = sum(p.numel() * p.element_size() for name in ("transformer", "text_encoder", "vae") for p in pipe.components[name].parameters()) / 1e9
    meta = {"label": args.label, "gpu": torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu (tiny model)",
            "torch": torch.__version__, "steps": args.steps, "size": args.size, "cases": len(cases), "lora_rank": args.rank,
            "lora_modules": modules, "tflops_bound": args.tflops, "cap_gb": args.cap_gb, "build_s": round(build_s, 1), "model_gb": round(gigabytes, 2),
            "weights_sample_sha256": weights_fingerprint(pipe)}  # equal across runs = the same random weights
    if args.folder is not None:
        meta.update({"folder": str(args.folder), "saved_s": saved_s})
    return pipe, cases, lora, meta


def fresh_pipeline(args):
    """The benchmark's model, built again from the same seed (the same weights: see weights_sample_sha256), or
    loaded from --folder (on the CPU, as from_pretrained leaves it)."""
    if args.folder is not None and (args.folder / "model_index.json").is_file():
        from diffusers import QwenImageEditPlusPipeline

        dtype = torch.float32 if args.tiny else torch.bfloat16
        pipe = QwenImageEditPlusPipeline.from_pretrained(str(args.folder), torch_dtype=dtype, local_files_only=True)
        pipe.set_progress_bar_config(disable=True)
        return pipe
    if args.tiny:
        from parity.render.loading import load_pipeline

        return load_pipeline("tiny", ".", "cpu")
    return build_pipeline(args.device, seed=0)


def release(engine: Engine, device: str) -> bool:
    """Unload the engine's LoRA from the shared pipeline and drop its copies (pristine weights, CFG copy). False:
    the plan kept no copy (one scale), so the fused weights cannot be given back exactly: the caller rebuilds."""
    from parity.render.lora import PristineMissing

    try:
        engine._loaded.lora.apply(LoraMethod.NONE, None, None)
        pristine = True
    except PristineMissing:
        pristine = False
    engine.close()
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return pristine


def run_parity_drivers(args, shared: dict, cases, drivers, recorder, summary, outputs) -> None:
    """Every parity driver in turn on the shared pipeline (`shared["pipe"]`, the only reference to it, so that a
    model built again replaces it in memory); leaves it with its untouched weights, on the CPU or the GPU, without
    offload hooks (built again where an engine kept no copy to restore them from)."""
    forward = list(range(len(cases)))
    interleaved = [i for pair in zip(reversed(forward), forward) for i in pair][: len(cases)]  # 7,0,6,1,...
    orders = {"forward": forward, "interleaved": list(dict.fromkeys(interleaved + forward))}
    current: tuple[tuple, Engine] | None = None
    latents: dict = {}  # --tiny (which measures nothing): the engines share the control latents
    for driver in drivers:
        order, parallel, mode = PARITY_DRIVERS[driver]
        setting = (args.cfg_device if parallel else None, mode)
        if current is None or current[0] != setting:
            if current is not None:
                handed_back(args, shared, current[1], summary)
            t0 = time.perf_counter()
            if args.folder is not None:  # loaded as parity loads a user's checkpoint (its plan known first)
                engine = Engine(args.device, base_model_override=str(args.folder), cfg_device=setting[0], offload=mode)
                engine.expect([cases[index] for index in orders[order]])
                engine.model(str(args.folder), os.getcwd())
            else:
                engine = Engine(args.device, cfg_device=setting[0])
                engine.adopt(shared["pipe"], "full-size", mode=mode)
            cap(args)
            if args.tiny:
                engine._loaded.renderer.latent_cache = latents
            loaded = "loaded from the folder and placed" if args.folder is not None else "placed"
            summary[f"{driver}: model {loaded} (offload {mode}) s"] = round(time.perf_counter() - t0, 2)
            if mode == "none":  # under offload a warm-up render would move every component: minutes, no kernel cold
                summary[f"{driver}: warm-up s (one 1-step render, no LoRA, not timed)"] = round(warm_up(engine, cases[0], args.tiny), 2)
            current = (setting, engine)
        outputs[driver] = {}
        summary[f"{driver} suite wall s"] = round(run_parity(current[1], cases, orders[order], args.size, args.tflops, recorder, driver, outputs[driver], args.copy_room_gb), 2)
        recorder.flush()
    if current is not None:
        handed_back(args, shared, current[1], summary)


def handed_back(args, shared: dict, engine: Engine, summary) -> None:
    """The pipeline after a parity engine, with its untouched weights and no offload hooks (with --folder the
    engine loaded its own model, which is let go)."""
    uncap(args)
    if args.folder is not None:
        release(engine, args.device)
        return
    pipe = shared["pipe"]
    if release(engine, args.device):
        pipe.remove_all_hooks()
        return
    del engine, pipe
    shared.pop("pipe")
    gc.collect()
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()
    t0 = time.perf_counter()
    shared["pipe"] = fresh_pipeline(args)
    summary["model built again after a one-state plan (no weight copy to restore from) s"] = round(time.perf_counter() - t0, 2)
    summary["rebuilt weights_sample_sha256"] = weights_fingerprint(shared["pipe"])


def compare_drivers(drivers, recorder, summary, outputs) -> None:
    """Bit equality and time ratios between drivers that ran in this process."""
    runs = recorder.data["runs"]
    if "parity-a" in outputs and "parity-b" in outputs:
        a, b = outputs["parity-a"], outputs["parity-b"]
        summary["outputs torch.equal across orders"] = {name: bool(torch.equal(a[name], b[name])) for name in a}
    if "parity-a" in outputs and "parity-cfg2" in outputs:
        a, c = outputs["parity-a"], outputs["parity-cfg2"]
        summary["parity-cfg2 outputs torch.equal parity-a (one GPU)"] = {name: bool(torch.equal(c[name], a[name])) for name in c}
        one = {r["case"]: r for r in runs["parity-a"]}
        summary["parity-cfg2 / parity-a case wall"] = {r["case"]: round(r["wall_s"] / one[r["case"]]["wall_s"], 3) for r in runs["parity-cfg2"]}
        summary["parity-cfg2 / parity-a denoise"] = {r["case"]: round(r["denoise_s"] / one[r["case"]]["denoise_s"], 3) for r in runs["parity-cfg2"]}
    for driver in (d for d in drivers if d.startswith("server")):
        server_rows = {r["case"]: r for r in runs[driver]}
        for parity_driver in (d for d in drivers if d.startswith("parity")):
            same = {r["case"]: r["image_sha256"] == server_rows.get(r["case"], {}).get("image_sha256") for r in runs[parity_driver]}
            summary[f"{driver} image identical to {parity_driver}"] = same
        if driver == "server-none" and "parity-a" in runs:
            summary["parity-a denoise / the stock call's denoise (same inputs)"] = {
                r["case"]: round(r["denoise_s"] / server_rows[r["case"]]["stock_denoise_s"], 4) for r in runs["parity-a"] if r["case"] in server_rows
            }
    parity_wall = summary.get("parity-a suite wall s")
    for driver in ("server-none", "server-model"):
        if parity_wall and f"{driver} suite wall s" in summary:
            summary[f"{driver} / parity-a wall ratio"] = round(summary[f"{driver} suite wall s"] / parity_wall, 3)
    for mode, parity_driver in (("none", "parity-a"), ("model", "parity-model"), ("sequential", "parity-sequential")):
        ours, theirs = summary.get(f"{parity_driver} suite wall s"), summary.get(f"server-{mode} suite wall s")
        if ours and theirs:
            summary[f"{parity_driver} / server-{mode} suite wall (same mode, same cap)"] = round(ours / theirs, 3)


def run_server_drivers(args, pipe, cases, lora: Path, drivers, recorder, summary) -> None:
    """Each server-style driver in turn on the shared pipeline; each ends with the LoRA unfused and unloaded (in
    place: the weights are then not the untouched ones to the bit)."""
    for driver in drivers:
        summary[f"{driver} suite wall s"] = round(run_server_style(args, pipe, cases, lora, driver.split("-")[1], recorder, driver, args.device), 2)
        uncap(args)
        pipe.unfuse_lora()
        pipe.unload_lora_weights()
        recorder.flush()


def main(argv=None) -> int:
    args = parse_args(argv)
    pipe, cases, lora, meta = set_up(args)
    recorder = Recorder(args.out, meta)
    summary = recorder.data.setdefault("summary", {})
    drivers = args.drivers.split(",")
    outputs: dict[str, dict] = {}
    shared = {"pipe": pipe}
    del pipe
    if args.folder is not None:  # every driver loads the folder itself: nothing built stays in memory
        shared.pop("pipe")
        gc.collect()
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    parity_drivers = [d for d in drivers if d.startswith("parity")]
    if not args.server_first:
        run_parity_drivers(args, shared, cases, parity_drivers, recorder, summary, outputs)
    if args.folder is not None:
        t0 = time.perf_counter()
        shared["pipe"] = fresh_pipeline(args)
        summary["server-style drivers: from_pretrained of the folder s"] = round(time.perf_counter() - t0, 2)
    run_server_drivers(args, shared["pipe"], cases, lora, [d for d in drivers if d.startswith("server")], recorder, summary)
    if args.server_first and parity_drivers:
        shared.pop("pipe")  # unfused in place by the server drivers: not the untouched weights; built again
        gc.collect()
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
        if args.folder is None:  # with --folder parity's engine loads the folder itself
            shared["pipe"] = fresh_pipeline(args)
            summary["model built again after the server-style drivers, weights_sample_sha256"] = weights_fingerprint(shared["pipe"])
        run_parity_drivers(args, shared, cases, parity_drivers, recorder, summary, outputs)
    compare_drivers(drivers, recorder, summary, outputs)
    recorder.flush()
    print(markdown(recorder.data))
    return 0 if all(not math.isnan(r.get(k, 0.0)) for rows in recorder.data["runs"].values() for r in rows for k in ("denoise_s", "stock_denoise_s")) else 1


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
