"""Turn a checked case file into cases: ai-toolkit's sampling rules, then the reference server's rules.

Pure functions, no I/O: the trainer decides each sample's settings (legacy `prompts:`, per-item overrides,
`walk_seed`, `--` flags, `[trigger]`, neg default, size rounding); the reference server then snaps the size to
its divisor and fills its defaults. Each case keeps both the *requested* settings (the trainer's) and the
*effective* ones (what the reference wiring runs), with a note for every decision that changed a value.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace

from parity.cases.prompt_flags import parse_prompt
from parity.cases.schema import LoadedSuite, SampleItemEntry, ThresholdsEntry, TrainingEntry
from parity.core.errors import CaseFileError, Problem
from parity.core.thresholds import THRESHOLD_KEYS, BaselineKind, Thresholds, combine
from parity.models import ModelSpec, get_model
from parity.models.qwen_image_edit_plus_2511.geometry import server_size, trainer_size

TRIGGER_TOKENS = ("[trigger]", "[name]")


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
    training: TrainingEntry = field(default_factory=TrainingEntry)
    preview: PreviewFacts | None = None
    baseline_sha256: str | None = None  # recorded at import; a changed preview is flagged
    baseline_origin: str | None = None  # where the trainer wrote the preview
    training_step: int | None = None
    allow_partial_lora: bool = False
    baselines_dir: str = ""  # the suite's baselines folder: sets per environment class and their calibration
    suite_thresholds: Thresholds | None = None  # the case file's own limits (calibrated ones come at run time)
    sample_thresholds: Thresholds | None = None


@dataclass(frozen=True)
class PreviewFacts:
    """How ai-toolkit's sampler drew this sample, where it differs from the request: used by --diagnose."""

    width: int  # rounded to 8 (at least 64), floored to 32
    height: int
    text_images: tuple[str, ...]  # what its text encoder sees (a legacy ctrl_img comes twice)
    lora_merged: bool  # one multiplier for every sample and no quantized/offloaded base: merged in float32
    negative_prompt: str
    format: str


def inject_trigger(prompt: str, trigger: str | None) -> str:
    """ai-toolkit's inject_trigger_into_prompt as the sampler calls it (only when a trigger word is set)."""
    if trigger is None:
        return prompt
    for token in TRIGGER_TOKENS:
        prompt = prompt.replace(token, trigger)
    return prompt


