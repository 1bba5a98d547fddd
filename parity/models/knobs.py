"""Wiring as data, the vocabulary every model shares: knobs, their settings, a wiring, ablation variants.

A knob's `value` is what the renderer uses; its `key` is what decides whether two wirings differ *for this
case* (e.g. the text-encoder resize rules differ, but for square control images they give the same size).
Knobs the harness cannot replay (a quantized training model, the float32 training LoRA weights) are carried
with replayable=False and shown, never dropped. What each model's server and trainer set every knob to is the
model package's (`parity/models/<model>/knobs.py`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from parity.core.images import OutputEncoding


class Knob(enum.Enum):
    SIZE = "size snapping"
    SCHEDULER = "scheduler"
    LORA_SCALE = "LoRA scale"
    LORA_METHOD = "LoRA application"
    CFG_RENORM = "CFG renormalisation"
    TEXT_IMAGES = "text encoder: which control images"
    TEXT_IMAGE_SIZE = "text encoder: control image size"
    NEGATIVE_IMAGES = "text encoder: negative prompt's images"
    TEXT_IMAGE_PREP = "text encoder: kernel and value range"
    VAE_IMAGES = "VAE: control images"
    VAE_TILING = "VAE tiling"
    ZERO_COND_T = "zero_cond_t"
    GENERATOR = "generator"
    DTYPE = "dtype"
    OUTPUT = "output encoding"
    QUANTIZATION = "transformer quantization"
    TEXT_ENCODER_QUANTIZATION = "text encoder quantization"
    LORA_WEIGHTS = "LoRA weights"


ALWAYS_SHOWN = (Knob.SIZE, Knob.SCHEDULER, Knob.LORA_SCALE)

class LoraMethod(enum.Enum):
    NONE = "no LoRA"
    DIFFUSERS_FUSE = "diffusers load_lora_weights + fuse_lora (PEFT delta in the model dtype)"
    DIFFUSERS_ADAPTER = "diffusers load_lora_weights, the PEFT adapter kept unfused at the scale (set_weights_and_activate_adapters)"
    AITK_MERGE = "ai-toolkit merge_in: float32 delta written back in the model dtype"
    AITK_UNMERGED = "ai-toolkit unmerged: a float32 LoRA branch added at each sample's multiplier"


PREVIEW_FORMATS = {"jpg": OutputEncoding.JPEG_75, "png": OutputEncoding.PNG, "webp": OutputEncoding.WEBP_80}


@dataclass(frozen=True)
class Setting:
    value: object
    shown: str
    replayable: bool = True
    key: object = None  # what decides "differs" for this case; defaults to value

    @property
    def effect_key(self) -> object:
        return self.value if self.key is None else self.key


@dataclass(frozen=True)
class Wiring:
    name: str
    settings: tuple[tuple[Knob, Setting], ...]

    def __getitem__(self, knob: Knob) -> Setting:
        for k, s in self.settings:
            if k is knob:
                return s
        raise KeyError(knob)

    def value(self, knob: Knob) -> object:
        return self[knob].value

    def get(self, knob: Knob, default: object = None) -> object:
        """The value of a knob this model may not have (a text-to-image model has no control-image knobs)."""
        return next((s.value for k, s in self.settings if k is knob), default)

    def with_setting(self, knob: Knob, setting: Setting, name: str | None = None) -> Wiring:
        return Wiring(name or self.name, tuple((k, setting if k is knob else s) for k, s in self.settings))


@dataclass(frozen=True)
class RuntimeFacts:
    """What only the loaded model and the opened images can tell."""

    scheduler_config: tuple[tuple[str, object], ...]
    zero_cond_t: bool
    dtype: str
    image_sizes: dict[str, tuple[int, int]]  # control image path -> (width, height)
    lora_file_dtype: str | None = None
    lora_alpha_text: str = ""  # the file's `.alpha` keys in words ("alpha 8 / rank 4"); "" when it has none
    lora_alpha_scale: float | None = 1.0  # the file's alpha / rank, as the server's loader applies it (None: varies)
    quant_libraries: tuple[tuple[str, str | None], ...] = ()  # the trainer's quantization libraries here: (name, version)
    # accuracy recovery adapters: (as written, the file found or None, why the trainer's network would not load it)
    quant_adapters: tuple[tuple[str, str | None, str | None], ...] = ()


def differing(a: Wiring, b: Wiring) -> tuple[Knob, ...]:
    """Knobs whose effect differs between two wirings for this case, in table order."""
    return tuple(k for k, s in a.settings if s.effect_key != b[k].effect_key)


# Knobs that cannot be taken alone: a quantized base takes a LoRA only as ai-toolkit's unmerged branch (the trainer's
# `can_merge_in` is false there, and the server's fuse has no quantized weights to write into).
TAKEN_WITH: dict[Knob, tuple[Knob, ...]] = {Knob.QUANTIZATION: (Knob.LORA_METHOD,)}


def flip(base: Wiring, source: Wiring, knob: Knob) -> Wiring:
    """`base` with one knob taken from `source` (an ablation variant), and the knobs it cannot go without."""
    return replace(combine(base, source, (knob,), base.name), name=f"{base.name} + {source.name} {knob.value}")


def combine(base: Wiring, source: Wiring, knobs: tuple[Knob, ...], name: str) -> Wiring:
    wiring = base
    for knob in knobs:
        for taken in (knob, *TAKEN_WITH.get(knob, ())):
            wiring = wiring.with_setting(taken, source[taken])
    return replace(wiring, name=name)
