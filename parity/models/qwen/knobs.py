"""The Edit-Plus knobs (Qwen-Image-Edit-2511 and -2509): every one that decides the pixels, as the reference server
and as the trainer set it; the family's base table, which the other Qwen pipelines start from.

Two named wirings per case: `reference` (ai-toolkit-inference, what `parity run` renders) and `preview`
(ai-toolkit's trainer sampler, ../REFERENCE second table), in the shared vocabulary of parity/models/knobs.py.
Pure: the runtime facts only the loaded model knows arrive as `RuntimeFacts`.
"""

from __future__ import annotations

import enum

from parity.core.images import OutputEncoding
from parity.facts import quant
from parity.facts.case import Case
from parity.models.knobs import PREVIEW_FORMATS, Knob, LoraMethod, RuntimeFacts, Setting, Wiring
from parity.models.qwen.geometry import server_condition_size, trainer_condition_size
from parity.models.qwen.schedulers import AITK_SCHEDULER_CONFIG

SCHEDULER_KEYS = tuple(AITK_SCHEDULER_CONFIG)


_QUANT_REPLAYED = f"{quant.replayed_text()} with `{quant.INSTALL}`; other qtypes recorded"

# (reference server, trainer's preview, replayed by --diagnose?) — the README's knob table comes from here.
KNOB_RULES: dict[Knob, tuple[str, str, str]] = {
    Knob.SIZE: ("floor to 32", "round down to 8 (at least 64), then floor to 32", "yes"),
    Knob.SCHEDULER: (
        "FlowMatchEulerDiscreteScheduler with the checkpoint's config",
        "CustomFlowMatchEulerDiscreteScheduler (steps like diffusers') with a hard-coded config",
        "yes",
    ),
    Knob.LORA_SCALE: (
        ("the request's scale (`loras[].network_multiplier`, else the sample's), x alpha / rank where the file has "
        "`.alpha` keys"),
        ("the sample's multiplier: ai-toolkit builds Qwen networks in PEFT format with alpha = rank (the job's "
        "`linear_alpha` is not used) and saves no `.alpha` keys"),
        "yes",
    ),
    Knob.LORA_METHOD: (
        "diffusers `fuse_lora` (PEFT delta in the model dtype)",
        ("float32 `merge_in` when every sample shares one multiplier and the base is not quantized or offloaded; "
        "else an unmerged float32 branch per sample"),
        "yes",
    ),
    Knob.CFG_RENORM: ("always (diffusers rescales to the conditional norm)", "only with `do_cfg_norm` (default off)", "yes"),
    Knob.TEXT_IMAGES: ("the control images, once each", "a legacy `ctrl_img` twice (as ctrl_img and ctrl_img_1)", "yes"),
    Knob.TEXT_IMAGE_SIZE: (
        "~384x384 area, w = sqrt(area x H/W): transposed for non-square images",
        "~384x384 area, aspect kept",
        "yes",
    ),
    Knob.NEGATIVE_IMAGES: ("the prompt's resized images", "those images resized a second time (a shared list)", "yes"),
    Knob.TEXT_IMAGE_PREP: ("bilinear, 0..1 tensor (rescaled again by the processor)", "the same", "—"),
    Knob.VAE_IMAGES: ("PIL Lanczos to ~1 MP, latent mode", "the same", "—"),
    Knob.VAE_TILING: ("off", "on under `low_vram` (control encode and decode)", "yes"),
    Knob.ZERO_COND_T: ("the checkpoint's (on for 2511)", "off when the transformer is a single .safetensors file", "yes"),
    Knob.GENERATOR: ("`torch.Generator('cpu').manual_seed(seed)`", "`torch.manual_seed(seed)`: the same stream", "—"),
    Knob.DTYPE: ("bf16 on CUDA, float32 on CPU", "the training dtype", "recorded"),
    Knob.OUTPUT: ("the pipeline's pixels (the server saves JPEG q95)", "`image.save(path)`: JPEG q75 by default", "yes"),
    Knob.QUANTIZATION: (
        "none",
        ("`model.quantize` / `qtype` (default qfloat8): `quantize_model`, the blocks on the training device, the "
        "rest on the CPU; the LoRA then runs unmerged"),
        f"the LoRA unmerged with it: {_QUANT_REPLAYED}",
    ),
    Knob.TEXT_ENCODER_QUANTIZATION: (
        "none",
        "`model.quantize_te` (default: `quantize`) / `qtype_te` (default qfloat8): the whole text encoder",
        _QUANT_REPLAYED,
    ),
    Knob.LORA_WEIGHTS: ("the saved file", "the float32 training weights (the file holds them in float16)", "recorded"),
}


