"""The LoRA audit: one line per LoRA that says, before any pixel, whether the served LoRA is the trained LoRA.

Pure: built from what the file holds (parity.cases.lorafile), what the job config says (the `training:` block) and,
once a case has loaded the model, how the file's modules meet the model's linears and whether its weights change
anything (counted by parity.render.lora). The report shows it in its header, results.json keeps it under `loras`.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, replace

from parity.cases.lorafile import FLOAT8, FORMATS, LoraFile, LoraFormat
from parity.facts.case import TrainingFacts

PEFT_FORMATS = (LoraFormat.PEFT_LORA, LoraFormat.LOKR, LoraFormat.DORA, LoraFormat.FULL_RANK)


class ServerAction(enum.Enum):
    APPLIES_ALL = "applies all of it"
    APPLIES_PART = "applies part of it and drops the rest"
    REFUSES = "refuses it"
    NOT_CHECKED = "loads it (its modules are checked against the model when a case loads it)"


@dataclass(frozen=True)
class LoraAudit:
    """One LoRA as both sides see it."""

    path: str
    format: str  # the kind of network (lorafile.LoraFormat), or "unreadable"
    trainer_setting: str  # the ai-toolkit setting that writes such a file
    dtype: str
    rank: str
    alpha_trainer: str  # the alpha ai-toolkit sampled the previews with
    alpha_server: str  # the alpha the reference server's loader applies
    modules_in_file: int
    server_action: ServerAction
    server_detail: str  # why, in the server's own terms
    modules_matched: int | None = None  # of the file's modules, those the model has (None: not checked yet)
    linears_in_model: int | None = None
    model: str | None = None  # the model id the modules were checked against
    dropped: tuple[str, ...] = ()  # modules the server drops (no such layer in the model)
    changes_nothing: str | None = None  # why the LoRA adds nothing to the model (every lora_B zero, ...)
    differences: tuple[str, ...] = ()  # why the served LoRA is not the trained one; empty: it is

    @property
    def served_as_trained(self) -> bool:
        return not self.differences

    @property
    def line(self) -> str:
        """The audit in one line."""
        verdict = "served as trained" if self.served_as_trained else "NOT served as trained: " + "; ".join(self.differences)
        modules = f"{self.modules_in_file} modules"
        if self.modules_matched is not None:
            modules = f"{self.modules_matched} of {self.modules_in_file} modules match the model's {self.linears_in_model} linears"
        setting = "; ".join(part.split(" (")[0].split(", or ")[0] for part in self.trainer_setting.split("; "))
        parts = [
            f"{os.path.basename(self.path)}: {verdict}",
            f"{self.format}, {self.dtype or 'no tensors'}, rank {self.rank}, from {setting}",
            f"alpha: trainer {self.alpha_trainer}, server {self.alpha_server}",
            modules,
            f"the reference server {self.server_action.value}",
        ]
        if self.changes_nothing:
            parts.append(self.changes_nothing)
        return " — ".join(parts)


def audit(lora: LoraFile, training: TrainingFacts | None = None) -> LoraAudit:
    """The audit of a file on its own (the model not yet loaded)."""
    refusal = lora.refusal()
    action = ServerAction.REFUSES if refusal else ServerAction.NOT_CHECKED
    detail = refusal[0] if refusal else FORMATS[lora.format].server
    trainer = _trainer_alpha(lora, training or TrainingFacts())
    server = "— (not loaded)" if refusal else _server_alpha(lora)
    differences = []
    if refusal:
        differences.append(f"the reference server {_refused_how(lora)}")
    elif lora.alpha_scale() != 1.0:
        differences.append(
            f"the server applies the file's {lora.alpha_text}, ai-toolkit drew the previews at alpha = rank"
        )
    return LoraAudit(
        path=lora.path,
        format=lora.format.value + (f" + {', '.join(k.value for k in lora.mixed)}" if lora.mixed else ""),
        trainer_setting=lora.trainer_setting,
        dtype=lora.dtype_text,
        rank=_ranks(lora),
        alpha_trainer=trainer,
        alpha_server=server,
        modules_in_file=len(lora.modules),
        server_action=action,
        server_detail=detail,
        differences=tuple(differences),
    )


def unreadable(path: str, what: str) -> LoraAudit:
    """The audit of a file that cannot be read at all."""
    return LoraAudit(
        path=path, format="unreadable", trainer_setting="—", dtype="", rank="—", alpha_trainer="—",
        alpha_server="—", modules_in_file=0, server_action=ServerAction.REFUSES, server_detail=what,
        differences=("the file cannot be read",),
    )


def with_model(
    entry: LoraAudit, model: str, matched: int, linears: int, dropped: tuple[str, ...], nothing: str | None
) -> LoraAudit:
    """The audit once the model is loaded: which of the file's modules it has, and whether the weights do anything."""
    differences = list(entry.differences)
    action = ServerAction.APPLIES_PART if dropped else ServerAction.APPLIES_ALL
    detail = FORMATS[LoraFormat.PEFT_LORA].server
    if dropped:
        differences.insert(0, f"the server applies {matched} of {entry.modules_in_file} modules and drops {len(dropped)}")
        detail = (
            f"applies the {matched} modules the model has and drops {len(dropped)} with a warning (diffusers logs "
            "`unexpected keys`)"
        )
    return replace(
        entry, model=model, modules_matched=matched, linears_in_model=linears, dropped=dropped,
        changes_nothing=nothing, server_action=action, server_detail=detail, differences=tuple(differences),
    )


def _trainer_alpha(lora: LoraFile, training: TrainingFacts) -> str:
    """ai-toolkit's `LoRASpecialNetwork.__init__` sets alpha = lora_dim for every PEFT-format network, which every
    Qwen arch gets (`is_transformer`), LoKr included unless `old_lokr_format: true`; only that old LoKr keeps the
    job's linear_alpha (and even then scale 1 when both Kronecker factors are full)."""
    if lora.format is LoraFormat.LOKR_OLD:
        return f"the file's ({lora.alpha_text or 'no .alpha keys'}: the old LoKr format keeps linear_alpha)"
    if lora.format not in PEFT_FORMATS:
        return "— (not an ai-toolkit Qwen network)" if lora.format is LoraFormat.DOWN_UP_LORA else "—"
    if training.alpha is not None and training.rank and training.alpha != training.rank:
        return f"= rank (the job's linear_alpha {training.alpha:g} at rank {training.rank} was not used)"
    return "= rank"


def _server_alpha(lora: LoraFile) -> str:
    if not lora.alphas:
        return "= rank (no .alpha keys)"
    scale = lora.alpha_scale()
    factor = "strength varies by layer" if scale is None else f"strength x {scale:g}"
    return f"{lora.alpha_text} from .alpha keys ({factor})"


def _refused_how(lora: LoraFile) -> str:
    if lora.format is LoraFormat.NOT_A_LORA:
        return "refuses it (no LoRA weights)"
    kinds = [k for k in (lora.format, *lora.mixed) if FORMATS[k].fix is not None]
    if kinds:
        return f"refuses it ({kinds[0].value})"
    if lora.float8:
        return f"refuses it (float8, {FLOAT8.trainer.split(' (')[0]})"
    return "refuses it (its keys or shapes)"


def _ranks(lora: LoraFile) -> str:
    ranks = lora.ranks
    if lora.format is LoraFormat.FULL_RANK:
        return "full"
    if not ranks:
        return "—"
    return str(ranks[0]) if len(ranks) == 1 else f"{ranks[0]}–{ranks[-1]}"
