"""The case-file schema: every YAML key, its type, default and help text, and the checked loader.

This is the one place that knows YAML keys. Keys inside `sample:` mirror ai-toolkit's SampleConfig and
SampleItem (toolkit/config_modules.py) with the same defaults, so a training config's block can be pasted;
keys marked "harness" are parity's own.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

from parity.cases import yamlfile
from parity.core import offload
from parity.core.errors import CaseFileError, Problem
from parity.core.thresholds import THRESHOLD_HELP
from parity.models import DEFAULT_MODEL, MODELS, did_you_mean

AI_TOOLKIT = "ai-toolkit"
HARNESS = "harness"

_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # what torch.manual_seed accepts (the trainer seeds with it)


def key(
    help: str,
    default: Any = None,
    *,
    required: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] | None = None,
    origin: str = AI_TOOLKIT,
    numeric_text: bool = False,
    server: tuple[float | None, float | None] | None = None,
) -> Any:
    """A schema field: the YAML key's help text, default and limits live here and nowhere else.

    `minimum`/`maximum` are what a case file may hold (for sample settings: what ai-toolkit's trainer accepts, so
    every sample it renders loads); `server` is the range the reference server's request schema accepts
    (ai-toolkit-inference src/schemas/request.py). A value outside it loads, and its case is an error row that
    says the server refuses it.
    """
    meta = {
        "help": help,
        "required": required,
        "minimum": minimum,
        "maximum": maximum,
        "choices": choices,
        "origin": origin,
        "numeric_text": numeric_text,
        "server": server,
    }
    return field(default=MISSING if required else default, metadata=meta)


def _threshold(name: str) -> Any:
    return key(THRESHOLD_HELP[name], minimum=0.0, origin=HARNESS)


@dataclass(frozen=True, kw_only=True)
class LoraEntry:
    """One entry of `loras:`."""

    path: str = key("An ai-toolkit LoRA `.safetensors` file, relative to the case file.", required=True, origin=HARNESS)
    network_multiplier: float | None = key(
        "LoRA scale for every sample of the suite; unset: each sample's own network_multiplier.",
        origin=HARNESS,
        numeric_text=True,
        server=(-2, 2),
    )


@dataclass(frozen=True, kw_only=True)
class ThresholdsEntry:
    """The suite-wide `thresholds:` mapping."""

    ssim_min: float | None = _threshold("ssim_min")
    psnr_min: float | None = _threshold("psnr_min")
    mean_abs_diff_max: float | None = _threshold("mean_abs_diff_max")
    max_abs_diff_max: float | None = _threshold("max_abs_diff_max")
    changed_pixels_max: float | None = _threshold("changed_pixels_max")
    pixel_tolerance: float | None = _threshold("pixel_tolerance")


@dataclass(frozen=True, kw_only=True)
class SampleItemEntry:
    """One entry of `sample.samples:`; unset keys take the `sample:` block's value."""

    prompt: str | None = key(
        "The prompt, with optional ai-toolkit `--` flags (--n, --w, --h, --seed/--d, --cfg/--l, --steps/--s, "
        "--m/--network_multiplier, --ctrl_img). ai-toolkit skips items without one (their settings then shift)."
    )
    width: int | None = key("Width in pixels; unset: sample.width.", server=(64, 4096))
    height: int | None = key("Height in pixels; unset: sample.height.", server=(64, 4096))
    neg: str | bool | None = key("Negative prompt; unset: sample.neg.")
    seed: int | None = key(
        "Seed of this sample; unset: the walked or carried-over seed (see sample.walk_seed). -1: the reference "
        "server draws a random one, so the case is an error row.",
        minimum=_INT_MIN,
        maximum=_INT_MAX,
        server=(-1, None),
    )
    guidance_scale: float | None = key("CFG scale (true CFG); unset: sample.guidance_scale.", server=(0, 20))
    sample_steps: int | None = key("Denoising steps; unset: sample.sample_steps.", minimum=1, server=(1, 150))
    network_multiplier: float | None = key(
        "LoRA multiplier of this sample; unset: sample.network_multiplier.", numeric_text=True, server=(-2, 2)
    )
    ctrl_img: str | None = key(
        "Legacy single control image (also fills ctrl_img_1); relative to the case file."
    )
    ctrl_img_1: str | None = key("Control image 1 (\"Picture 1\"), relative to the case file.")
    ctrl_img_2: str | None = key("Control image 2 (\"Picture 2\"), relative to the case file.")
    ctrl_img_3: str | None = key("Control image 3 (\"Picture 3\"), relative to the case file.")
    ctrl_idx: int | None = key("Accepted for compatibility; not used by this model.", minimum=0)
    fps: int | None = key("Accepted for compatibility; not used by image models.", minimum=1)
    num_frames: int | None = key("Accepted for compatibility; must be 1 for image models.", minimum=1, maximum=1)
    do_cfg_norm: bool | None = key(
        "Accepted for compatibility; the trainer ignores it per item and reads sample.do_cfg_norm."
    )
    name: str | None = key(
        "Harness: a short name for the case (test id and report); unset: the sample's index.", origin=HARNESS
    )
    baseline: str | None = key(
        "Harness: the stored image to compare with, relative to the case file; unset: "
        "`<baselines>/<name or index>.png`.",
        origin=HARNESS,
    )
    ssim_min: float | None = _threshold("ssim_min")
    psnr_min: float | None = _threshold("psnr_min")
    mean_abs_diff_max: float | None = _threshold("mean_abs_diff_max")
    max_abs_diff_max: float | None = _threshold("max_abs_diff_max")
    changed_pixels_max: float | None = _threshold("changed_pixels_max")
    pixel_tolerance: float | None = _threshold("pixel_tolerance")