def resolve_suite(loaded: LoadedSuite) -> list[Case]:
    """All cases of a suite, or CaseFileError listing every problem found while resolving."""
    spec = loaded.spec
    model = get_model(spec.model)
    problems: list[Problem] = []
    case_dir = str(loaded.path.parent)
    if len(spec.loras) > model.max_loras:
        problems.append(
            loaded.problem(
                "loras",
                len(spec.loras),
                f"{model.id} applies at most {model.max_loras} LoRA (the reference server fuses only the first)",
                "list one LoRA per suite; split the others into their own case files",
            )
        )
    loras = tuple(LoraRef(_join(case_dir, e.path), e.network_multiplier) for e in spec.loras)
    kind = BaselineKind(spec.baseline_kind)
    training = spec.training or TrainingEntry()
    suite_thresholds = _thresholds(spec.thresholds)
    baseline_dir = _join(case_dir, spec.baselines or os.path.join("..", "baselines", loaded.name))

    sample = spec.sample
    if sample.samples is not None:
        items = sample.samples
        items_key = "sample.samples"
    else:
        items = tuple(SampleItemEntry(prompt=p) for p in sample.prompts)
        items_key = "sample.prompts"
    prompts = [item.prompt for item in items if item.prompt is not None]
    if not prompts:
        problems.append(
            loaded.problem(items_key, None, "no sample has a prompt", "add samples with a `prompt:` under `sample:`")
        )

    cases: list[Case] = []
    seen_names: dict[str, int] = {}
    current_seed = sample.seed
    for i, raw_prompt in enumerate(prompts):
        item = items[i]
        where = f"{items_key}[{i}]"
        notes: list[str] = []
        if item.prompt != raw_prompt:
            notes.append(
                f"prompt {raw_prompt!r} belongs to a later item, but its settings come from {where}: ai-toolkit "
                "skips items without a prompt yet reads settings by position"
            )
        seed_note = ""
        if sample.walk_seed:
            current_seed = sample.seed + i
            seed_note = f"seed {current_seed} = {sample.seed} + {i} (walk_seed)"
        if item.seed is not None:
            current_seed = item.seed
            seed_note = f"seed {current_seed} from the sample"
        elif not sample.walk_seed and current_seed != sample.seed:
            seed_note = f"seed {current_seed} carried over from an earlier sample (walk_seed is false)"
        seed = current_seed

        text = inject_trigger(raw_prompt, spec.trigger_word)
        if text != raw_prompt:
            notes.append(f"[trigger] replaced by {spec.trigger_word!r}")
        parsed = parse_prompt(text)
        for err in parsed.errors:
            problems.append(
                loaded.problem(
                    f"{where}.prompt",
                    f"--{err.flag} {err.content}",
                    f"flag --{err.flag} needs {err.expected} (ai-toolkit would stop here)",
                    f"write --{err.flag} followed by {err.expected}",
                )
            )
        o = parsed.overrides

        def pick(name: str, item_value: object, block_value: object) -> object:
            return item_value if item_value is not None else block_value

        width = int(o.get("width", pick("width", item.width, sample.width)))
        height = int(o.get("height", pick("height", item.height, sample.height)))
        neg = o.get("negative_prompt", pick("neg", item.neg, sample.neg))
        seed = int(o.get("seed", seed))
        if "seed" in o:
            seed_note = f"seed {seed} from the --seed/--d flag"
        steps = int(o.get("steps", pick("sample_steps", item.sample_steps, sample.sample_steps)))
        guidance = float(o.get("guidance_scale", pick("guidance_scale", item.guidance_scale, sample.guidance_scale)))
        multiplier = float(
            o.get("network_multiplier", pick("network_multiplier", item.network_multiplier, sample.network_multiplier))
        )
        if seed_note:
            notes.append(seed_note)
        if parsed.flags:
            shown = " ".join(f"--{f} {c}".strip() for f, c in parsed.flags)
            notes.append(
                f"prompt flags read as ai-toolkit does: {shown}; the reference server would pass them to the "
                "text encoder verbatim, so parity sends the parsed prompt"
            )
        for flag in parsed.unknown:
            notes.append(f"unknown flag --{flag} dropped from the prompt (ai-toolkit ignores it too)")

        problems.extend(_check_flag_values(loaded, where, width, height, steps, guidance, seed, model))

        controls, control_keys, text_images, control_notes = _control_images(item, o.get("ctrl_img"), case_dir, where)
        notes.extend(control_notes)
        if not controls and model.requires_control_image:
            problems.append(
                loaded.problem(
                    where,
                    None,
                    f"{model.id} needs at least one control image",
                    "add `ctrl_img_1:` (and ctrl_img_2/3 for more pictures) to the sample",
                )
            )
        if len(controls) > model.max_control_images:
            problems.append(
                loaded.problem(where, len(controls), f"more than {model.max_control_images} control images", "keep at most three")
            )

        name = item.name if item.name is not None else str(i)
        if name in seen_names:
            problems.append(
                loaded.problem(f"{where}.name", name, f"name already used by sample {seen_names[name]}", "give each sample its own name")
            )
        seen_names[name] = i

        imported = spec.previews[i] if i < len(spec.previews) else None
        if item.baseline is not None:
            baseline: str | None = _join(case_dir, item.baseline)
        elif imported is not None:
            baseline = _join(case_dir, imported.file)
        elif kind is BaselineKind.PINNED:
            baseline = os.path.join(baseline_dir, f"{_safe(name)}.png")
        else:
            baseline = None
            problems.append(
                loaded.problem(
                    where,
                    None,
                    "a preview suite needs the training preview of every sample",
                    "add `baseline: path/to/<ms>__<step>_<i>.jpg` to the sample (or use `parity import`)",
                )
            )

        requested = Settings(
            prompt=parsed.prompt,
            negative_prompt=neg,  # type: ignore[arg-type]
            width=width,
            height=height,
            seed=seed,
            steps=steps,
            guidance_scale=guidance,
            lora_scale=multiplier,
            control_images=controls,
        )
        effective, server_notes = _server_settings(requested, model, loras, multiplier)
        notes.extend(server_notes)

        cases.append(
            Case(
                id=f"{loaded.name}::{name}",
                suite=loaded.name,
                suite_file=str(loaded.path),
                index=i,
                name=name,
                model=model.id,
                base_model=spec.base_model,
                base_dir=case_dir,
                trigger_word=spec.trigger_word,
                loras=loras,
                requested=requested,
                effective=effective,
                notes=tuple(notes),
                baseline=baseline,
                baseline_kind=kind,
                thresholds=combine(kind, suite_thresholds, _item_thresholds(item)),
                suite_thresholds=suite_thresholds,
                sample_thresholds=_item_thresholds(item),
                baselines_dir=baseline_dir,
                do_cfg_norm=training.do_cfg_norm if training.do_cfg_norm is not None else sample.do_cfg_norm,
                control_keys=control_keys,
                baseline_key=f"{where}.baseline" if imported is None or item.baseline is not None else f"previews[{i}].file",
                baseline_sha256=imported.sha256 if imported is not None and item.baseline is None else None,
                baseline_origin=imported.source if imported is not None else None,
                training_step=imported.step if imported is not None and imported.step is not None else training.step,
                training=training,
                allow_partial_lora=spec.allow_partial_lora,
                preview=PreviewFacts(
                    width=trainer_size(width, model.size_divisor),
                    height=trainer_size(height, model.size_divisor),
                    text_images=text_images,
                    lora_merged=False,  # decided below, once every sample's multiplier is known
                    negative_prompt=neg if isinstance(neg, str) else "",
                    format=sample.format,
                ),
            )
        )
    if len(spec.previews) > len(cases):
        problems.append(
            loaded.problem(
                "previews",
                len(spec.previews),
                f"{len(spec.previews)} previews for {len(cases)} samples",
                "list one preview per sample with a prompt, in order",
            )
        )
    if problems:
        raise CaseFileError(problems)
    merged = len({c.requested.lora_scale for c in cases}) == 1 and not training.quantize and not training.layer_offloading
    return [replace(c, preview=replace(c.preview, lora_merged=merged)) for c in cases]


