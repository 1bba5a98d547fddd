"""The registry: each supported model id and its Model (parity/models/model.py). Adding a model is its own folder
(parity/models/<id>/__init__.py with its MODEL), one line here, and its example suite."""

from __future__ import annotations

import difflib

from parity.models.model import Model
from parity.models.qwen_image import MODEL as QWEN_IMAGE
from parity.models.qwen_image_2512 import MODEL as QWEN_IMAGE_2512
from parity.models.qwen_image_edit import MODEL as QWEN_IMAGE_EDIT
from parity.models.qwen_image_edit_plus import MODEL as QWEN_IMAGE_EDIT_PLUS_2509
from parity.models.qwen_image_edit_plus_2511 import MODEL as QWEN_IMAGE_EDIT_PLUS_2511

MODELS: dict[str, Model] = {
    model.id: model
    for model in (QWEN_IMAGE_EDIT_PLUS_2511, QWEN_IMAGE_EDIT_PLUS_2509, QWEN_IMAGE_EDIT, QWEN_IMAGE, QWEN_IMAGE_2512)
}
DEFAULT_MODEL = QWEN_IMAGE_EDIT_PLUS_2511.id  # a case file's `model:` when it names none


def did_you_mean(value: str, choices: list[str] | tuple[str, ...]) -> str:
    """A ' (did you mean 'x'?)' hint for a misspelt name, or '' when nothing is close."""
    close = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def get_model(model_id: str) -> Model:
    """The Model of a model id; KeyError with a suggestion for an unknown one."""
    try:
        return MODELS[model_id]
    except KeyError:
        raise KeyError(
            f"unknown model '{model_id}'{did_you_mean(model_id, tuple(MODELS))}; "
            f"supported: {', '.join(MODELS)}"
        ) from None