@dataclass(frozen=True, kw_only=True)
class SampleBlock:
    """The `sample:` block, as ai-toolkit's SampleConfig reads it."""

    sampler: str = key("Accepted for compatibility; Qwen edit models always use flow-match Euler.", "ddpm")
    sample_every: int = key("Accepted for compatibility (training cadence).", 100, minimum=1)
    sample_start_step: int = key("Accepted for compatibility (training cadence).", 0, minimum=0)
    width: int = key("Default width of every sample.", 512, server=(64, 4096))
    height: int = key("Default height of every sample.", 512, server=(64, 4096))
    neg: str | bool = key(
        "Default negative prompt. ai-toolkit's default `false` cannot be encoded by the trainer's Qwen edit "
        "path; the reference server sends \"\".",
        False,
    )
    seed: int = key("Start seed (-1: the reference server draws a random one, so the case is an error row).", 0, minimum=_INT_MIN, maximum=_INT_MAX, server=(-1, None))
    walk_seed: bool = key(
        "true: sample i gets seed + i. false: every sample gets `seed`, and a sample's own seed carries over "
        "to the samples after it that have none.",
        False,
    )
    guidance_scale: float = key("Default CFG scale.", 7.0, server=(0, 20))
    sample_steps: int = key("Default number of denoising steps.", 20, minimum=1, server=(1, 150))
    network_multiplier: float = key("Default LoRA multiplier.", 1.0, numeric_text=True, server=(-2, 2))
    guidance_rescale: float = key("Accepted for compatibility; not used by Qwen edit models.", 0.0)
    format: str = key("Preview file format the trainer wrote.", "jpg", choices=("jpg", "png", "webp"))
    adapter_conditioning_scale: float = key("Accepted for compatibility; no adapter here.", 1.0)
    refiner_start_at: float = key("Accepted for compatibility; no refiner here.", 0.5)
    extra_values: tuple[float, ...] = key("Accepted for compatibility; no adapter here.", ())
    num_frames: int = key("Must be 1: image model.", 1, minimum=1, maximum=1)
    fps: int = key("Accepted for compatibility; not used by image models.", 16, minimum=1)
    prompts: tuple[str, ...] = key("Legacy list of prompts; used only when `samples` is absent.", ())
    samples: tuple[SampleItemEntry, ...] | None = key("The samples, one mapping each (see the next table).")
    do_cfg_norm: bool = key(
        "The trainer's CFG renormalisation switch (default off); the reference server always renormalises.", False
    )