# The reference server's LoRA application, by the method its pipeline class names (PipelineConfig.lora_merge_method)
SERVER_LORA_RULES = {
    LoraMethod.DIFFUSERS_FUSE: "diffusers `fuse_lora` (PEFT delta in the model dtype)",
    LoraMethod.DIFFUSERS_ADAPTER: "diffusers adapter kept unfused, a scale other than 1 set by `set_weights_and_activate_adapters`",
}


def knob_rules(lora_method: LoraMethod, zero_cond_t: str) -> dict[Knob, tuple[str, str, str]]:
    """The table of a model of this pipeline: its server's LoRA application and its checkpoint's zero_cond_t."""
    return {
        **KNOB_RULES,
        Knob.LORA_METHOD: (SERVER_LORA_RULES[lora_method], *KNOB_RULES[Knob.LORA_METHOD][1:]),
        Knob.ZERO_COND_T: (zero_cond_t, *KNOB_RULES[Knob.ZERO_COND_T][1:]),
    }


class TextImageSize(enum.Enum):
    SERVER = "server"
    ASPECT_KEPT = "aspect kept"


class NegativeImages(enum.Enum):
    SAME = "same"
    RESIZED_AGAIN = "resized again"


def scheduler_items(config: dict[str, object]) -> tuple[tuple[str, object], ...]:
    return tuple((k, config.get(k)) for k in SCHEDULER_KEYS)


def _scheduler_text(items: tuple[tuple[str, object], ...]) -> str:
    c = dict(items)
    return (
        f"shift {c.get('shift')}, base/max shift {c.get('base_shift')}/{c.get('max_shift')} over seq "
        f"{c.get('base_image_seq_len')}..{c.get('max_image_seq_len')}, shift_terminal {c.get('shift_terminal')}, "
        f"{c.get('time_shift_type')}, dynamic {c.get('use_dynamic_shifting')}"
    )


def _sizes_text(sizes: tuple[tuple[int, int], ...]) -> str:
    return ", ".join(f"{w}x{h}" for w, h in sizes) or "none"


def _names(paths: tuple[str, ...]) -> str:
    import os

    return ", ".join(os.path.basename(p) for p in paths) or "none"


def cfg_setting(case: Case, on: bool, label: str) -> Setting:
    if case.effective.guidance_scale <= 1:
        return Setting("no-cfg", f"no CFG pass (guidance {case.effective.guidance_scale:g})")
    return Setting(on, label)


# reference_wiring and preview_wiring are tables, one entry per knob in the README's order; they read best whole.
def reference_wiring(case: Case, facts: RuntimeFacts, lora_method: LoraMethod = LoraMethod.DIFFUSERS_FUSE) -> Wiring:
    """`lora_method`: how the server applies the LoRA to this model (FUSE for 2511; SET_ADAPTERS, the adapter kept
    unfused, for 2509, which shares everything else)."""
    eff = case.effective
    text_sizes = tuple(server_condition_size(*facts.image_sizes[p]) for p in eff.control_images)
    lora = bool(case.loras)
    return Wiring(
        "reference",
        (
            (Knob.SIZE, Setting((eff.width, eff.height), f"{eff.width}x{eff.height} (floor to 32)")),
            (
                Knob.SCHEDULER,
                Setting(facts.scheduler_config, f"FlowMatchEuler, checkpoint config: {_scheduler_text(facts.scheduler_config)}", key=facts.scheduler_config),
            ),
            (Knob.LORA_SCALE, _reference_scale(case, facts)),
            (Knob.LORA_METHOD, _method(lora_method if lora else LoraMethod.NONE)),
            (Knob.CFG_RENORM, cfg_setting(case, True, "always (diffusers rescales to the conditional norm)")),
            (Knob.TEXT_IMAGES, Setting(eff.control_images, _names(eff.control_images))),
            (
                Knob.TEXT_IMAGE_SIZE,
                Setting(TextImageSize.SERVER, f"{_sizes_text(text_sizes)} (w = sqrt(area·H/W): transposed)", key=text_sizes),
            ),
            (Knob.NEGATIVE_IMAGES, Setting(NegativeImages.SAME, f"the prompt's: {_sizes_text(text_sizes)}", key=text_sizes)),
            (Knob.TEXT_IMAGE_PREP, _same_prep()),
            (Knob.VAE_IMAGES, _same_vae()),
            (Knob.VAE_TILING, Setting(False, "off")),
            (Knob.ZERO_COND_T, Setting(facts.zero_cond_t, f"{str(facts.zero_cond_t).lower()} (checkpoint config)")),
            (Knob.GENERATOR, Setting("cpu", "torch.Generator('cpu').manual_seed(seed)")),
            (Knob.DTYPE, Setting(facts.dtype, facts.dtype)),
            (Knob.OUTPUT, Setting(OutputEncoding.PNG, "PNG: the pipeline's pixels (the server saves JPEG q95)")),
            (Knob.QUANTIZATION, Setting("none", "none")),
            (Knob.TEXT_ENCODER_QUANTIZATION, Setting("none", "none")),
            (
                Knob.LORA_WEIGHTS,
                Setting("file", f"the saved file ({facts.lora_file_dtype or 'n/a'})" if lora else "none", replayable=False),
            ),
        ),
    )


