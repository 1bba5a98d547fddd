"""Baseline policy: when a stored image is compared with, written, or rewritten (the pytest-regressions rules).

Pinned suites: a missing baseline is written and the case fails, so a person looks at it; with the update flag
every baseline is rewritten and the case fails likewise; otherwise nothing is written. Preview suites hold
training previews, which parity never writes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from .atomic import sha256_of, write_text
from .errors import CaseRunError
from .images import save_png
from .resolve import Case
from .results import BaselineAction
from .thresholds import BaselineKind


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


def settle(case: Case, output: np.ndarray, update: bool, environment: dict | None = None) -> BaselineDecision:
    """Write the baseline if the rules say so (with the environment it was made in), and say what happened."""
    path = case.baseline
    if path is None:
        raise CaseRunError(f"{case.id} has no baseline path", "add `baseline:` to the sample")
    exists = os.path.isfile(path)
    if case.baseline_kind is BaselineKind.PREVIEW:
        if not exists:
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
    if not update and exists:
        return BaselineDecision(BaselineAction.COMPARED, path)
    if not path.lower().endswith(".png"):
        raise CaseRunError(
            f"pinned baselines are written as PNG, but the baseline path is {path}",
            "give the sample a `baseline:` ending in .png (or drop it to use <baselines>/<name>.png)",
        )
    save_png(output, path)
    if environment is not None:
        write_text(fingerprint_path(path), json.dumps(environment, indent=2, sort_keys=True) + "\n")
    return BaselineDecision(BaselineAction.REWRITTEN if update and exists else BaselineAction.WRITTEN, path)
