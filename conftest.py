"""This project's example suites as pytest cases (`pytest -m parity`): the default model's cases/example.yaml and
each other model's cases/example-<model id>.yaml, read from the registry, so a new model's suite needs no edit here.
cases/example-preview.yaml is left out: its previews are drawn to fail (`parity run --diagnose` explains them)."""

from pathlib import Path


def pytest_configure(config):
    from parity.models import DEFAULT_MODEL, MODELS

    for model_id in MODELS:
        suite = Path("cases") / ("example.yaml" if model_id == DEFAULT_MODEL else f"example-{model_id}.yaml")
        config.addinivalue_line("parity_cases", str(suite))
