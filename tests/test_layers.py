"""The package's layers and their one direction, checked on the import graph of every module in parity/.

A module may import from its own layer and the layers before it, never from a later one. A model package is a
vertical slice: its spec and size rules come before the resolver (which reads them); its knobs, wiring, denoise
loop and tiny model come after it (they take resolved cases) and before the engine that calls them.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "parity"
FLOW = ("core", "models", "cases", "model render", "render", "judge", "results", "report", "run", "doors")
MODEL_RULES = ("spec", "geometry")  # the model-package modules the resolver reads


def layer(module: str) -> str:
    parts = module.split(".")[1:]
    if not parts or parts[0] not in FLOW:
        return "doors"  # parity/__init__, cli, plugin, options, docs
    if parts[0] == "models" and len(parts) >= 3 and parts[2] not in MODEL_RULES:
        return "model render"
    return parts[0]


def module_name(path: Path) -> str:
    name = ".".join(("parity", *path.relative_to(PACKAGE).with_suffix("").parts))
    return name.removesuffix(".__init__")


def imported(path: Path, source: str | None = None) -> set[str]:
    """Every parity module `path` imports (a name imported from a package counts as its submodule when it is one)."""
    here = module_name(path).split(".")
    if path.name != "__init__.py":
        here = here[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "parity")
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(here[: len(here) - node.level + 1] + [node.module or ""]).strip(".") if node.level else node.module
            if not base or base.split(".")[0] != "parity":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                is_module = (PACKAGE.parent / (sub.replace(".", "/") + ".py")).is_file() or (PACKAGE.parent / sub.replace(".", "/")).is_dir()
                found.add(sub if is_module else base)
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_the_layers_cover_every_module():
    assert {layer(module_name(p)) for p in MODULES} == set(FLOW)
    assert layer("parity.models.qwen_image_edit_plus_2511.spec") == "models"
    assert layer("parity.models.qwen_image_edit_plus_2511.wiring") == "model render"
    assert layer("parity.cli") == "doors"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_runs_against_the_flow(path):
    own = FLOW.index(layer(module_name(path)))
    against = sorted(f"{m} ({layer(m)})" for m in imported(path) if FLOW.index(layer(m)) > own)
    assert not against, f"{module_name(path)} ({layer(module_name(path))}) imports from later layers: {against}"


def test_the_check_sees_an_import_against_the_flow():
    """The checker itself: a core module importing the session is caught, relative or absolute."""
    probe = PACKAGE / "core" / "probe.py"  # never written: the source is given
    for source in ("from parity.run.session import ParitySession\n", "from ..run import session\n", "import parity.run.session\n"):
        assert {layer(m) for m in imported(probe, source)} == {"run"}, source
