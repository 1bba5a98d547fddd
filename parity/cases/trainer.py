"""The trainer's pass: ai-toolkit's sampling rules, turning the `sample:` block into the settings of each sample.

Pure, no I/O. As ai-toolkit's sampler does (jobs/process/BaseSDTrainProcess.py sample, toolkit/config_modules.py
SampleItem): legacy `prompts:`, items without a prompt skipped while settings are read by position, per-item
overrides, `walk_seed` and carried-over seeds, `[trigger]`, the `--` prompt flags, control images in the order
its VAE and its text encoder get them. It accepts every sample the trainer renders; the schema's limits are the
trainer's. Each decision that changed a value leaves a note.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from parity.cases.prompt_flags import parse_prompt
from parity.cases.schema import LoadedSuite, SampleBlock, SampleItemEntry, TrainingEntry, bounds, outside
from parity.core.errors import Problem
from parity.facts.case import Settings
from parity.models import get_model

TRIGGER_TOKENS = ("[trigger]", "[name]")
_LIMITS = {f.name: (f.metadata.get("minimum"), f.metadata.get("maximum")) for f in fields(SampleItemEntry)}


@dataclass(frozen=True)
class TrainerSample:
    """One sample as the trainer draws it."""

    index: int
    where: str  # the item's key path in the case file, e.g. sample.samples[2]
    item: SampleItemEntry  # the item whose settings it takes (by position: see trainer_samples)
    requested: Settings
    control_keys: tuple[str, ...]  # the case-file key of each control image, in VAE order
    text_images: tuple[str, ...]  # what the trainer's text encoder gets (a legacy ctrl_img comes twice)
    notes: tuple[str, ...]


def inject_trigger(prompt: str, trigger: str | None) -> str:
    """ai-toolkit's inject_trigger_into_prompt as the sampler calls it (only when a trigger word is set)."""
    if trigger is None:
        return prompt
    for token in TRIGGER_TOKENS:
        prompt = prompt.replace(token, trigger)
    return prompt


def sample_items(sample: SampleBlock) -> tuple[tuple[SampleItemEntry, ...], str]:
    """The items and their key: `samples`, else the legacy `prompts` list."""
    if sample.samples is not None:
        return sample.samples, "sample.samples"
    return tuple(SampleItemEntry(prompt=p) for p in sample.prompts), "sample.prompts"


def trainer_samples(loaded: LoadedSuite) -> tuple[list[TrainerSample], list[Problem]]:
    """Every sample the trainer draws, and the problems that stop it (bad prompt flags, no prompt at all).

    ai-toolkit collects the prompts of the items that have one, then reads the i-th prompt's settings from the
    i-th *item*: a prompt-less item shifts the settings of the prompts after it.
    """
    sample = loaded.spec.sample
    items, items_key = sample_items(sample)
    prompts = [item.prompt for item in items if item.prompt is not None]
    problems: list[Problem] = []
    if not prompts:
        problems.append(loaded.problem(items_key, None, "no sample has a prompt", "add samples with a `prompt:` under `sample:`"))
    samples, seed = [], sample.seed
    multiple = get_model(loaded.spec.model).trainer_multiple_control_images
    for i, raw_prompt in enumerate(prompts):
        item, where = items[i], f"{items_key}[{i}]"
        seed, seed_note = _seed(sample, item, i, seed)
        notes = []
        if item.prompt != raw_prompt:
            notes.append(
                f"prompt {raw_prompt!r} belongs to a later item, but its settings come from {where}: ai-toolkit "
                "skips items without a prompt yet reads settings by position"
            )
        one, one_problems = _sample(loaded, i, where, item, raw_prompt, seed, seed_note, notes, multiple)
        samples.append(one)
        problems.extend(one_problems)  # a --seed flag sets this sample's seed only; an item's seed carries over
    return samples, problems


def lora_merged(samples: list[TrainerSample], training: TrainingEntry) -> bool:
    """ai-toolkit merges the LoRA in float32 when every sample shares one multiplier and the base model is
    neither quantized nor offloaded; otherwise it runs an unmerged branch per sample."""
    return len({s.requested.lora_scale for s in samples}) == 1 and not training.quantize and not training.layer_offloading


def _seed(sample: SampleBlock, item: SampleItemEntry, i: int, current: int) -> tuple[int, str]:
    """The seed of sample i and a note: walked, the item's own, or carried over from an earlier item."""
    note = ""
    if sample.walk_seed:
        current = sample.seed + i
        note = f"seed {current} = {sample.seed} + {i} (walk_seed)"
    if item.seed is not None:
        return item.seed, f"seed {item.seed} from the sample"
    if not sample.walk_seed and current != sample.seed:
        note = f"seed {current} carried over from an earlier sample (walk_seed is false)"
    return current, note