def preview_wiring(case: Case, facts: RuntimeFacts) -> Wiring:
    pre, t = case.preview, case.training
    assert pre is not None
    text_sizes = tuple(trainer_condition_size(*facts.image_sizes[p]) for p in pre.text_images)
    negative_sizes = tuple(trainer_condition_size(w, h) for w, h in text_sizes)
    lora = bool(case.loras)
    if not lora:
        method = LoraMethod.NONE
    else:
        method = LoraMethod.AITK_MERGE if pre.lora_merged else LoraMethod.AITK_UNMERGED
    items = scheduler_items(AITK_SCHEDULER_CONFIG)
    dtype = _dtype_name(t.dtype) if t.dtype else facts.dtype
    zero_cond_t = False if t.transformer_single_file else facts.zero_cond_t
    file_dtype = t.save_dtype or facts.lora_file_dtype or "float16"
    return Wiring(
        "preview",
        (
            (Knob.SIZE, Setting((pre.width, pre.height), f"{pre.width}x{pre.height} (round to 8, at least 64, floor to 32)")),
            (Knob.SCHEDULER, Setting(items, f"ai-toolkit CustomFlowMatchEuler, hard-coded: {_scheduler_text(items)}", key=items)),
            (Knob.LORA_SCALE, _preview_scale(case, facts)),
            (Knob.LORA_METHOD, _method(method)),
            (Knob.CFG_RENORM, cfg_setting(case, case.do_cfg_norm, f"do_cfg_norm: {str(case.do_cfg_norm).lower()}")),
            (Knob.TEXT_IMAGES, Setting(pre.text_images, _names(pre.text_images))),
            (Knob.TEXT_IMAGE_SIZE, Setting(TextImageSize.ASPECT_KEPT, f"{_sizes_text(text_sizes)} (aspect kept)", key=text_sizes)),
            (
                Knob.NEGATIVE_IMAGES,
                Setting(
                    NegativeImages.RESIZED_AGAIN,
                    f"{_sizes_text(negative_sizes)} (the shared list, resized a second time)",
                    key=negative_sizes,
                ),
            ),
            (Knob.TEXT_IMAGE_PREP, _same_prep()),
            (Knob.VAE_IMAGES, _same_vae()),
            (Knob.VAE_TILING, Setting(t.low_vram, "on (low_vram: control encode and decode)" if t.low_vram else "off")),
            (
                Knob.ZERO_COND_T,
                Setting(zero_cond_t, "false (single-file transformer: Qwen/Qwen-Image config)" if t.transformer_single_file else f"{str(zero_cond_t).lower()}"),
            ),
            (Knob.GENERATOR, Setting("cpu", "torch.manual_seed(seed): the default CPU generator, same stream")),
            (Knob.DTYPE, Setting(dtype, dtype if t.dtype else f"{dtype} (not recorded; assumed)", replayable=dtype == facts.dtype)),
            (Knob.OUTPUT, Setting(PREVIEW_FORMATS[pre.format], PREVIEW_FORMATS[pre.format].value)),
            (Knob.QUANTIZATION, _quantization(t.quantize, t.qtype, facts, t.layer_offloading)),
            (Knob.TEXT_ENCODER_QUANTIZATION, _quantization(t.quantize_te, t.qtype_te, facts, t.layer_offloading, adapter=False)),
            (
                Knob.LORA_WEIGHTS,
                Setting(
                    "training" if lora and file_dtype not in ("float32", "fp32") else "file",
                    f"the float32 training weights (the file holds them in {file_dtype})" if lora else "none",
                    replayable=not lora or file_dtype in ("float32", "fp32"),
                ),
            ),
        ),
    )