def _server_settings(
    requested: Settings, model: ModelSpec, loras: tuple[LoraRef, ...], multiplier: float
) -> tuple[Settings, list[str]]:
    """The reference server's view of a request carrying the trainer's settings."""
    notes: list[str] = []
    width = server_size(requested.width, model.size_divisor)
    height = server_size(requested.height, model.size_divisor)
    if (width, height) != (requested.width, requested.height):
        notes.append(
            f"size {requested.width}x{requested.height} -> {width}x{height}: the reference server floors to a "
            f"multiple of {model.size_divisor} (the trainer draws "
            f"{trainer_size(requested.width)}x{trainer_size(requested.height)})"
        )
    elif (trainer_size(requested.width), trainer_size(requested.height)) != (width, height):
        notes.append(
            f"the trainer draws {trainer_size(requested.width)}x{trainer_size(requested.height)} "
            f"(rounded to 8, at least 64), the reference server {width}x{height}"
        )
    neg = requested.negative_prompt
    if neg is False:
        notes.append(
            'neg is false (ai-toolkit default): the reference server sends "" — the trainer\'s Qwen edit path '
            "cannot encode false, so the training config must have set a string"
        )
        neg = model.default_neg
    lora_scale: float | None = None
    if loras:
        lora_scale = loras[0].network_multiplier if loras[0].network_multiplier is not None else multiplier
        if loras[0].network_multiplier is not None and loras[0].network_multiplier != multiplier:
            notes.append(
                f"LoRA scale {lora_scale:g} from loras[0].network_multiplier; the sample asked for {multiplier:g}"
            )
    if requested.guidance_scale <= 1:
        notes.append(f"guidance {requested.guidance_scale:g} <= 1: no CFG pass on either side")
    return (
        Settings(
            prompt=requested.prompt,
            negative_prompt=neg,
            width=width,
            height=height,
            seed=requested.seed,
            steps=requested.steps,
            guidance_scale=requested.guidance_scale,
            lora_scale=lora_scale,
            control_images=requested.control_images,
        ),
        notes,
    )


