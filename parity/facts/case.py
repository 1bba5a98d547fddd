"""A resolved case: what the resolver hands to every later layer (plain frozen data, no logic)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from parity.core.thresholds import BaselineKind, Thresholds
from parity.facts.scale import Alpha, LoraScale


@dataclass(frozen=True)
class Settings:
    """The settings one image is drawn with."""

    prompt: str
    negative_prompt: str | bool
    width: int
    height: int
    seed: int
    steps: int
    guidance_scale: float
    lora_scale: float | None
    control_images: tuple[str, ...]

    def as_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class LoraRef:
    path: str
    network_multiplier: float | None


@dataclass(frozen=True)
class TrainingFacts:
    """What the job config says about the run that drew the previews (the case file's `training:` block, resolved;
    each field's meaning is in parity/cases/schema.py TrainingEntry)."""

    step: int | None = None
    quantize: bool = False
    qtype: str | None = None
    quantize_te: bool = False
    qtype_te: str | None = None
    low_vram: bool = False
    dtype: str | None = None
    layer_offloading: bool = False
    transformer_single_file: bool = False
    network_type: str | None = None
    rank: int | None = None
    alpha: float | None = None  # the job's linear_alpha, as written (ai-toolkit uses alpha = rank for Qwen)
    save_dtype: str | None = None
    do_cfg_norm: bool | None = None


@dataclass(frozen=True)
class Case:
    """One sample of a suite, resolved: what to run and what to compare it with."""

    id: str
    suite: str
    suite_file: str
    index: int
    name: str
    model: str
    base_model: str
    base_dir: str
    trigger_word: str | None
    loras: tuple[LoraRef, ...]
    requested: Settings
    effective: Settings
    notes: tuple[str, ...]
    baseline: str | None
    baseline_kind: BaselineKind
    thresholds: Thresholds
    do_cfg_norm: bool
    control_keys: tuple[str, ...] = ()
    baseline_key: str = ""
    baseline_named: bool = False  # the sample names its own `baseline:` file (compared as it is, never redirected)
    training: TrainingFacts = field(default_factory=TrainingFacts)
    preview: PreviewFacts | None = None
    baseline_sha256: str | None = None  # recorded at import; a changed preview is flagged
    baseline_origin: str | None = None  # where the trainer wrote the preview
    training_step: int | None = None
    allow_partial_lora: bool = False
    offload: str = "none"  # the server's OFFLOAD_MODE asked for (core.offload.CHOICES); the engine settles `auto`
    refused: tuple[str, ...] = ()  # why the reference server would refuse this request: the case is an error row
    baselines_dir: str = ""  # the suite's baselines folder: sets per environment class and their calibration
    suite_thresholds: Thresholds | None = None  # the case file's own limits (calibrated ones come at run time)
    sample_thresholds: Thresholds | None = None

    @property
    def served_scale(self) -> LoraScale | None:
        """The LoRA strength the reference server applies: the request's scale, with the file's alpha."""
        scale = self.effective.lora_scale
        return None if not self.loras or scale is None else LoraScale(scale, Alpha.FILE)

    @property
    def trained_scale(self) -> LoraScale | None:
        """The strength ai-toolkit drew the preview at: the sample's multiplier, alpha = rank (every Qwen network)."""
        return None if not self.loras else LoraScale(self.requested.lora_scale or 0.0, Alpha.RANK)


@dataclass(frozen=True)
class PreviewFacts:
    """How ai-toolkit's sampler drew this sample, where it differs from the request: used by --diagnose."""

    width: int  # rounded to 8 (at least 64), floored to 32
    height: int
    text_images: tuple[str, ...]  # what its text encoder sees (a legacy ctrl_img comes twice)
    lora_merged: bool  # one multiplier for every sample and no quantized/offloaded base: merged in float32
    negative_prompt: str
    format: str
