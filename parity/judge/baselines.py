"""Baseline policy: which stored image a case is compared with, and when one is written (pytest-regressions' rules,
one set per environment class).

Pinned baselines are outputs of parity, and their last bits belong to the machine class that made them
(parity/core/envclass.py). A suite keeps one set per class: the baseline `<folder>/<name>.png` of a case lives at
`<folder>/<class key>/<name>.png`, with `<name>.png.env.json` beside it (the environment it was made in). A run
compares with its own class's set, else with the nearest set of its family (another CPU kernel set, another GPU
compute capability), and says so. Writing: a new case in this class's set is written and fails, so a person
looks; `update` rewrites this class's set and fails likewise; a class with no set of its own, where other classes
have one, is reported once with the command that makes it, and nothing is written. Training previews (preview
suites) belong to no class and are never written.
"""

from __future__ import annotations

import enum
import json
import os
from dataclasses import dataclass

import numpy as np

from parity.core import envclass
from parity.core.atomic import sha256_of, write_text
from parity.core.envclass import EnvClass
from parity.core.errors import CaseRunError
from parity.core.images import save_png
from parity.core.thresholds import BaselineKind
from parity.facts.case import Case


class BaselineAction(enum.Enum):
    COMPARED = "compared"  # an existing baseline was compared with
    WRITTEN = "written"  # a missing pinned baseline was written (the case fails: a person must look)
    REWRITTEN = "rewritten"  # rewritten on request (--update); the case fails likewise
    NO_SET = "no set"  # this environment class has no set while others have: nothing compared, nothing written
    NONE = "none"  # nothing happened to a baseline (the case errored first)


@dataclass(frozen=True)
class BaselineChoice:
    """Which file a case is compared with (or will be written to), and the class of the set it belongs to."""

    path: str
    run_class: EnvClass
    set_class: EnvClass | None  # None: a training preview, or a file of the unkeyed layout of parity < 0.2
    exact: bool  # the set is this run's own class
    missing_set: bool = False  # no set for this class's family; `others` have one
    others: tuple[EnvClass, ...] = ()  # classes with a baseline for this case
    named: bool = False  # the file the case names itself (`baseline:`): compared as it is, written only by --update

    @property
    def fallback(self) -> bool:
        return not self.exact and not self.missing_set

    def describe(self) -> str:
        """One line for the report and the failure message."""
        if self.named:
            return f"the file the case names ({self.path})"
        if self.set_class is None and not self.exact:
            return f"an unkeyed baseline (older layout; move it into {self.run_class.key}/) for {self.run_class.key}"
        if self.set_class is None:
            return "the training preview"
        if self.exact:
            return f"set {self.set_class.key} (this environment's own)"
        return f"set {self.set_class.key}, the nearest to this environment ({self.run_class.key}), which has none"


@dataclass(frozen=True)
class BaselineDecision:
    action: BaselineAction
    path: str

    @property
    def written(self) -> bool:
        return self.action in (BaselineAction.WRITTEN, BaselineAction.REWRITTEN)


def fingerprint_path(baseline: str) -> str:
    """Where the environment a pinned baseline was made in is recorded."""
    return baseline + ".env.json"


