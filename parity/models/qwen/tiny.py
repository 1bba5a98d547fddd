"""The bundled tiny model: Qwen-Image-Edit-2511's real classes at tiny sizes, built offline and seeded.

`ensure_tiny()` builds it once into a cache folder (byte-for-byte the same for the same library versions, on any
CPU) and returns that diffusers folder; it is then loaded by the same code as a real checkpoint. The weights are
drawn from numpy's PCG64 uniform stream, not torch's initialisers: torch's `normal_` and friends have vectorised
kernels per CPU kernel set (another AVX2 Box-Muller, other transcendental approximations), so a model built with
them differs from machine to machine, and so would every baseline made on it. Random weights
make prompt, control images and CFG move the pixels by less than one level, so a few gains are raised after
initialisation (see `_raise_gains`); `tests/models/test_contract.py` measures that each input still moves the output.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import zlib
from pathlib import Path

import torch

from parity.models.qwen.schedulers import SCHEDULER_CONFIG

TINY_RECIPE = 3  # bump when anything below changes what gets built (2: weights portable across CPUs; 3: 16x VAE)

# Qwen2.5-VL special tokens, in the order the real vocabulary has them (after the byte-level BPE tokens).
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# The prompt template of QwenImageEditPlusPipeline; the BPE merges are learnt on it so that the system part
# is 64 tokens long, as with the real tokenizer (the pipeline drops exactly 64 tokens).
_TEMPLATE = (
    "<|im_start|>system\nDescribe the key features of the input image (color, shape, size, texture, objects, "
    "background), then explain how the user's text instruction should alter or modify the image. Generate a new "
    "image that meets the user's requirements while maintaining consistency with the original input where "
    "appropriate.<|im_end|>\n<|im_start|>user\n"
)
_CORPUS = (
    _TEMPLATE,
    "Picture 1: Picture 2: Picture 3: <|im_end|>\n<|im_start|>assistant\n",
    (
        "put the hat on the person, make the sky red blue green yellow, a photo of a cat dog house tree car, "
        "turn it into a drawing painting sketch, add remove replace change the background colour style"
    ),
)
# Pre-tokenizer regex of the Qwen2 tokenizer (tokenizer.json of Qwen2.5-VL).
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

TEXT_HIDDEN = 32
MAX_PIXELS = 12845056  # the real checkpoints' Qwen2-VL image processor: a ~1 MP picture passes whole
IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)

TRANSFORMER_CONFIG = {
    "patch_size": 2,
    "in_channels": 64,
    "out_channels": 16,
    "num_layers": 2,
    "attention_head_dim": 16,
    "num_attention_heads": 2,
    "joint_attention_dim": TEXT_HIDDEN,
    "axes_dims_rope": (4, 6, 6),
    "zero_cond_t": True,
}

TEXT_INIT_STD = 0.02  # transformers' initializer_range for Qwen2.5-VL (its linears and embeddings are normal(0, 0.02))
QK_NORM_GAIN = 8.0  # sharper attention, so text and control tokens are attended to
MODULATION_GAIN = 8.0  # larger adaLN gates, so every block changes the residual stream

LORA_RANK = 4
LORA_TARGETS = (
    "attn.to_q",
    "attn.to_k",
    "attn.to_v",
    "attn.to_out.0",
    "attn.add_q_proj",
    "attn.add_k_proj",
    "attn.add_v_proj",
    "attn.to_add_out",
    "img_mlp.net.0.proj",
    "img_mlp.net.2",
    "txt_mlp.net.0.proj",
    "txt_mlp.net.2",
    "img_mod.1",
    "txt_mod.1",
)


def cache_root() -> Path:
    """Where built models live: $PARITY_CACHE, else ~/.cache/parity."""
    return Path(os.environ.get("PARITY_CACHE") or Path.home() / ".cache" / "parity")


def tiny_key() -> str:
    """Build fingerprint: recipe version and the versions of the libraries that write the files."""
    import diffusers
    import tokenizers
    import transformers

    text = json.dumps([TINY_RECIPE, torch.__version__, diffusers.__version__, transformers.__version__, tokenizers.__version__])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def ensure_tiny(
    root: Path | None = None,
    name: str = "qwen-image-edit-2511",
    zero_cond_t: bool = True,
    transformer_seed: int = 1,
    pipeline: str = "QwenImageEditPlusPipeline",
    max_pixels: int = MAX_PIXELS,
) -> Path:
    """The tiny model's diffusers folder, built on first use (safe against concurrent builders). `name`,
    `zero_cond_t`, `transformer_seed`, `pipeline` and `max_pixels`: the checkpoint it stands for (Qwen-Image-Edit-2509
    is the same layout with zero_cond_t off, its transformer drawn from another seed; Qwen-Image-Edit also saves as a
    QwenImageEditPipeline, with a smaller picture for its text encoder). `name` names the cache folder, so each
    checkpoint has its own."""
    layout = "" if (zero_cond_t, transformer_seed) == (True, 1) else f"-z{int(zero_cond_t)}s{transformer_seed}"
    layout += "" if max_pixels == MAX_PIXELS else f"-p{max_pixels}"
    return ensure_built(
        root, f"{name}{layout}", lambda dest: build_tiny(dest, zero_cond_t, transformer_seed, pipeline, max_pixels)
    )


def ensure_built(root: Path | None, name: str, build) -> Path:
    """The folder `tiny-<name>-r<recipe>-<library versions>` under `root` (default: cache_root()), made by
    `build(folder)` on first use: built in a temporary folder and renamed into place, so concurrent builders
    never see half a model (what is built is in the name)."""
    root = root or cache_root()
    target = root / f"tiny-{name}-r{TINY_RECIPE}-{tiny_key()}"
    if (target / "model_index.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-build-", dir=root))
    try:
        build(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "model_index.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def build_tokenizer(corpus: tuple[str, ...] = _CORPUS):
    """A byte-level BPE Qwen2 tokenizer learnt offline on a pipeline's prompt template (`corpus`, default the
    Edit-Plus one), with Qwen2.5-VL's special tokens."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    learner = Tokenizer(models.BPE())
    learner.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=2000, min_frequency=1, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    learner.train_from_iterator(list(corpus), trainer)
    learnt = json.loads(learner.to_str())["model"]
    tokenizer = Qwen2Tokenizer(vocab=learnt["vocab"], merges=[tuple(m) for m in learnt["merges"]])
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS[1:])})
    return tokenizer