@dataclass(frozen=True, kw_only=True)
class TrainingEntry:
    """The `training:` block: what explains the previews but is not a sampling setting (from the job config)."""

    step: int | None = key("Harness: the training step the previews were drawn at.", minimum=0, origin=HARNESS)
    quantize: bool = key(
        "model.quantize: the trainer drew previews from a quantized transformer, its LoRA unmerged (replayed with "
        "`pip install 'parity[trainer]'` for the qtypes the README lists; shown otherwise).",
        False,
    )
    qtype: str | None = key(
        "model.qtype (unset: qfloat8, the trainer's default), e.g. qfloat8, float8, or uint3|<accuracy recovery adapter>."
    )
    quantize_te: bool | None = key(
        "model.quantize_te (unset: as `quantize`, the trainer's default): the text encoder was quantized, replayed "
        "as `quantize` is."
    )
    qtype_te: str | None = key("model.qtype_te (unset: qfloat8, the trainer's default).")
    low_vram: bool = key("model.low_vram: the trainer tiles the VAE (control-image encode and decode).", False)
    dtype: str | None = key("train.dtype the previews were drawn in, e.g. bf16 (recorded).")
    layer_offloading: bool = key(
        "model.layer_offloading: the trainer then cannot merge the LoRA and runs it unmerged.", False
    )
    transformer_single_file: bool = key(
        "model.name_or_path is a single .safetensors file: the trainer takes the Qwen/Qwen-Image config, "
        "which turns zero_cond_t off.",
        False,
    )
    network_type: str | None = key(
        "network.type, e.g. lora or lokr (recorded; the LoRA file itself says what it is: see the report's LoRA audit)."
    )
    rank: int | None = key("network.linear (rank).", minimum=1)
    alpha: float | None = key(
        "network.linear_alpha, as the job config says (recorded): ai-toolkit does not use it for any Qwen arch (their "
        "networks are PEFT-format, with alpha = rank and no .alpha keys saved), so the previews' LoRA strength is the "
        "sample's multiplier; a case notes it when it differs from the rank.",
        minimum=0,
    )
    save_dtype: str | None = key("save.dtype of the LoRA file (ai-toolkit default float16; recorded).")
    do_cfg_norm: bool | None = key("Overrides sample.do_cfg_norm (the trainer's CFG renormalisation switch).")


@dataclass(frozen=True, kw_only=True)
class PreviewEntry:
    """One entry of `previews:` (written by `parity import`): the training preview of sample i."""

    file: str = key("The preview image, relative to the case file.", required=True, origin=HARNESS)
    sha256: str | None = key("sha256 of the file when imported; a changed file is flagged.", origin=HARNESS)
    source: str | None = key("Where the trainer wrote it (<job>/samples/<ms>__<step>_<i>.<ext>).", origin=HARNESS)
    step: int | None = key("Training step of the preview.", minimum=0, origin=HARNESS)


@dataclass(frozen=True, kw_only=True)
class SuiteFile:
    """A case file: one suite."""

    model: str = key(
        "Harness: registry id of the reference wiring.",
        DEFAULT_MODEL,
        choices=tuple(MODELS),
        origin=HARNESS,
    )
    base_model: str = key(
        "Harness: `tiny` (bundled, built offline), a local diffusers folder (relative to the case file), or an "
        "HF id already in the local cache.",
        "tiny",
        origin=HARNESS,
    )
    trigger_word: str | None = key("Replaces `[trigger]` (and `[name]`) in prompts.")
    loras: tuple[LoraEntry, ...] = key("Harness: LoRAs to apply as the reference server does (it applies one).", (), origin=HARNESS)
    offload: str = key(
        "Harness: the reference server's OFFLOAD_MODE on a GPU: `none` (its default: every component on the GPU), "
        "`model` (components move whole to the GPU when they run; the LoRA is fused on the CPU, so the pixels "
        "differ from none), `sequential` (layer by layer), or `auto` (none when the model and the largest case fit "
        "in the GPU's memory, else model, else sequential). The pixels follow the mode; `--offload` overrides it.",
        offload.DEFAULT,
        choices=offload.CHOICES,
        origin=HARNESS,
    )
    allow_partial_lora: bool = key(
        "Harness: accept a LoRA of which only some target modules exist in the model (noted in the report); "
        "by default any unmatched key is an error, since an unmatched LoRA silently changes nothing.",
        False,
        origin=HARNESS,
    )
    baseline_kind: str = key(
        "Harness: `pinned` (outputs of this harness; a missing one is written) or `preview` (training "
        "previews; never written).",
        "pinned",
        choices=("pinned", "preview"),
        origin=HARNESS,
    )
    baselines: str | None = key(
        "Harness: folder of baselines for samples without `baseline:`, relative to the case file; unset: "
        "`../baselines/<case file name>`.",
        origin=HARNESS,
    )
    thresholds: ThresholdsEntry | None = key("Harness: suite-wide pass/fail limits (see below).", origin=HARNESS)
    previews: tuple[PreviewEntry, ...] = key(
        "Harness: the training previews by sample index (sample i's baseline unless it has `baseline:`).",
        (),
        origin=HARNESS,
    )
    training: TrainingEntry | None = key(
        "Harness: facts of the training run that explain previews (see below); used by --diagnose.", origin=HARNESS
    )
    sample: SampleBlock = key("ai-toolkit's `sample:` block.", required=True)


