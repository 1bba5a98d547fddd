"""The project's own exceptions: every error a user can meet says what, where and what to do."""

from __future__ import annotations

from dataclasses import dataclass


class ParityError(Exception):
    """Base class: an error parity explains itself (no traceback for the user)."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a case file: where it is, what was found, and the fix."""

    file: str
    field: str
    value: object
    message: str
    fix: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        shown = _show(self.value)
        return f"{where}: {self.field}: {self.message} (got {shown}). Fix: {self.fix}"


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


class CaseFileError(ParityError):
    """A case file that cannot be used; carries every problem found in it, and the LoRAs it names (so that the
    report's LoRA audit can still say what they are)."""

    def __init__(self, problems: list[Problem], loras: tuple[str, ...] = (), training: object = None):
        self.problems = list(problems)
        self.loras = loras  # the LoRA files the case file names, absolute (empty when it did not parse)
        self.training = training  # its `training:` block (parity.facts.case.TrainingFacts), when it parsed
        super().__init__("\n".join(str(p) for p in self.problems))


class CaseRunError(ParityError):
    """A case that could not be run or compared; the rest of the suite goes on."""

    def __init__(self, what: str, fix: str):
        self.what = what
        self.fix = fix
        super().__init__(f"{what}. Fix: {fix}")


class QuantizationRefused(CaseRunError):
    """The trainer's quantization refused by the checks that run before it changes the model (library, adapter,
    offload hooks): the model is as it was, less the previous LoRA, so the engine keeps it loaded."""


class ModelLoadError(ParityError):
    """A base model or LoRA that cannot be loaded (offline, missing, wrong format)."""

    def __init__(self, what: str, fix: str):
        self.what = what
        self.fix = fix
        super().__init__(f"{what}. Fix: {fix}")


class LoraRefused(ModelLoadError):
    """A LoRA refused by the checks that run before any of it reaches the model (file, names, shapes, values):
    the model is as it was, less the previous LoRA, so the engine keeps it loaded for the next case."""