def build_processor(tokenizer, max_pixels: int = MAX_PIXELS):
    """Qwen2-VL's processor as the checkpoints save it; `max_pixels` caps the picture its vision encoder sees."""
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    common = {
        "patch_size": 14,
        "temporal_patch_size": 2,
        "merge_size": 2,
        "image_mean": list(IMAGE_MEAN),
        "image_std": list(IMAGE_STD),
    }
    images = Qwen2VLImageProcessor(min_pixels=3136, max_pixels=max_pixels, **common)
    videos = Qwen2VLVideoProcessor(**common)
    return Qwen2VLProcessor(image_processor=images, tokenizer=tokenizer, video_processor=videos)


def build_text_encoder(tokenizer):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = Qwen2_5_VLConfig(
        text_config={
            "hidden_size": TEXT_HIDDEN,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "rope_scaling": {"mrope_section": [2, 3, 3], "rope_type": "default", "type": "default"},
            "rope_theta": 1000000.0,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": 4096,
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": TEXT_HIDDEN,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        vision_token_id=ids["<|vision_pad|>"],
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
    )
    model = Qwen2_5_VLForConditionalGeneration(config)
    portable_weights(model, seed=0, std=TEXT_INIT_STD)
    return model


def build_transformer(raise_gains: bool = True, zero_cond_t: bool = True, seed: int = 1):
    """The tiny QwenImageTransformer2DModel (2511 layout: zero_cond_t on; 2509: off); gains raised unless asked
    not to. The weights do not depend on zero_cond_t (it adds no parameter)."""
    from diffusers import QwenImageTransformer2DModel

    model = QwenImageTransformer2DModel(**{**TRANSFORMER_CONFIG, "zero_cond_t": zero_cond_t})
    if next(model.parameters()).is_meta:  # shapes only (the LoRA's targets)
        return model
    portable_weights(model, seed=seed)
    if raise_gains:
        _raise_gains(model)
    return model


def uniform(seed: list[int], bound: float, shape: tuple[int, ...]) -> torch.Tensor:
    """float32 draws from U(-bound, bound) that are the same bits on every machine: numpy's PCG64 stream maps
    integers to doubles by exact arithmetic (no transcendental function), and float64 -> float32 rounds by IEEE."""
    import numpy as np

    values = np.random.default_rng(seed).uniform(-bound, bound, size=shape)
    return torch.from_numpy(values.astype(np.float32))


def portable_weights(model, seed: int, std: float | None = None) -> None:
    """Draw every random parameter of `model` anew with `uniform`, keyed by its name; constant ones (norm gains of 1,
    zero biases) are exact on any machine and stay. The spread follows the library's own initialiser: PyTorch's
    default for linears and convolutions, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (biases take their weight's fan-in),
    or, with `std`, a uniform of that standard deviation (transformers' normal initialiser)."""
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, param in model.named_parameters():
            flat = param.reshape(-1)
            if flat.numel() < 2 or bool((flat == flat[0]).all()):
                continue
            if std is not None:
                bound = std * math.sqrt(3.0)
            else:
                weight = param if param.ndim >= 2 else getattr(modules.get(name.rpartition(".")[0]), "weight", None)
                fan_in = math.prod(weight.shape[1:]) if weight is not None and weight.ndim >= 2 else param.numel()
                bound = 1.0 / math.sqrt(fan_in)
            param.copy_(uniform([seed, zlib.crc32(name.encode())], bound, tuple(param.shape)).to(param.dtype))


def _raise_gains(model) -> None:
    with torch.no_grad():
        for name, module in model.named_modules():
            if name.endswith(("attn.norm_q", "attn.norm_k", "attn.norm_added_q", "attn.norm_added_k")):
                module.weight.mul_(QK_NORM_GAIN)
            if name.endswith(("img_mod.1", "txt_mod.1")):
                module.weight.mul_(MODULATION_GAIN)
                module.bias.mul_(MODULATION_GAIN)


def build_vae(compression: int = 16):
    """The tiny AutoencoderKLQwenImage: real latent channels (16) and latent statistics (the class defaults), and
    `compression`x spatial compression (16 or 8, the real VAE's)."""
    from diffusers import AutoencoderKLQwenImage

    # The edit models' tiny VAE compresses 16x (one more 2D downsampling stage) where the real VAE has 8x. The
    # pipeline resizes every control image to ~1 MP for the VAE whatever the case's size, so with 8x each control
    # picture is 4096 transformer tokens and attention over them is most of the test suite's time (3.7x slower
    # again on CPUs without AVX2); with 16x it is 1024. Sizes are unaffected: the pipeline floors to
    # 2 * vae_scale_factor = 32, and every size parity or the trainer hands it (output sizes, the ~1 MP control
    # sizes) is already a multiple of 32. A text-to-image model has no control pictures but sizes in steps of 16:
    # it keeps the real 8x.
    stages = {16: ([1, 2, 4, 4, 4], [False, True, True, False]), 8: ([1, 2, 4, 4], [False, True, True])}
    dim_mult, temporal = stages[compression]
    vae = AutoencoderKLQwenImage(base_dim=8, z_dim=16, dim_mult=dim_mult, num_res_blocks=1, temperal_downsample=temporal)
    portable_weights(vae, seed=2)
    return vae


def build_tiny(
    dest: Path,
    zero_cond_t: bool = True,
    transformer_seed: int = 1,
    pipeline: str = "QwenImageEditPlusPipeline",
    max_pixels: int = MAX_PIXELS,
) -> None:
    """Build every component from fixed seeds and save them as a diffusers folder of `pipeline` at `dest`. The
    tokenizer serves both edit pipelines: their prompt templates share the system part it drops (64 tokens)."""
    import diffusers
    from diffusers import FlowMatchEulerDiscreteScheduler
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    with torch.random.fork_rng(devices=[]):
        tokenizer = build_tokenizer()
        processor = build_processor(tokenizer, max_pixels)
        torch.manual_seed(0)
        text_encoder = build_text_encoder(tokenizer)
        torch.manual_seed(1)
        transformer = build_transformer(zero_cond_t=zero_cond_t, seed=transformer_seed)
        torch.manual_seed(2)
        vae = build_vae()
    scheduler = FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG)
    pipe = getattr(diffusers, pipeline)(
        scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, processor=processor, transformer=transformer
    )
    pipe.save_pretrained(str(dest), safe_serialization=True)