def read_fingerprint(baseline: str) -> dict | None:
    try:
        with open(fingerprint_path(baseline), encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def set_path(baseline: str, env: EnvClass) -> str:
    """The file of one class's set for a case whose baseline is `<folder>/<name>`."""
    folder, name = os.path.split(baseline)
    return os.path.join(folder, env.key, name)


def class_folders(folder: str) -> list[EnvClass]:
    """The classes that have a set (a folder named by their key) in a baselines folder."""
    if not os.path.isdir(folder):
        return []
    return [env for entry in sorted(os.listdir(folder)) if (env := envclass.parse(entry)) and os.path.isdir(os.path.join(folder, entry))]


def unused(cases: list[Case]) -> tuple[str, ...]:
    """Pinned baselines no case uses any more: images in a suite's baselines folder (or one of its class sets)
    whose name no case of the suites has. `cases` must be every case of those suites, not a selection. Reported,
    never deleted: a renamed or removed sample leaves its images behind, and only a person knows."""
    used: dict[str, set[str]] = {}
    for case in cases:
        if case.baseline_kind is BaselineKind.PINNED and case.baselines_dir:
            used.setdefault(case.baselines_dir, set())
            if case.baseline and os.path.dirname(case.baseline) == case.baselines_dir:
                used[case.baselines_dir].add(os.path.basename(case.baseline))
    found = []
    for folder, names in sorted(used.items()):
        for sub in (folder, *(os.path.join(folder, env.key) for env in class_folders(folder))):
            if not os.path.isdir(sub):
                continue
            for entry in sorted(os.listdir(sub)):
                if entry.lower().endswith(".png") and entry not in names and os.path.isfile(os.path.join(sub, entry)):
                    found.append(os.path.join(sub, entry))
    return tuple(found)


def choose(case: Case, run_class: EnvClass) -> BaselineChoice:
    """The baseline a case is compared with in an environment of `run_class` (nothing is written here)."""
    if case.baseline is None:
        raise CaseRunError(f"{case.id} has no baseline path", "add `baseline:` to the sample")
    if case.baseline_kind is BaselineKind.PREVIEW:
        return BaselineChoice(case.baseline, run_class, None, exact=True)
    if case.baseline_named:  # a path the user wrote is that file, never a key into the class sets
        return BaselineChoice(case.baseline, run_class, None, exact=True, named=True)
    folder = os.path.dirname(case.baseline)
    sets = class_folders(folder)
    own = set_path(case.baseline, run_class)
    with_file = [env for env in sets if os.path.isfile(set_path(case.baseline, env))]
    if os.path.isfile(own) or run_class in sets:
        return BaselineChoice(own, run_class, run_class, exact=True, others=tuple(with_file))
    near = envclass.nearest(run_class, with_file)
    if near is not None:
        return BaselineChoice(set_path(case.baseline, near), run_class, near, exact=False, others=tuple(with_file))
    if os.path.isfile(case.baseline):  # the unkeyed layout: one file per case, its class in its .env.json
        legacy = _legacy_class(case.baseline)
        if legacy is None or legacy.family == run_class.family:
            return BaselineChoice(case.baseline, run_class, legacy, exact=False, others=tuple(with_file))
        with_file.append(legacy)
    if with_file or sets:
        return BaselineChoice(own, run_class, None, exact=False, missing_set=True, others=tuple(with_file or sets))
    return BaselineChoice(own, run_class, run_class, exact=True)  # a new suite: its first set is this class's


def missing_set_message(choice: BaselineChoice, folder: str) -> str:
    """The one line that says a class has no set, and how to make one."""
    others = ", ".join(env.key for env in choice.others) or "other classes"
    return (
        f"no baseline set for this environment ({choice.run_class.key}) in {folder}; it has sets for {others}. "
        f"Make one: rerun with --update (pytest: --parity-update), review the images in "
        f"{os.path.join(folder, choice.run_class.key)}/, and commit them"
    )


def settle(
    case: Case, choice: BaselineChoice, output: np.ndarray, update: bool, environment: dict | None = None
) -> BaselineDecision:
    """Write the baseline if the rules say so (with the environment it was made in), and say what happened."""
    path = choice.path
    if choice.named:
        return _settle_named(case, path, output, update, environment)
    for candidate in dict.fromkeys((path, set_path(case.baseline, choice.run_class) if case.baseline else path)):
        _check_not_taken(candidate, case)
    if case.baseline_kind is BaselineKind.PREVIEW:
        if not os.path.isfile(path):
            raise CaseRunError(
                f"training preview not found: {path}", "point `baseline:` at the preview under <job>/samples/"
            )
        if case.baseline_sha256 and sha256_of(path) != case.baseline_sha256:
            raise CaseRunError(
                f"training preview {path} changed since it was imported (sha256 {sha256_of(path)[:12]}…, "
                f"recorded {case.baseline_sha256[:12]}…)",
                "restore the file, or import the job again (`parity import`) if the change is intended",
            )
        return BaselineDecision(BaselineAction.COMPARED, path)
    own = set_path(case.baseline, choice.run_class) if case.baseline else path
    if update:
        existed = os.path.isfile(own)
        _write(own, output, environment)
        return BaselineDecision(BaselineAction.REWRITTEN if existed else BaselineAction.WRITTEN, own)
    if choice.missing_set:
        return BaselineDecision(BaselineAction.NO_SET, path)
    if os.path.isfile(path):
        return BaselineDecision(BaselineAction.COMPARED, path)
    _write(path, output, environment)
    return BaselineDecision(BaselineAction.WRITTEN, path)


def _settle_named(case: Case, path: str, output: np.ndarray, update: bool, environment: dict | None) -> BaselineDecision:
    """A baseline file the case file names: compared as it is; written there only with --update; a folder or a
    missing file is the case's error, naming the path (an unreadable file is refused when it is opened)."""
    _check_not_taken(path, case)
    if update:
        existed = os.path.isfile(path)
        _write(path, output, environment)
        return BaselineDecision(BaselineAction.REWRITTEN if existed else BaselineAction.WRITTEN, path)
    if os.path.isfile(path):
        return BaselineDecision(BaselineAction.COMPARED, path)
    raise CaseRunError(
        f"the baseline {path} that {case.id} names ({case.baseline_key}) does not exist; nothing was written",
        "check the path (it is relative to the case file), or rerun with --update (pytest: --parity-update) to write "
        "this run's output there, and review it",
    )


def _check_not_taken(path: str, case: Case) -> None:
    """A baseline path (or the file recorded beside it) that exists but is not a file is never written to or
    read: the case stops with what is there and the fix, whether or not --update was given."""
    for taken in (path, fingerprint_path(path)):
        if os.path.exists(taken) and not os.path.isfile(taken):
            kind = "a folder" if os.path.isdir(taken) else "not a regular file"
            raise CaseRunError(
                f"the baseline path {taken} of {case.id} is {kind}",
                "move it away, or give the sample another `baseline:`" + (f" ({case.baseline_key})" if case.baseline_key else ""),
            )


def _write(path: str, output: np.ndarray, environment: dict | None) -> None:
    if not path.lower().endswith(".png"):
        raise CaseRunError(
            f"pinned baselines are written as PNG, but the baseline path is {path}",
            "give the sample a `baseline:` ending in .png (or drop it to use <baselines>/<name>.png)",
        )
    if os.path.isdir(path):
        raise CaseRunError(f"the baseline path {path} is a folder", "remove the folder or name another `baseline:` file")
    save_png(output, path)
    if environment is not None:
        write_text(fingerprint_path(path), json.dumps(environment, indent=2, sort_keys=True) + "\n")


def _legacy_class(path: str) -> EnvClass | None:
    recorded = read_fingerprint(path)
    if not recorded:
        return None
    return envclass.from_device_info(recorded)
