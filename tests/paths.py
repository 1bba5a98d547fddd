"""Where the tests' shared files are, and a case folder made from them (a plain module: pytest discourages importing
conftest, which it loads itself)."""

from __future__ import annotations

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
INPUTS = REPO / "cases" / "inputs"
TINY_LORA = REPO / "cases" / "loras" / "tiny.safetensors"


def case_folder(root: Path) -> Path:
    """`root` with inputs/ (the example control images) and loras/tiny.safetensors, as case files expect them."""
    shutil.copytree(INPUTS, root / "inputs")
    (root / "loras").mkdir(parents=True)
    shutil.copy(TINY_LORA, root / "loras" / "tiny.safetensors")
    return root


_SMALL_SUITE = """
baseline_kind: {kind}
loras: [{{path: {lora}}}]
sample:
  width: 64
  height: 64
  sample_steps: 2
  guidance_scale: 1  # one transformer pass per step: the tests that use this are about inputs and faults, not CFG
  neg: ""
  samples:
"""


def small_suite(items: list[str], lora: str = "loras/tiny.safetensors", kind: str = "pinned", extra: str = "") -> str:
    """A case file's text: 64x64, 2 steps, no CFG, the tiny LoRA (or `lora`), one sample per YAML flow mapping in
    `items`; `extra` goes before it (top-level keys)."""
    return extra + _SMALL_SUITE.format(kind=kind, lora=lora) + "".join(f"    - {i}\n" for i in items)