def tiny_lora_tensors(seed: int = 1234) -> dict[str, torch.Tensor]:
    """A rank-4 LoRA on every linear of the tiny transformer's blocks, in ai-toolkit's key format and dtype."""
    with torch.device("meta"):
        transformer = build_transformer(raise_gains=False)
    tensors: dict[str, torch.Tensor] = {}
    for block_index in range(len(transformer.transformer_blocks)):
        block = transformer.transformer_blocks[block_index]
        for target in LORA_TARGETS:
            linear = block.get_submodule(target)
            prefix = f"diffusion_model.transformer_blocks.{block_index}.{target}"
            key = zlib.crc32(prefix.encode())
            # standard deviations 1/sqrt(in) (down) and 0.5/sqrt(rank) (up), portable as the model's weights
            down = uniform([seed, key, 0], math.sqrt(3.0 / linear.in_features), (LORA_RANK, linear.in_features))
            up = uniform([seed, key, 1], 0.5 * math.sqrt(3.0 / LORA_RANK), (linear.out_features, LORA_RANK))
            tensors[f"{prefix}.lora_A.weight"] = down.to(torch.float16)
            tensors[f"{prefix}.lora_B.weight"] = up.to(torch.float16)
    return tensors


def write_tiny_lora(path: str | Path) -> Path:
    """Write the tiny LoRA as an ai-toolkit-style .safetensors file."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tiny_lora_tensors(), str(path), metadata={"format": "pt", "parity": f"tiny lora r{TINY_RECIPE}"})
    return path
