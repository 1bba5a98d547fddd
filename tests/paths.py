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