def _sample(
    loaded: LoadedSuite,
    i: int,
    where: str,
    item: SampleItemEntry,
    raw_prompt: str,
    seed: int,
    seed_note: str,
    notes: list,
    multiple: bool,
) -> tuple[TrainerSample, list[Problem]]:
    """One sample: trigger word, prompt flags over the item's settings over the block's, control images
    (`multiple`: the arch's has_multiple_control_images, see models.model.Model)."""
    spec, sample = loaded.spec, loaded.spec.sample
    text = inject_trigger(raw_prompt, spec.trigger_word)
    if text != raw_prompt:
        notes.append(f"[trigger] replaced by {spec.trigger_word!r}")
    parsed = parse_prompt(text)
    problems = _flag_problems(loaded, where, parsed)
    o = parsed.overrides

    def pick(flag: str, item_value: object, block_value: object) -> object:
        return o.get(flag, item_value if item_value is not None else block_value)

    if "seed" in o:
        seed, seed_note = int(o["seed"]), f"seed {int(o['seed'])} from the --seed/--d flag"
    requested_values = {
        "width": int(pick("width", item.width, sample.width)),
        "height": int(pick("height", item.height, sample.height)),
        "sample_steps": int(pick("steps", item.sample_steps, sample.sample_steps)),
        "guidance_scale": float(pick("guidance_scale", item.guidance_scale, sample.guidance_scale)),
        "seed": seed,
    }
    multiplier = float(pick("network_multiplier", item.network_multiplier, sample.network_multiplier))
    neg = pick("negative_prompt", item.neg, sample.neg)
    notes.extend([seed_note] if seed_note else [])
    notes.extend(_flag_notes(parsed))
    problems.extend(_check_flag_values(loaded, where, requested_values))
    controls, control_keys, text_images, control_notes = _control_images(
        item, o.get("ctrl_img"), str(loaded.path.parent), where, multiple
    )
    notes.extend(control_notes)
    requested = Settings(
        prompt=parsed.prompt,
        negative_prompt=neg,  # type: ignore[arg-type]
        width=requested_values["width"],
        height=requested_values["height"],
        seed=requested_values["seed"],
        steps=requested_values["sample_steps"],
        guidance_scale=requested_values["guidance_scale"],
        lora_scale=multiplier,
        control_images=controls,
    )
    return TrainerSample(i, where, item, requested, control_keys, text_images, tuple(notes)), problems


def _flag_problems(loaded: LoadedSuite, where: str, parsed) -> list[Problem]:
    return [
        loaded.problem(
            f"{where}.prompt",
            f"--{err.flag} {err.content}",
            f"flag --{err.flag} needs {err.expected} (ai-toolkit would stop here)",
            f"write --{err.flag} followed by {err.expected}",
        )
        for err in parsed.errors
    ]


def _flag_notes(parsed) -> list[str]:
    notes = []
    if parsed.flags:
        shown = " ".join(f"--{f} {c}".strip() for f, c in parsed.flags)
        notes.append(
            f"prompt flags read as ai-toolkit does: {shown}; the reference server would pass them to the "
            "text encoder verbatim, so parity sends the parsed prompt"
        )
    notes.extend(f"unknown flag --{flag} dropped from the prompt (ai-toolkit ignores it too)" for flag in parsed.unknown)
    return notes


def _check_flag_values(loaded: LoadedSuite, where: str, values: dict[str, float]) -> list[Problem]:
    """Values set by prompt flags bypass the schema's checks; check them against the same (trainer's) limits
    here, from the schema's metadata."""
    problems = []
    for key, value in values.items():
        low, high = _LIMITS[key]
        if outside(value, low, high):
            problems.append(
                loaded.problem(
                    f"{where}.prompt",
                    value,
                    f"{key} {value} is outside what the trainer accepts ({bounds(low, high)})",
                    f"use a {key} of {bounds(low, high)} (in the sample or its prompt flag)",
                )
            )
    return problems


def _control_images(
    item: SampleItemEntry, flag_ctrl: object, case_dir: str, where: str, multiple: bool
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], list[str]]:
    """Control images in the order the VAE gets them (as the trainer collects them), their keys, the list the
    trainer's text encoder gets (ctrl_img and ctrl_img_1 both, so a legacy ctrl_img comes twice), and notes.

    A single-picture arch (`multiple` false, ai-toolkit's qwen_image_edit) encodes the first of that list only
    and hands its pipeline `ctrl_img` alone (base_model.py generate_images, qwen_image_edit.py
    generate_single_image)."""
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
    if not multiple:
        if ordered and ctrl_img is None:
            notes.append(
                f"{ordered[0][1].rpartition('.')[2]} without ctrl_img: ai-toolkit's single-picture sampler hands its "
                "pipeline `ctrl_img` only, so the trainer fails on this sample (the stock call gets no image) and drew "
                "no preview for it; the reference server takes it as its control image. Write `ctrl_img:` as "
                "ai-toolkit's UI does"
            )
        text = text[:1]
    elif ctrl_img is not None and ctrl_img_1 is not None:
        notes.append(
            "legacy ctrl_img: the trainer's text encoder sees it as an extra picture (ctrl_img and ctrl_img_1 are "
            "both passed) while its VAE gets it once; the reference server sends it once"
        )
    if multiple and item.ctrl_img_1 is None and item.ctrl_img is None and flag_ctrl is None and item.ctrl_img_2 is not None:
        notes.append("ctrl_img_2 without ctrl_img_1 becomes \"Picture 1\" on both sides")
    return (
        tuple(join(case_dir, str(p)) for p, _ in ordered),
        tuple(k for _, k in ordered),
        tuple(join(case_dir, str(p)) for p in text),
        notes,
    )


def join(base: str, path: str) -> str:
    """A case-file path made absolute against the case file's folder (`~` expanded)."""
    return os.path.normpath(os.path.join(base, os.path.expanduser(path)))
