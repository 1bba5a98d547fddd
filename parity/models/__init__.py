"""Model registry: each supported model id and its package (parity/models/<id>/). Adding a model is one package and
one line here; see the README's architecture section for what a package provides."""

from __future__ import annotations

import difflib
import importlib
from types import ModuleType

from parity.models.qwen_image.spec import SPEC as QWEN_IMAGE
from parity.models.qwen_image_2512.spec import SPEC as QWEN_IMAGE_2512
from parity.models.qwen_image_edit.spec import SPEC as QWEN_IMAGE_EDIT
from parity.models.qwen_image_edit_plus.spec import SPEC as QWEN_IMAGE_EDIT_PLUS_2509
from parity.models.qwen_image_edit_plus_2511.spec import SPEC as QWEN_IMAGE_EDIT_PLUS_2511
from parity.models.spec import ModelSpec

MODELS: dict[str, ModelSpec] = {
    spec.id: spec
    for spec in (QWEN_IMAGE_EDIT_PLUS_2511, QWEN_IMAGE_EDIT_PLUS_2509, QWEN_IMAGE_EDIT, QWEN_IMAGE, QWEN_IMAGE_2512)
}
DEFAULT_MODEL = QWEN_IMAGE_EDIT_PLUS_2511.id  # a case file's `model:` when it names none


def part(model_id: str, name: str) -> ModuleType:
    """One module of a model's package: `geometry`, `knobs`, `wiring` or `tiny` (imported on first use: the
    render side needs torch, the registry does not)."""
    return importlib.import_module(f"{get_model(model_id).package}.{name}")


def did_you_mean(value: str, choices: list[str] | tuple[str, ...]) -> str:
    """A ' (did you mean 'x'?)' hint for a misspelt name, or '' when nothing is close."""
    close = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def get_model(model_id: str) -> ModelSpec:
    """The spec for a model id; KeyError with a suggestion for an unknown one."""
    try:
        return MODELS[model_id]
    except KeyError:
        raise KeyError(
            f"unknown model '{model_id}'{did_you_mean(model_id, tuple(MODELS))}; "
            f"supported: {', '.join(MODELS)}"
        ) from None