def _reference_scale(case: Case, facts: RuntimeFacts) -> Setting:
    """The request's scale, with the alpha the server's loader takes from the file (`.alpha` keys, else alpha = rank)."""
    value = case.served_scale
    if value is None:
        return Setting(None, "none")
    key, scale = value.strength(facts.lora_alpha_scale), value.multiplier
    if not facts.lora_alpha_text:
        return Setting(value, f"{scale:g}", key=key)
    strength = "varies by layer" if facts.lora_alpha_scale is None else f"{key:g}"
    return Setting(value, f"{strength} (scale {scale:g} x the file's {facts.lora_alpha_text})", key=key)


def _preview_scale(case: Case, facts: RuntimeFacts) -> Setting:
    """The sample's multiplier: ai-toolkit's Qwen networks are PEFT-format, and `LoRASpecialNetwork` then sets
    alpha = rank, so the job's linear_alpha never reaches the previews."""
    value = case.trained_scale
    if value is None:
        return Setting(None, "none")
    multiplier = value.multiplier
    t = case.training
    ignored = ""
    if t.alpha is not None and t.rank and t.alpha != t.rank:
        ignored = f"; the job's linear_alpha {t.alpha:g} (rank {t.rank}) was not used"
    return Setting(value, f"{multiplier:g} (the sample's multiplier, alpha = rank{ignored})", key=value.strength(facts.lora_alpha_scale))


def _quantization(on: bool, qtype: str | None, facts: RuntimeFacts, offloaded: bool = False, adapter: bool = True) -> Setting:
    """A part the trainer quantized: its qtype (the trainer's default qfloat8 where the case names none), replayed
    where parity replays that qtype with the trainer's library version, else shown with what is missing.
    `offloaded`: layer_offloading, whose MemoryManager (toolkit/memory_management) replaces each linear's forward
    with one that dequantizes the weight on the device and calls F.linear: other bits, not replayed."""
    if not on:
        return Setting("none", "none")
    name = qtype or "qfloat8"
    default = "" if qtype else " (the trainer's default)"
    libraries = dict(facts.quant_libraries)
    problem = quant.unknown(name, adapter_allowed=adapter) or quant.replay_problem(
        name, libraries, {written: (path, why) for written, path, why in facts.quant_adapters}
    )
    if problem is None and name == "qint4" and facts.dtype == "bfloat16":
        problem = (
            "in bf16 quanto 0.2.4 packs qint4 for tinygemm, which torch cannot move to the CPU, where the trainer's "
            "load moves each block after quantizing it"
        )
    if problem is None and offloaded:
        problem = "under layer_offloading the trainer's MemoryManager runs each layer on its dequantized weight (F.linear)"
    if problem is None:
        parsed = quant.QType.parse(name)
        library = quant.REPLAYED[parsed.name]
        adapter = "" if parsed.adapter is None else " and its accuracy recovery adapter (a branch in the model dtype, scale 1)"
        return Setting(name, f"{name}{default}, replayed with {library} {libraries[library]}{adapter}")
    return Setting(name, f"{name}{default} (not replayed: {problem})", replayable=False)


def _method(method: LoraMethod) -> Setting:
    return Setting(method, method.value)


def _same_prep() -> Setting:
    return Setting("bilinear-0..1", "bilinear, 0..1 tensor in the model dtype (the processor divides it by 255 again)")


def _same_vae() -> Setting:
    return Setting("lanczos-1mp", "PIL Lanczos to ~1 MP (sides rounded to 32), latent mode (no sampling)")


def _dtype_name(value: str) -> str:
    return {"bf16": "bfloat16", "fp16": "float16", "float16": "float16", "fp32": "float32", "float32": "float32"}.get(
        value.lower(), value
    )


