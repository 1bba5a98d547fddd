"""The package's layers and their one direction, checked on the import graph of every module in parity/.

A module may import from its own layer and the layers before it, never from a later one. Every folder of parity/
is a layer of FLOW; the few top-level modules are the doors. Imports by string count too (importlib). Under
models/, a model id's package (one the registry lists) may use the shared modules and its family's base package,
never another model id's package; a family base never uses a model id's package.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "parity"
FLOW = ("core", "facts", "models", "cases", "render", "judge", "results", "report", "run", "doors")
DOORS = ("parity", "parity.cli", "parity.plugin", "parity.options", "parity.docs")


class UnknownLayer(Exception):
    pass


def layer(module: str) -> str:
    if module in DOORS:
        return "doors"
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in FLOW[:-1]:
        return parts[1]
    raise UnknownLayer(f"{module} belongs to no layer: name its folder in FLOW (tests/test_layers.py) or make it a door")


def module_name(path: Path) -> str:
    name = ".".join(("parity", *path.relative_to(PACKAGE).with_suffix("").parts))
    return name.removesuffix(".__init__")


def imported(path: Path, source: str | None = None) -> set[str]:
    """Every parity module `path` imports, also by a literal string to importlib (a name imported from a package
    counts as its submodule when it is one)."""
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
                found.add(sub if _is_module(sub) else base)
        elif isinstance(node, ast.Call) and _is_import_call(node.func) and node.args:
            target = node.args[0]
            if isinstance(target, ast.Constant) and isinstance(target.value, str) and target.value.startswith("parity"):
                found.add(target.value)
    return found


def _is_module(name: str) -> bool:
    path = PACKAGE.parent / name.replace(".", "/")
    return path.with_suffix(".py").is_file() or path.is_dir()


def _is_import_call(func: ast.expr) -> bool:
    return (isinstance(func, ast.Attribute) and func.attr == "import_module") or (
        isinstance(func, ast.Name) and func.id in ("import_module", "__import__")
    )


MODULES = sorted(PACKAGE.rglob("*.py"))


def model_ids() -> set[str]:
    """The model ids' packages: parity/models/<id>/ for every id of the registry."""
    from parity.models import MODELS

    assert all(_is_package(model_id) for model_id in MODELS), "each model id has its own package under parity/models/"
    return set(MODELS)


def test_every_module_is_in_a_layer_and_every_layer_is_used():
    assert {layer(module_name(p)) for p in MODULES} == set(FLOW)
    assert layer("parity.models.qwen.knobs") == "models" and layer("parity.facts.case") == "facts"
    assert layer("parity.cli") == "doors"


def test_an_unknown_folder_or_module_is_no_layer():
    for stray in ("parity.extras.thing", "parity.helpers"):
        with pytest.raises(UnknownLayer, match="belongs to no layer"):
            layer(stray)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_runs_against_the_flow(path):
    own = FLOW.index(layer(module_name(path)))
    against = sorted(f"{m} ({layer(m)})" for m in imported(path) if FLOW.index(layer(m)) > own)
    assert not against, f"{module_name(path)} ({layer(module_name(path))}) imports from later layers: {against}"


def model_package(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) >= 3 and parts[:2] == ["parity", "models"] and _is_package(parts[2]) else None


def _is_package(name: str) -> bool:
    return (PACKAGE / "models" / name).is_dir()


@pytest.mark.parametrize("path", [p for p in MODULES if model_package(module_name(p))], ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_model_package_uses_another_models_package(path):
    """A model id's package uses its family base (e.g. models/qwen/), never another id's; a family base uses none."""
    ids = model_ids()
    own = model_package(module_name(path))
    others = sorted(m for m in imported(path) if (target := model_package(m)) and target != own and target in ids)
    assert not others, f"{module_name(path)} uses another model's package: {others}"


def test_the_check_sees_imports_against_the_flow_and_between_models():
    """The checker itself: a core module importing the session, relative, absolute or by string; a model id's
    package importing another's."""
    probe = PACKAGE / "core" / "probe.py"  # never written: the source is given
    sources = (
        "from parity.run.session import ParitySession\n",
        "from ..run import session\n",
        "import parity.run.session\n",
        "import importlib\nimportlib.import_module('parity.run.session')\n",
    )
    for source in sources:
        assert {layer(m) for m in imported(probe, source)} == {"run"}, source
    sibling = PACKAGE / "models" / "qwen_image_2512" / "probe.py"
    used = imported(sibling, "from parity.models.qwen_image import MODEL\n")
    assert {model_package(m) for m in used} == {"qwen_image"} and "qwen_image" in model_ids()
