"""Shared fixtures: small case files in temporary folders, the tiny pipeline loaded once per session."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
INPUTS = REPO / "cases" / "inputs"
TINY_LORA = REPO / "cases" / "loras" / "tiny.safetensors"

pytest_plugins = ["pytester"]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder with cases/inputs (the example control images) and cases/loras/tiny.safetensors."""
    shutil.copytree(INPUTS, tmp_path / "cases" / "inputs")
    (tmp_path / "cases" / "loras").mkdir(parents=True)
    shutil.copy(TINY_LORA, tmp_path / "cases" / "loras" / "tiny.safetensors")
    return tmp_path


@pytest.fixture
def write_case(workdir: Path):
    """Write a case file under workdir/cases from an indented YAML string; returns its path."""

    def write(text: str, name: str = "suite.yaml") -> Path:
        path = workdir / "cases" / name
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def tiny_pipe():
    from parity.loading import load_pipeline

    return load_pipeline("tiny", ".", "cpu")
