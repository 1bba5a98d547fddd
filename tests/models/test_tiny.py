"""The bundled tiny model: real classes, offline, byte-for-byte reproducible, and sensitive to every input."""

import hashlib
import json
import os
import subprocess
import sys

import torch
from paths import TINY_LORA
from PIL import Image
from safetensors.torch import load_file

from parity.models import DEFAULT_MODEL, get_model
from parity.models.qwen.denoise import control_sizes
from parity.models.qwen.tiny import build_tokenizer, ensure_tiny, tiny_lora_tensors

ODD_SHAPES = ((48, 64), (64, 48), (200, 150), (1000, 37), (7, 3000), (1, 1))


def digests(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_build_is_byte_for_byte_reproducible_under_another_cpu_kernel_set(tmp_path):
    """A fresh build, in a process that computes with another ATen kernel set, equals the cached one (built by the same
    library versions): the model, and so every baseline made on it, is the same on any CPU."""
    current = torch.backends.cpu.get_cpu_capability().lower()
    code = "import sys; from pathlib import Path; from parity.models.qwen.tiny import build_tiny; build_tiny(Path(sys.argv[1]))"
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default" if current != "default" else "avx2"}
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "fresh")], env=env, check=True, capture_output=True)
    fresh, cached = digests(tmp_path / "fresh"), digests(ensure_tiny())
    assert fresh == cached
    assert "transformer/diffusion_pytorch_model.safetensors" in fresh and "tokenizer/tokenizer.json" in fresh


def test_cached_model_has_the_real_classes_and_2511_layout(tiny_pipe):
    folder = ensure_tiny()
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "QwenImageEditPlusPipeline"
    assert index["transformer"] == ["diffusers", "QwenImageTransformer2DModel"]
    assert index["vae"] == ["diffusers", "AutoencoderKLQwenImage"]
    assert index["text_encoder"] == ["transformers", "Qwen2_5_VLForConditionalGeneration"]
    assert index["processor"][1] == "Qwen2VLProcessor"
    assert tiny_pipe.transformer.config.zero_cond_t is True
    # The real latent channels; 16x spatial compression where the real VAE has 8x (fewer tokens per ~1 MP control
    # picture, see tiny.build_vae). That changes no size: both sides floor sizes to a multiple of 32 before the
    # pipeline floors them to 2 * vae_scale_factor, and the ~1 MP control sizes are multiples of 32 too.
    assert tiny_pipe.vae.config.z_dim == 16 and tiny_pipe.vae_scale_factor == 16
    assert get_model(DEFAULT_MODEL).size_divisor % (2 * tiny_pipe.vae_scale_factor) == 0
    assert all(w % 32 == 0 and h % 32 == 0 for w, h in control_sizes([Image.new("RGB", (w, h)) for w, h in ODD_SHAPES]))
    assert tiny_pipe.scheduler.config.max_shift == 0.9 and tiny_pipe.scheduler.config.shift_terminal == 0.02


def test_tokenizer_drops_exactly_the_system_prompt():
    tok = build_tokenizer()
    system = (
        "<|im_start|>system\nDescribe the key features of the input image (color, shape, size, texture, objects, "
        "background), then explain how the user's text instruction should alter or modify the image. Generate a new "
        "image that meets the user's requirements while maintaining consistency with the original input where "
        "appropriate.<|im_end|>\n<|im_start|>user\n"
    )
    assert len(tok(system)["input_ids"]) == 64  # the pipeline's prompt_template_encode_start_idx
    for special in ("<|vision_start|>", "<|image_pad|>", "<|vision_end|>", "<|im_end|>"):
        assert len(tok(special)["input_ids"]) == 1


def test_committed_tiny_lora_is_the_generated_one():
    committed = load_file(str(TINY_LORA))
    fresh = tiny_lora_tensors()
    assert committed.keys() == fresh.keys()
    assert all(torch.equal(committed[k], fresh[k]) for k in fresh)
    assert all(k.startswith("diffusion_model.transformer_blocks.") for k in fresh)
    assert len(fresh) == 2 * 14 * 2  # two blocks, 14 linears each, lora_A and lora_B
    assert {t.dtype for t in fresh.values()} == {torch.float16}
