"""The registry: each supported model id and its Model (parity/models/model.py). Adding a model is its own folder
(parity/models/<id>/__init__.py with its MODEL), one line here, and its example suite with its baselines
(cases/example-<id>.yaml, which the project's conftest.py names as pytest cases)."""

from __future__ import annotations

import difflib
import importlib

from parity.models.model import Model

# One line per model id, each the name of its package under parity/models/ (the first is the default model).
REGISTERED = (
    "qwen_image_edit_plus_2511",
    "qwen_image_edit_plus",
    "qwen_image_edit",
    "qwen_image",
    "qwen_image_2512",
)
MODELS: dict[str, Model] = {name: importlib.import_module(f"{__name__}.{name}").MODEL for name in REGISTERED}
DEFAULT_MODEL = REGISTERED[0]  # a case file's `model:` when it names none
assert all(model.id == name for name, model in MODELS.items()), "a model's package is named by its id"


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
