"""Turn an ai-toolkit training job folder into a parity suite (`parity import`).

A job folder, as the trainer writes it:
    <job>/config.yaml                           the job config; config.process[0] holds model, network, sample ...
    <job>/samples/<ms>__<step:09d>_<i>.<ext>    previews (`.tmp/` and `.thumbs/` beside them are ignored)
    <job>/<name>[_LoRA]_<step:09d>.safetensors  checkpoints; <name>[_LoRA].safetensors is the last step's
The `sample:` block is carried over as it is (parity's resolver applies ai-toolkit's rules); the previews of the
chosen step are copied into the baselines folder with their sha256; nothing is written unless every check
passes.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from parity.cases import yamlfile
from parity.core.atomic import sha256_of, write_text
from parity.core.errors import ParityError
from parity.facts import quant
from parity.models import MODELS, get_model

PREVIEW_NAME = re.compile(r"^(?P<ms>\d+)__(?P<step>\d{9})_(?P<index>\d+)\.(?P<ext>jpg|jpeg|png|webp)$", re.IGNORECASE)


def supported() -> dict[str, tuple[tuple[str, str], ...]]:
    """Trainer arch -> (what names the checkpoint in its `:tag` or name_or_path, parity model id), from the models'
    own `trainer_arch` and `name_markers`. A source says a model when the markers it holds (case aside) name one:
    version markers (with a digit) first, so that Qwen/Qwen-Image-2512 is 2512 and a name holding both 2509 and 2511
    says neither; the generic name only when no version marker matched. An arch with one model needs no name
    (ai-toolkit samples qwen_image_edit with its own code, whatever it loads)."""
    rules: dict[str, list[tuple[str, str]]] = {}
    for model in MODELS.values():
        rules.setdefault(model.trainer_arch, []).extend((marker, model.id) for marker in model.name_markers or ("",))
    return {arch: tuple(sorted(pairs, key=lambda p: not any(c.isdigit() for c in p[0]))) for arch, pairs in rules.items()}


class JobImportError(ParityError):
    """A job folder that cannot be imported; nothing was written."""

    def __init__(self, what: str, fix: str):
        self.what, self.fix = what, fix
        super().__init__(f"{what}. Fix: {fix}")


@dataclass(frozen=True)
class Preview:
    path: Path
    step: int
    index: int
    ms: int


@dataclass(frozen=True)
class StepChoice:
    step: int
    previews: tuple[Preview, ...]  # by sample index
    checkpoint: Path
    usable_steps: tuple[int, ...]
    notes: tuple[str, ...] = ()


@dataclass
class ImportResult:
    case_file: Path
    baselines: Path
    step: int
    checkpoint: Path
    samples: int
    notes: list[str] = field(default_factory=list)


def scan_previews(samples_dir: Path) -> dict[int, dict[int, list[Preview]]]:
    """Previews by step, then by sample index (several files for one pair are kept; newest chosen later)."""
    found: dict[int, dict[int, list[Preview]]] = {}
    if not samples_dir.is_dir():
        return found
    for entry in samples_dir.iterdir():
        match = PREVIEW_NAME.match(entry.name)
        if not match or not entry.is_file():
            continue  # .tmp/ and .thumbs/ are folders; anything else is not a preview
        preview = Preview(entry, int(match["step"]), int(match["index"]), int(match["ms"]))
        found.setdefault(preview.step, {}).setdefault(preview.index, []).append(preview)
    return found


def scan_checkpoints(job_dir: Path, name: str, last_step: int | None) -> dict[int, Path]:
    """Checkpoints by step; the final `<name>.safetensors` belongs to the last step."""
    pattern = re.compile(rf"^{re.escape(name)}(?:_LoRA)?(?:_(?P<step>\d{{9}}))?\.(?P<ext>[A-Za-z0-9]+)$")
    found: dict[int, Path] = {}
    for entry in job_dir.iterdir():
        match = pattern.match(entry.name)
        if not match or not entry.is_file():
            continue
        if match["step"] is not None:
            found[int(match["step"])] = entry
        elif last_step is not None:
            found.setdefault(last_step, entry)
    return found


def choose_step(
    previews: dict[int, dict[int, list[Preview]]], checkpoints: dict[int, Path], wanted: int | str, count: int
) -> StepChoice:
    """The step to import: `latest` is the highest step that has both previews and a checkpoint."""
    usable = tuple(sorted(set(previews) & set(checkpoints)))
    if wanted == "latest":
        if not usable:
            raise JobImportError(
                f"no step has both previews and a checkpoint (previews at {_steps(previews)}; checkpoints at "
                f"{_steps(checkpoints)})",
                "ai-toolkit keeps only the newest checkpoints (max_step_saves_to_keep); pick a step that has both, "
                "or pass --step with a checkpoint you still have",
            )
        step = usable[-1]
    else:
        step = int(wanted)
        if step not in previews:
            raise JobImportError(f"no previews for step {step} (previews at {_steps(previews)})", f"use --step with one of: {_steps(previews)}")
        if step not in checkpoints:
            raise JobImportError(
                f"no checkpoint for step {step} (checkpoints at {_steps(checkpoints)}; usable steps: {_steps(usable)})",
                "older checkpoints are pruned by ai-toolkit; use a step that has one, e.g. --step latest",
            )
    by_index = previews[step]
    notes = []
    chosen = []
    for index in sorted(by_index):
        files = sorted(by_index[index], key=lambda p: p.ms)
        if len(files) > 1:
            notes.append(
                f"sample {index} at step {step} has {len(files)} previews; took the newest, {files[-1].path.name}"
            )
        chosen.append(files[-1])
    indices = [p.index for p in chosen]
    if indices != list(range(count)):
        raise JobImportError(
            f"step {step} has previews for sample indices {indices}, but the sample block has {count} prompt(s)",
            "check that config.yaml is the config this job ran with (previews are matched to samples by index)",
        )
    return StepChoice(step, tuple(chosen), checkpoints[step], usable, tuple(notes))


def _steps(values) -> str:
    return ", ".join(str(s) for s in sorted(values)) or "none"


def read_job_config(path: Path) -> dict:
    if not path.is_file():
        raise JobImportError(f"job config not found: {path}", "ai-toolkit copies it to <training_folder>/<name>/config.yaml; or pass --config")
    try:
        data = yamlfile.load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, yamlfile.YamlTooLarge) as exc:
        raise JobImportError(f"job config {path} is not valid YAML: {str(exc).splitlines()[0]}", "fix or replace the file") from None
    try:
        config = data["config"]
        process = config["process"][0]
        return {"name": config["name"], "process": process}
    except (KeyError, IndexError, TypeError):
        raise JobImportError(
            f"job config {path} has no config.name and config.process[0]", "pass the ai-toolkit job config (job: extension)"
        ) from None


def model_id(process: dict, base_model: str | None = None) -> str:
    """The parity model id of a job: its arch (the UI's `arch:tag` has the tag the trainer strips) and, for an arch
    that samples several checkpoints alike, the checkpoint that `--base-model`, the tag, name_or_path or
    extras_name_or_path names; JobImportError with the fix when none names one, or when two name different ones."""
    model = process.get("model") or {}
    raw_arch = str(model.get("arch") or "")
    arch, _, tag = raw_arch.partition(":")
    base = str(model.get("name_or_path") or "")
    by_arch = supported()
    rules = by_arch.get(arch)
    listed = "; ".join(
        f"arch {a} with a base model whose name says {' or '.join(m for m, _ in r)} ({', '.join(i for _, i in r)})"
        if len(r) > 1
        else f"arch {a} ({r[0][1]})"
        for a, r in by_arch.items()
    )
    if rules is None:
        raise JobImportError(f"unsupported model: arch {raw_arch!r}, name_or_path {base!r}", f"parity supports {listed}")
    if len(rules) == 1:
        return rules[0][1]
    sources = {
        "--base-model": base_model or "",
        "model.arch's tag": tag,
        "model.name_or_path": base,
        "model.extras_name_or_path": str(model.get("extras_name_or_path") or ""),
    }
    said = {}
    for label, text in sources.items():
        held = [(marker, found) for marker, found in rules if marker in text.lower()]
        versions = {found for marker, found in held if any(c.isdigit() for c in marker)}
        named = versions or {found for _, found in held}
        if len(named) == 1:
            said[label] = named.pop()
    if len(set(said.values())) == 1:
        return next(iter(said.values()))
    fix = (
        "pass --base-model with the checkpoint the LoRA was trained on, by a folder or HF id that names it "
        f"({', '.join(dict.fromkeys(get_model(found).checkpoint for _, found in rules))})"
    )
    if said:
        what = ", ".join(f"{label} {sources[label]!r} says {found}" for label, found in said.items())
        raise JobImportError(f"the job names two different {arch} checkpoints: {what}", fix)
    raise JobImportError(
        f"cannot tell which {arch} checkpoint the job trained on: arch {raw_arch!r}, name_or_path {base!r}",
        f"{fix}; parity supports {listed}",
    )


def training_block(process: dict, step: int) -> dict:
    """What explains the previews but is not a sampling setting."""
    model, network = process.get("model") or {}, process.get("network") or {}
    train, save, sample = process.get("train") or {}, process.get("save") or {}, process.get("sample") or {}
    rank = network.get("linear", network.get("rank"))
    alpha = network.get("linear_alpha", network.get("alpha"))
    quantize, offloading = bool(model.get("quantize", False)), bool(model.get("layer_offloading", model.get("auto_memory", False)))
    quantize_te = bool(model.get("quantize_te", quantize))  # ModelConfig: quantize_te defaults to quantize
    block = {
        "step": step,
        "quantize": quantize,
        "qtype": _qtype(model, "qtype", offloading) if quantize else model.get("qtype"),
        "quantize_te": quantize_te,
        "qtype_te": _qtype(model, "qtype_te", offloading) if quantize_te else model.get("qtype_te"),
        "low_vram": bool(model.get("low_vram", False)),
        "dtype": train.get("dtype"),
        "layer_offloading": offloading,
        "transformer_single_file": str(model.get("name_or_path") or "").endswith(".safetensors"),
        "network_type": network.get("type", "lora"),
        "rank": int(rank) if rank is not None else 4,  # ai-toolkit's NetworkConfig default
        # recorded as the job wrote it (none: not written); the trainer uses alpha = rank for every Qwen network
        "alpha": float(alpha) if alpha is not None else None,
        "save_dtype": save.get("dtype", "float16"),
        "do_cfg_norm": bool(sample.get("do_cfg_norm", False)),
    }
    return {k: v for k, v in block.items() if v is not None}


def _qtype(model: dict, field: str, offloading: bool) -> str:
    """The quantization type the trainer runs (toolkit/config_modules.py ModelConfig): qfloat8 unless the job names
    one, float8 (torchao) instead of qfloat8 under layer_offloading (or auto_memory), and for the transformer an
    `accuracy_recovery_adapter` carried after a bar, as a qtype of the form `uint3|<adapter>` carries it. A qtype
    the trainer does not know is refused with the ones it knows."""
    written = model.get(field)
    qtype = str(written) if written else "qfloat8"
    if offloading and qtype == "qfloat8":
        qtype = "float8"
    adapter = model.get("accuracy_recovery_adapter")
    if field == "qtype" and adapter and "|" not in qtype:
        qtype = f"{qtype}|{adapter}"
    problem = quant.unknown(qtype, adapter_allowed=field == "qtype")
    if problem:
        raise JobImportError(
            f"model.{field}: {problem}",
            f"fix the job config's model.{field}; parity replays {quant.replayed_text()} and records the others",
        )
    return qtype


def _resolve_input(raw: str, bases: list[Path]) -> Path | None:
    path = Path(os.path.expanduser(raw))
    if path.is_absolute():
        return path if path.is_file() else None
    for base in bases:
        if (base / path).is_file():
            return (base / path).resolve()
    return None


def rewrite_controls(sample: dict, bases: list[Path], case_dir: Path) -> dict:
    """The sample block with control-image paths (keys and --ctrl_img flags) relative to the new case file."""
    missing: list[str] = []

    def rel(raw: str) -> str:
        found = _resolve_input(raw, bases)
        if found is None:
            missing.append(raw)
            return raw
        return os.path.relpath(found, case_dir)

    def item(entry: dict) -> dict:
        out = dict(entry)
        for key in ("ctrl_img", "ctrl_img_1", "ctrl_img_2", "ctrl_img_3"):
            if isinstance(out.get(key), str):
                out[key] = rel(out[key])
        if isinstance(out.get("prompt"), str):
            out["prompt"] = re.sub(r"(--ctrl_img\s+)(\S+)", lambda m: m.group(1) + rel(m.group(2)), out["prompt"])
        return out

    block = dict(sample)
    if isinstance(block.get("samples"), list):
        block["samples"] = [item(e) if isinstance(e, dict) else e for e in block["samples"]]
    if isinstance(block.get("prompts"), list):
        block["prompts"] = [item({"prompt": p})["prompt"] if isinstance(p, str) else p for p in block["prompts"]]
    if missing:
        tried = ", ".join(str(b) for b in bases)
        raise JobImportError(
            f"control image(s) not found: {', '.join(sorted(set(missing)))} (relative paths tried against {tried})",
            "copy the control images next to the job, or fix the paths in config.yaml",
        )
    return block


def count_prompts(sample: dict) -> int:
    items = sample.get("samples")
    if isinstance(items, list):
        return sum(1 for e in items if isinstance(e, dict) and e.get("prompt") is not None)
    return len(sample.get("prompts") or [])


def _check_suite(text: str, out: Path) -> None:
    """Resolve the suite as parity will, before anything is written (the previews are not copied yet)."""
    from parity.cases.resolve import resolve_suite
    from parity.cases.schema import load_suite
    from parity.core.errors import CaseFileError

    out.parent.mkdir(parents=True, exist_ok=True)
    probe = out.with_name(f".{out.name}.check.yaml")
    probe.write_text(text, encoding="utf-8")
    try:
        resolve_suite(load_suite(probe))
    except CaseFileError as exc:
        raise JobImportError(
            "the job's sample block cannot be used:\n" + str(exc).replace(str(probe), str(out)),
            "fix the sample block in the job's config.yaml",
        ) from None
    finally:
        probe.unlink(missing_ok=True)


def import_job(
    job_dir: str | Path,
    *,
    step: int | str = "latest",
    out: str | Path | None = None,
    baselines: str | Path | None = None,
    base_model: str | None = None,
    config: str | Path | None = None,
) -> ImportResult:
    """Write `out` (a case file) and copy the step's previews into `baselines`; every check comes first."""
    job_dir = Path(job_dir).resolve()
    if not job_dir.is_dir():
        raise JobImportError(f"job folder not found: {job_dir}", "pass <training_folder>/<job name>")
    config_path = Path(config).resolve() if config else job_dir / "config.yaml"
    job = read_job_config(config_path)
    name, process = job["name"], job["process"]
    model = model_id(process, base_model)
    sample = process.get("sample")
    if not isinstance(sample, dict):
        raise JobImportError(f"{config_path} has no sample block in config.process[0]", "the job must have sampled previews")
    out = Path(out or Path("cases") / f"{name}.yaml").resolve()
    baselines = Path(baselines or Path("baselines") / name).resolve()
    if out.exists():
        raise JobImportError(f"{out} exists; an import never overwrites a case file", "pass another --out or remove it")

    choice = _choose(job_dir, name, process, sample, step)
    case_dir = out.parent
    block = rewrite_controls(sample, [config_path.parent, job_dir, job_dir.parent, Path.cwd()], case_dir)
    entries = [_preview_entry(preview, baselines, case_dir) for preview in choice.previews]
    suite = {
        "model": model,
        "base_model": base_model or str((process.get("model") or {}).get("name_or_path") or "tiny"),
        **({"trigger_word": process["trigger_word"]} if process.get("trigger_word") is not None else {}),
        "loras": [{"path": os.path.relpath(choice.checkpoint, case_dir)}],
        "baseline_kind": "preview",
        "training": training_block(process, choice.step),
        "previews": entries,
        "sample": block,
    }
    header = (
        f"# Imported by `parity import` from {job_dir} (step {choice.step}; usable steps: {_steps(choice.usable_steps)}).\n"
        "# `sample:` is the job's block as it was; `previews:` are the copied training previews by sample index.\n"
    )
    text = header + yaml.safe_dump(suite, sort_keys=False, allow_unicode=True, width=120)
    _check_suite(text, out)

    baselines.mkdir(parents=True, exist_ok=True)
    for preview, entry in zip(choice.previews, entries):
        target = case_dir / entry["file"]
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(preview.path, tmp)
        os.replace(tmp, target)
    write_text(out, text)
    return ImportResult(out, baselines, choice.step, choice.checkpoint, len(entries), list(choice.notes))


def _choose(job_dir: Path, name: str, process: dict, sample: dict, step: int | str):
    """The step to import: its previews and its checkpoint (a .safetensors file: pickles are never loaded)."""
    last_step = (process.get("train") or {}).get("steps")
    previews = scan_previews(job_dir / "samples")
    if not previews:
        raise JobImportError(f"no previews under {job_dir / 'samples'}", "the job must have written samples (<ms>__<step>_<i>.<ext>)")
    checkpoints = scan_checkpoints(job_dir, name, int(last_step) if last_step else max(previews))
    choice = choose_step(previews, checkpoints, step, count_prompts(sample))
    if choice.checkpoint.suffix != ".safetensors":
        raise JobImportError(
            f"checkpoint {choice.checkpoint.name} is not a .safetensors file (pickled checkpoints are never loaded)",
            "save the LoRA as safetensors (ai-toolkit's default save format)",
        )
    return choice


def _preview_entry(preview, baselines: Path, case_dir: Path) -> dict:
    """A `previews:` entry: where the copy goes (relative to the case file), the original's hash and place."""
    target = baselines / f"{preview.index}{preview.path.suffix.lower()}"
    return {
        "file": os.path.relpath(target, case_dir),
        "sha256": sha256_of(str(preview.path)),
        "source": str(preview.path),
        "step": preview.step,
    }