@dataclass(frozen=True)
class LoadedSuite:
    """A checked case file with where it came from; `lines` maps field paths to YAML line numbers."""

    path: Path
    spec: SuiteFile
    lines: dict[str, int]

    @property
    def name(self) -> str:
        return self.path.stem

    def problem(self, field_path: str, value: object, message: str, fix: str) -> Problem:
        return Problem(str(self.path), field_path, value, message, fix, self.lines.get(field_path))


SCHEMA_TABLES: tuple[tuple[str, type], ...] = (
    ("top level", SuiteFile),
    ("loras[]", LoraEntry),
    ("thresholds", ThresholdsEntry),
    ("training", TrainingEntry),
    ("previews[]", PreviewEntry),
    ("sample", SampleBlock),
    ("sample.samples[]", SampleItemEntry),
)


def load_suite(path: str | Path) -> LoadedSuite:
    """Read and check a case file; CaseFileError lists every problem with file, line, field and fix."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CaseFileError([Problem(str(path), "(file)", str(path), "no such case file", "check the path")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CaseFileError(
            [Problem(str(path), "(file)", str(path), f"cannot read the file: {exc}", "save it as UTF-8 text")]
        ) from None
    try:
        node, data = yamlfile.parse(text)
    except yamlfile.YamlTooLarge as exc:
        raise CaseFileError(
            [Problem(str(path), "(yaml)", "", str(exc), "write the samples out instead of nesting aliases")]
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CaseFileError(
            [Problem(str(path), "(yaml)", text[:0], f"not valid YAML: {reason}", "fix the YAML syntax", line)]
        ) from None
    except RecursionError:
        raise CaseFileError(
            [Problem(str(path), "(yaml)", "", "YAML nested too deeply", "flatten the structure")]
        ) from None
    lines: dict[str, int] = {}
    if node is not None:
        _line_map(node, "", lines)
    checker = _Checker(str(path), lines)
    spec = checker.dataclass(SuiteFile, data, "")
    if checker.problems:
        raise CaseFileError(checker.problems)
    return LoadedSuite(path=path, spec=spec, lines=lines)


def _line_map(node: yaml.Node, prefix: str, out: dict[str, int], depth: int = 0) -> None:
    if depth > 50:
        return
    out.setdefault(prefix, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            name = str(key_node.value)
            sub = f"{prefix}.{name}" if prefix else name
            out.setdefault(sub, key_node.start_mark.line + 1)
            _line_map(value_node, sub, out, depth + 1)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_map(item, f"{prefix}[{i}]", out, depth + 1)


def field_type_name(tp: Any) -> str:
    """A short human name for a field's type (used in errors and the README table)."""
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        parts = [field_type_name(a) for a in args if a is not type(None)]
        return " or ".join(parts)
    if origin is tuple:
        return f"list of {field_type_name(args[0])}"
    if is_dataclass(tp):
        return "mapping"
    return {str: "text", int: "integer", float: "number", bool: "true/false"}.get(tp, getattr(tp, "__name__", str(tp)))


