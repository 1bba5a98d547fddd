"""Turn a checked case file into cases: the trainer's pass, then the server's pass, then what to compare with.

Pure functions, no I/O. The trainer's pass (parity/cases/trainer.py) decides each sample's settings as
ai-toolkit's sampler does; the server's pass (parity/cases/server.py) snaps them to what the reference server
renders and says what it refuses. Each case keeps both the *requested* settings (the trainer's) and the
*effective* ones (what the reference wiring runs), with a note for every decision that changed a value. This
module adds what neither side decides: names, baselines, thresholds, and the suite-level checks.
"""

from __future__ import annotations

import os
from dataclasses import fields, replace

from parity.cases.schema import LoadedSuite, SampleItemEntry, ThresholdsEntry, TrainingEntry
from parity.cases.server import refusals, server_settings
from parity.cases.trainer import TrainerSample, join, lora_merged, trainer_samples
from parity.core.errors import CaseFileError, Problem
from parity.core.thresholds import THRESHOLD_KEYS, BaselineKind, Thresholds, combine
from parity.facts import quant
from parity.facts.case import Case, LoraRef, PreviewFacts, TrainingFacts
from parity.models import get_model
from parity.models.model import Model


def resolve_suite(loaded: LoadedSuite) -> list[Case]:
    """All cases of a suite, or CaseFileError listing every problem found while resolving."""
    spec = loaded.spec
    model = get_model(spec.model)
    problems = _suite_problems(loaded, model)
    samples, trainer_problems = trainer_samples(loaded)
    problems.extend(trainer_problems)
    cases, seen = [], {}
    for one in samples:
        problems.extend(_sample_problems(loaded, model, one, seen))
        case, baseline_problems = _case(loaded, model, one)
        cases.append(case)
        problems.extend(baseline_problems)
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
    merged = lora_merged(samples, spec.training or TrainingEntry())
    return [replace(c, preview=replace(c.preview, lora_merged=merged)) for c in cases]


def _suite_problems(loaded: LoadedSuite, model: Model) -> list[Problem]:
    problems = _qtype_problems(loaded)
    if len(loaded.spec.loras) <= model.max_loras:
        return problems
    return [
        *problems,
        loaded.problem(
            "loras",
            len(loaded.spec.loras),
            f"{model.id} applies at most {model.max_loras} LoRA (the reference server fuses only the first)",
            "list one LoRA per suite; split the others into their own case files",
        ),
    ]


def _qtype_problems(loaded: LoadedSuite) -> list[Problem]:
    """A qtype the trainer would fail on (as `parity import` refuses it): an unknown name, a bad adapter suffix, an
    adapter on the text encoder's qtype."""
    training = loaded.spec.training
    problems = []
    for field, adapter_allowed in (("qtype", True), ("qtype_te", False)):
        value = getattr(training, field, None) if training is not None else None
        problem = quant.unknown(value, adapter_allowed) if value is not None else None
        if problem:
            fix = f"write the job config's model.{field}; parity replays {quant.replayed_text()}"
            problems.append(loaded.problem(f"training.{field}", value, problem, fix))
    return problems


def _sample_problems(loaded: LoadedSuite, model: Model, one: TrainerSample, seen: dict[str, int]) -> list[Problem]:
    """What neither side can render (no control image for an edit model, too many), and duplicate names."""
    problems = []
    controls = one.requested.control_images
    if not controls and model.requires_control_image:
        problems.append(
            loaded.problem(
                one.where,
                None,
                f"{model.id} needs at least one control image",
                "add `ctrl_img_1:` (and ctrl_img_2/3 for more pictures) to the sample",
            )
        )
    if controls and not model.max_control_images:
        problems.append(
            loaded.problem(
                one.where,
                len(controls),
                f"{model.id} is text to image: it takes no control image (the reference server ignores one, the "
                "trainer refuses one)",
                "remove ctrl_img/ctrl_img_1..3 from the sample, or name an edit model in `model:`",
            )
        )
    elif len(controls) > model.max_control_images:
        problems.append(_too_many_controls(loaded, model, one))
    name = _name(one)
    if name in seen:
        problems.append(
            loaded.problem(f"{one.where}.name", name, f"name already used by sample {seen[name]}", "give each sample its own name")
        )
    seen[name] = one.index
    return problems


def _too_many_controls(loaded: LoadedSuite, model: Model, one: TrainerSample) -> Problem:
    """More control images than the server's class takes: named at the first one too many, with the fix."""
    most = model.max_control_images
    key = one.control_keys[most]
    extra = ", ".join(k.rpartition(".")[2] for k in one.control_keys[most:])
    if most == 1:
        what = (
            f"{model.id} takes one control image, this sample has {len(one.control_keys)}: the reference server's "
            f"{model.pipeline} reads a single `control_image`, and a request with more makes it fail"
        )
        fix = (
            f"remove {extra} and keep one control image, as `ctrl_img` (the only key ai-toolkit's qwen_image_edit "
            "sampler reads); for several pictures use `model: qwen_image_edit_plus` (Qwen-Image-Edit-2509) or "
            "qwen_image_edit_plus_2511"
        )
    else:
        what = f"{model.id} takes at most {most} control images, this sample has {len(one.control_keys)}"
        fix = f"keep at most {most} (remove {extra})"
    return loaded.problem(key, getattr(one.item, key.rpartition(".")[2]), what, fix)


