"""The run's LoRA audit: one entry per LoRA file and model, from the case files that name it (what the file holds,
whether the server's loader takes it) and the cases that loaded it (how its modules meet the model's linears, whether
its weights change anything)."""

from __future__ import annotations

from dataclasses import dataclass, field

from parity.cases import loraaudit, lorafile
from parity.cases.loraaudit import LoraAudit
from parity.core.errors import ModelLoadError
from parity.facts.case import Case, TrainingFacts


@dataclass
class LoraBook:
    """Audits by LoRA path: the file's own, replaced by one per model once a case loaded it."""

    _files: dict[str, LoraAudit] = field(default_factory=dict)
    _models: dict[str, dict[str, LoraAudit]] = field(default_factory=dict)

    def saw_file(self, path: str, training: TrainingFacts | None = None) -> None:
        """A LoRA a case file names: its file-level audit, unless one is already kept."""
        if path in self._files:
            return
        try:
            self._files[path] = loraaudit.audit(lorafile.inspect(path), training)
        except ModelLoadError as exc:
            self._files[path] = loraaudit.unreadable(path, exc.what)

    def saw_case(self, case: Case) -> None:
        for ref in case.loras:
            self.saw_file(ref.path, case.training)

    def loaded(self, case: Case, facts) -> None:
        """What loading the case's LoRA into its model showed (parity.render.lora.LoadedLora), once per model."""
        if facts is None or facts.path not in self._files:
            return
        by_model = self._models.setdefault(facts.path, {})
        if case.model not in by_model:
            by_model[case.model] = loraaudit.with_model(
                self._files[facts.path], case.model, facts.modules_matched, facts.linears_in_model, facts.unmatched,
                facts.changes_nothing,
            )

    def entries(self) -> tuple[LoraAudit, ...]:
        found = []
        for path, entry in self._files.items():
            found.extend(self._models[path].values() if path in self._models else (entry,))
        return tuple(found)