class _Checker:
    """Walks YAML data against the schema dataclasses and collects problems instead of stopping."""

    def __init__(self, file: str, lines: dict[str, int]):
        self.file = file
        self.lines = lines
        self.problems: list[Problem] = []

    def fail(self, path: str, value: object, message: str, fix: str) -> None:
        self.problems.append(Problem(self.file, path or "(top level)", value, message, fix, self.lines.get(path)))

    def dataclass(self, cls: type, data: Any, path: str) -> Any:
        if not isinstance(data, dict):
            self.fail(path, data, f"expected a mapping of keys, found {_kind(data)}", f"write `{path or 'the file'}` as `key: value` lines")
            return None
        hints = get_type_hints(cls)
        known = [f.name for f in fields(cls)]
        for name in data:
            if not isinstance(name, str) or name not in known:
                where = f"{path}.{name}" if path else str(name)
                self.fail(where, name, f"unknown key{did_you_mean(str(name), known)}", f"use one of: {', '.join(known)}")
        values = {}
        for f in fields(cls):
            sub = f"{path}.{f.name}" if path else f.name
            if f.name in data:
                values[f.name] = self.value(hints[f.name], data[f.name], sub, f.metadata)
            elif f.metadata.get("required"):
                self.fail(sub, None, "required key is missing", f"add `{f.name}:` — {f.metadata['help']}")
                values[f.name] = None
        # After a problem the object is never used (load_suite raises), so a None in a field is harmless.
        return cls(**values)

    def value(self, tp: Any, value: Any, path: str, meta: typing.Mapping[str, Any]) -> Any:
        origin, args = get_origin(tp), get_args(tp)
        if origin in (Union, types.UnionType):
            if value is None and type(None) in args:
                return None
            options = [a for a in args if a is not type(None)]
            if set(options) == {str, bool}:
                if isinstance(value, str) or value is False:
                    return value
                return self.wrong(path, value, "text (or false)", meta)
            return self.value(options[0], value, path, meta)
        if origin is tuple:
            if not isinstance(value, list):
                return self.wrong(path, value, f"a list of {field_type_name(args[0])}", meta)
            return tuple(self.value(args[0], item, f"{path}[{i}]", meta) for i, item in enumerate(value))
        if is_dataclass(tp):
            return self.dataclass(tp, value, path)
        if tp is bool:
            return value if isinstance(value, bool) else self.wrong(path, value, "true or false", meta)
        if tp is str:
            if not isinstance(value, str):
                return self.wrong(path, value, "text", meta)
            return self.choice(path, value, meta)
        if tp is int:
            if isinstance(value, bool) or not isinstance(value, int):
                return self.wrong(path, value, "a whole number", meta)
            return self.in_range(path, value, meta)
        if tp is float:
            if isinstance(value, str) and meta.get("numeric_text"):
                try:
                    value = float(value)
                except ValueError:
                    return self.wrong(path, value, "a number", meta)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return self.wrong(path, value, "a number", meta)
            if not math.isfinite(value):
                return self.wrong(path, value, "a finite number", meta)
            return self.in_range(path, float(value), meta)
        raise TypeError(f"schema type {tp!r} not handled")  # a bug in the schema, not in the user's file

    def wrong(self, path: str, value: Any, expected: str, meta: typing.Mapping[str, Any]) -> None:
        self.fail(path, value, f"expected {expected}, found {_kind(value)}", f"set it to {expected}. {meta['help']}")

    def choice(self, path: str, value: str, meta: typing.Mapping[str, Any]) -> str | None:
        choices = meta.get("choices")
        if choices and value not in choices:
            self.fail(path, value, f"not a known value{did_you_mean(value, choices)}", f"use one of: {', '.join(choices)}")
            return None
        return value

    def in_range(self, path: str, value: float, meta: typing.Mapping[str, Any]) -> float | None:
        low, high = meta.get("minimum"), meta.get("maximum")
        if not outside(value, low, high):
            return value
        if high is None:
            self.fail(path, value, f"less than {low:g}", f"use a value of at least {low:g}. {meta['help']}")
        else:
            self.fail(path, value, f"out of range {bounds(low, high)}", f"use a value in {bounds(low, high)}. {meta['help']}")
        return None


def outside(value: float, low: float | None, high: float | None) -> bool:
    """Whether a value falls outside a range (None: that side is open): the schema's, the trainer's, the server's."""
    return (low is not None and value < low) or (high is not None and value > high)


def bounds(low: float | None, high: float | None) -> str:
    """A range in words: 'a..b', 'at least a' or 'at most b'."""
    if high is None:
        return f"at least {low}"
    if low is None:
        return f"at most {high}"
    return f"{low}..{high}"


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (true/false)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"text {value!r}" if len(value) < 40 else "text"
    return f"{type(value).__name__} {value!r}"