def _case(loaded: LoadedSuite, model: Model, one: TrainerSample) -> tuple[Case, list[Problem]]:
    """The case of one sample: both sides' settings, what it is compared with, under which limits."""
    spec, sample, case_dir = loaded.spec, loaded.spec.sample, str(loaded.path.parent)
    loras = tuple(LoraRef(join(case_dir, e.path), e.network_multiplier) for e in spec.loras)
    kind = BaselineKind(spec.baseline_kind)
    training = training_facts(spec.training)
    suite_thresholds, sample_thresholds = _thresholds(spec.thresholds), _item_thresholds(one.item)
    baselines_dir = join(case_dir, spec.baselines or os.path.join("..", "baselines", loaded.name))
    requested = one.requested
    effective, server_notes = server_settings(requested, model, loras, requested.lora_scale)
    imported = spec.previews[one.index] if one.index < len(spec.previews) else None
    baseline, problems = _baseline(loaded, one, kind, baselines_dir, imported)
    own_baseline = imported is None or one.item.baseline is not None
    name = _name(one)
    trainer_size = model.trainer_size
    case = Case(
        id=f"{loaded.name}::{name}",
        suite=loaded.name,
        suite_file=str(loaded.path),
        index=one.index,
        name=name,
        model=model.id,
        base_model=spec.base_model,
        base_dir=case_dir,
        trigger_word=spec.trigger_word,
        loras=loras,
        requested=requested,
        effective=effective,
        notes=(*one.notes, *server_notes, *_alpha_notes(training, bool(loras))),
        baseline=baseline,
        baseline_kind=kind,
        thresholds=combine(kind, suite_thresholds, sample_thresholds),
        suite_thresholds=suite_thresholds,
        sample_thresholds=sample_thresholds,
        baselines_dir=baselines_dir,
        do_cfg_norm=training.do_cfg_norm if training.do_cfg_norm is not None else sample.do_cfg_norm,
        control_keys=one.control_keys,
        baseline_key=f"{one.where}.baseline" if own_baseline else f"previews[{one.index}].file",
        baseline_named=one.item.baseline is not None,
        baseline_sha256=None if own_baseline else imported.sha256,
        baseline_origin=imported.source if imported is not None else None,
        training_step=imported.step if imported is not None and imported.step is not None else training.step,
        training=training,
        allow_partial_lora=spec.allow_partial_lora,
        offload=spec.offload,
        refused=refusals(requested, effective),
        preview=PreviewFacts(
            width=trainer_size(requested.width),  # the trainer's own bucket divisor (32 for every Qwen arch)
            height=trainer_size(requested.height),
            text_images=one.text_images,
            lora_merged=False,  # decided once every sample's multiplier is known (resolve_suite)
            negative_prompt=requested.negative_prompt if isinstance(requested.negative_prompt, str) else "",
            format=sample.format,
        ),
    )
    return case, problems


def training_facts(entry: TrainingEntry | None) -> TrainingFacts:
    """The `training:` block as the later layers read it (the same fields, no YAML type)."""
    entry = entry or TrainingEntry()
    facts = {f.name: getattr(entry, f.name) for f in fields(TrainingFacts)}
    if facts["quantize_te"] is None:  # toolkit/config_modules.py ModelConfig: quantize_te defaults to quantize
        facts["quantize_te"] = facts["quantize"]
    return TrainingFacts(**facts)


def _alpha_notes(training: TrainingFacts, lora: bool) -> tuple[str, ...]:
    """A job whose linear_alpha differs from its rank: ai-toolkit did not use it (toolkit/lora_special.py: every Qwen
    arch is a transformer model, so the network is PEFT-format, and then alpha = lora_dim)."""
    if not lora or training.alpha is None or not training.rank or training.alpha == training.rank:
        return ()
    return (
        (f"the job's linear_alpha {training.alpha:g} (rank {training.rank}) was not used by the trainer: ai-toolkit builds "
        "every Qwen network in PEFT format with alpha = rank, so its previews were drawn at strength = the sample's "
        "multiplier (and the saved file has no .alpha keys)"),
    )


def _baseline(loaded: LoadedSuite, one: TrainerSample, kind: BaselineKind, baselines_dir: str, imported) -> tuple[str | None, list[Problem]]:
    """The image a case is compared with: the sample's own, an imported preview, or its pinned file."""
    case_dir = str(loaded.path.parent)
    if one.item.baseline is not None:
        return join(case_dir, one.item.baseline), []
    if imported is not None:
        return join(case_dir, imported.file), []
    if kind is BaselineKind.PINNED:
        return os.path.join(baselines_dir, f"{_safe(_name(one))}.png"), []
    return None, [
        loaded.problem(
            one.where,
            None,
            "a preview suite needs the training preview of every sample",
            "add `baseline: path/to/<ms>__<step>_<i>.jpg` to the sample (or use `parity import`)",
        )
    ]


def _name(one: TrainerSample) -> str:
    return one.item.name if one.item.name is not None else str(one.index)


def _thresholds(entry: ThresholdsEntry | None) -> Thresholds | None:
    if entry is None:
        return None
    return Thresholds(**{k: getattr(entry, k) for k in THRESHOLD_KEYS})


def _item_thresholds(item: SampleItemEntry) -> Thresholds | None:
    values = {k: getattr(item, k) for k in THRESHOLD_KEYS}
    if all(v is None for v in values.values()):
        return None
    return Thresholds(**values)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "_"
