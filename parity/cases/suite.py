"""Find case files, load them into cases, and check that every file a case names exists."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from parity.cases import lorafile
from parity.cases.resolve import resolve_suite, training_facts
from parity.cases.schema import LoadedSuite, load_suite
from parity.cases.trainer import join
from parity.core.errors import CaseFileError, CaseRunError, ModelLoadError, Problem
from parity.core.images import open_with_notes
from parity.core.thresholds import BaselineKind
from parity.facts.case import Case

CASE_SUFFIXES = (".yaml", ".yml")


def discover(paths: list[str] | tuple[str, ...]) -> list[Path]:
    """Case files named by `paths`: files as given, folders searched recursively; sorted, no duplicates."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix in CASE_SUFFIXES and p.is_file()))
        else:
            found.append(path)
    unique: dict[str, Path] = {}
    for p in found:
        unique.setdefault(os.path.normpath(str(p)), p)
    return list(unique.values())


@dataclass(frozen=True)
class SuiteLoad:
    """The cases of one case file, or the error that made it unusable."""

    path: Path
    cases: tuple[Case, ...]
    error: CaseFileError | None = None


def load_cases(path: str | Path, decode_images: bool = False) -> list[Case]:
    """Load, resolve and check one case file; CaseFileError with every problem otherwise. `decode_images`
    (`parity validate`): also decode every control image as the run will; a run leaves that to each case, so
    that one unreadable image is one error row and the file's other cases still run."""
    loaded = load_suite(path)
    loras = tuple(join(str(loaded.path.parent), entry.path) for entry in loaded.spec.loras)
    problems = lora_problems(loaded, loras)
    try:
        cases = resolve_suite(loaded)
        problems += check_files(loaded, cases, decode_images)
    except CaseFileError as exc:
        problems += exc.problems
    if problems:
        raise CaseFileError(problems, loras, training_facts(loaded.spec.training))
    return cases


def load_all(paths: list[Path], decode_images: bool = False) -> list[SuiteLoad]:
    """Each case file's cases; a bad file is kept as an error and never stops the others."""
    result = []
    for path in paths:
        try:
            result.append(SuiteLoad(path, tuple(load_cases(path, decode_images))))
        except CaseFileError as exc:
            result.append(SuiteLoad(path, (), exc))
    return result


def lora_problems(loaded: LoadedSuite, loras: tuple[str, ...]) -> list[Problem]:
    """The loader's own first check of each LoRA (no torch): a file it cannot read, or one the reference server's
    loader refuses (its kind of network, dtype, keys and shapes), said as the server's behaviour and the fix."""
    problems: list[Problem] = []
    for i, path in enumerate(loras):
        try:
            lorafile.check(path)
        except ModelLoadError as exc:
            problems.append(loaded.problem(f"loras[{i}].path", path, exc.what, exc.fix))
    return problems


def check_files(loaded: LoadedSuite, cases: list[Case], decode_images: bool = False) -> list[Problem]:
    """Problems for control images, preview baselines and local base models that do not exist."""
    problems: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    for case in cases:
        for path, key in zip(case.effective.control_images, case.control_keys):
            if (path, key) in seen:
                continue
            seen.add((path, key))
            if not os.path.isfile(path):
                problems.append(
                    loaded.problem(key, path, "control image not found", "check the path (relative to the case file)")
                )
                continue
            if not decode_images:
                continue
            try:  # decoded as `run` decodes it: what run would refuse, validate refuses
                open_with_notes(path, "control image")
            except CaseRunError as exc:
                problems.append(loaded.problem(key, path, exc.what, exc.fix))
        if case.baseline_kind is BaselineKind.PREVIEW and case.baseline and not os.path.isfile(case.baseline):
            problems.append(
                loaded.problem(
                    case.baseline_key,
                    case.baseline,
                    "training preview not found",
                    "point `baseline:` at the preview file under <training_folder>/<job>/samples/",
                )
            )
    base = loaded.spec.base_model
    if cases and base != "tiny" and _looks_like_path(base):
        folder = os.path.normpath(os.path.join(str(loaded.path.parent), os.path.expanduser(base)))
        if not os.path.isdir(folder):
            problems.append(
                loaded.problem(
                    "base_model",
                    base,
                    "no such folder",
                    "point base_model at a diffusers folder (with model_index.json), or use `tiny` or an HF id",
                )
            )
    return problems


def _looks_like_path(value: str) -> bool:
    """Explicit paths; anything else may be an HF id (checked when the model is loaded)."""
    return value.startswith((".", "/", "~"))