def _control_images(
    item: SampleItemEntry, flag_ctrl: object, case_dir: str, where: str
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], list[str]]:
    """Control images in the order the VAE gets them (as the trainer collects them), their keys, the list the
    trainer's text encoder gets (ctrl_img and ctrl_img_1 both, so a legacy ctrl_img comes twice), and notes."""
    notes: list[str] = []
    ctrl_img = flag_ctrl if flag_ctrl is not None else item.ctrl_img
    ctrl_img_1 = item.ctrl_img_1 if item.ctrl_img_1 is not None else item.ctrl_img
    if flag_ctrl is not None:
        first, first_key = flag_ctrl, f"{where}.prompt"
    elif item.ctrl_img is not None:
        first, first_key = item.ctrl_img, f"{where}.ctrl_img"
    else:
        first, first_key = item.ctrl_img_1, f"{where}.ctrl_img_1"
    candidates = ((first, first_key), (item.ctrl_img_2, f"{where}.ctrl_img_2"), (item.ctrl_img_3, f"{where}.ctrl_img_3"))
    ordered = [(p, k) for p, k in candidates if p is not None]
    text = [p for p in (ctrl_img, ctrl_img_1, item.ctrl_img_2, item.ctrl_img_3) if p is not None]
    if ctrl_img is not None and ctrl_img_1 is not None:
        notes.append(
            "legacy ctrl_img: the trainer's text encoder sees it as an extra picture (ctrl_img and ctrl_img_1 are "
            "both passed) while its VAE gets it once; the reference server sends it once"
        )
    if item.ctrl_img_1 is None and item.ctrl_img is None and flag_ctrl is None and item.ctrl_img_2 is not None:
        notes.append("ctrl_img_2 without ctrl_img_1 becomes \"Picture 1\" on both sides")
    return (
        tuple(_join(case_dir, str(p)) for p, _ in ordered),
        tuple(k for _, k in ordered),
        tuple(_join(case_dir, str(p)) for p in text),
        notes,
    )


_SAMPLE_LIMITS = {f.name: (f.metadata.get("minimum"), f.metadata.get("maximum")) for f in fields(SampleItemEntry)}


def _check_flag_values(
    loaded: LoadedSuite, where: str, width: int, height: int, steps: int, guidance: float, seed: int, model: ModelSpec
) -> list[Problem]:
    """Values set by prompt flags bypass the schema's checks; check them against the same limits here (the
    schema's own metadata: one source)."""
    problems = []
    for name, value, key in (
        ("width", width, "width"),
        ("height", height, "height"),
        ("steps", steps, "sample_steps"),
        ("guidance_scale", guidance, "guidance_scale"),
    ):
        low, high = _SAMPLE_LIMITS[key]
        if not low <= value <= high:
            problems.append(
                loaded.problem(
                    f"{where}.prompt",
                    value,
                    f"{name} {value} is outside what the reference server accepts ({low}..{high})",
                    f"use a {name} in {low}..{high} (in the sample or its prompt flag)",
                )
            )
    if seed == -1:
        problems.append(
            loaded.problem(
                f"{where}.seed",
                seed,
                "seed -1 draws a random seed on both sides, so the image cannot be reproduced",
                "set the seed the training used (a fixed number)",
            )
        )
    return problems


def _thresholds(entry: ThresholdsEntry | None) -> Thresholds | None:
    if entry is None:
        return None
    return Thresholds(**{k: getattr(entry, k) for k in THRESHOLD_KEYS})


def _item_thresholds(item: SampleItemEntry) -> Thresholds | None:
    values = {k: getattr(item, k) for k in THRESHOLD_KEYS}
    if all(v is None for v in values.values()):
        return None
    return Thresholds(**values)


def _join(base: str, path: str) -> str:
    return os.path.normpath(os.path.join(base, os.path.expanduser(path)))


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "_"
