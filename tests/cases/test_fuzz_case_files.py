"""Property: any case file either loads or raises CaseFileError naming file, field, value and a fix."""

import string

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from parity.cases.schema import SCHEMA_TABLES
from parity.cases.suite import load_cases
from parity.core.errors import CaseFileError

KNOWN_KEYS = sorted({f for _, cls in SCHEMA_TABLES for f in cls.__dataclass_fields__})
ODD_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    ODD_TEXT,
    st.sampled_from(["inputs/hat.png", "inputs/missing.png", "loras/tiny.safetensors", "tiny", "", "-1", "0.5", "[trigger] a --seed 7 --w 96"]),
)


def values(depth=2):
    if depth == 0:
        return SCALARS
    inner = values(depth - 1)
    keys = st.one_of(st.sampled_from(KNOWN_KEYS), ODD_TEXT, st.integers(-3, 3))
    return st.one_of(SCALARS, st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=6))


def sample_item():
    return st.fixed_dictionaries(
        {},
        optional={
            "prompt": st.one_of(ODD_TEXT, st.just("a hat --seed x --w 9999 --n no"), SCALARS),
            "ctrl_img_1": st.sampled_from(["inputs/hat.png", "inputs/missing.png", "../../etc/passwd", 3]),
            "ctrl_img": st.sampled_from(["inputs/square.png", None]),
            "width": SCALARS,
            "seed": SCALARS,
            "sample_steps": SCALARS,
            "network_multiplier": SCALARS,
            "baseline": SCALARS,
            "ssim_min": SCALARS,
            "name": st.one_of(ODD_TEXT, st.just("../../x")),
        },
    )


def suites():
    sample = st.fixed_dictionaries(
        {},
        optional={
            "samples": st.one_of(st.lists(sample_item(), max_size=3), values(1)),
            "prompts": st.one_of(st.lists(ODD_TEXT, max_size=3), values(1)),
            "width": SCALARS, "height": SCALARS, "seed": SCALARS, "walk_seed": SCALARS, "neg": SCALARS,
            "guidance_scale": SCALARS, "sample_steps": SCALARS, "format": SCALARS, "extra_values": values(1),
        },
    )
    return st.fixed_dictionaries(
        {},
        optional={
            "sample": st.one_of(sample, values(1)),
            "model": st.one_of(st.just("qwen_image_edit_plus_2511"), SCALARS),
            "base_model": SCALARS,
            "loras": st.one_of(st.lists(st.fixed_dictionaries({"path": SCALARS}), max_size=2), values(1)),
            "baseline_kind": st.sampled_from(["pinned", "preview", "x", None]),
            "thresholds": values(1),
            "training": values(1),
            "previews": values(1),
            "trigger_word": SCALARS,
            "sampel": SCALARS,
        },
    )


def dump(data) -> str:
    return yaml.dump(data, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), allow_unicode=True)


GARBAGE = st.text(alphabet=string.printable + "ü€\t", max_size=200)
SPECIAL = ("a: &x [*x]\n", "{" * 200, "", "---\n...\n", "sample: !!python/object:os.system x\n")


def check_text(path, text):
    path.write_text(text, encoding="utf-8")
    try:
        load_cases(path)
    except CaseFileError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.file == str(path)
            assert problem.field and problem.message and problem.fix
            assert str(problem).startswith(str(path))


@settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(suite=suites(), garbage=GARBAGE)
@example(suite={}, garbage="0b_")  # found by this test in a run of 2026-12-08: PyYAML types it an int, then raises
def test_every_case_file_loads_or_says_what_is_wrong(workdir, suite, garbage):
    """Each example checks three files: a structured case file, the same file with its syntax broken, and text
    that is not YAML at all (6,000 files; the structure is the expensive draw)."""
    path = workdir / "cases" / "fuzz.yaml"
    dumped = dump(suite)
    for text in (dumped, dumped.replace(":", "", 1) + "\n  - [unclosed", garbage):
        check_text(path, text)


@pytest.mark.parametrize("text", SPECIAL, ids=["recursive alias", "deep nesting", "empty", "empty document", "python tag"])
def test_odd_documents_are_refused_with_a_reason(workdir, text):
    check_text(workdir / "cases" / "odd.yaml", text)


@pytest.mark.parametrize("value, kind", [("0b_", "int"), ("0x_", "int"), ("+0b_", "int"), ("2001-02-30", "timestamp")])
def test_a_value_yaml_types_but_cannot_build_is_refused_on_its_line(workdir, value, kind):
    """PyYAML's resolver reads these as an int or a date, and its constructor then raises ValueError: a case file
    problem on that line that says to quote the value, never a traceback."""
    path = workdir / "cases" / "typed.yaml"
    path.write_text(f"sample:\n  width: 64\n  neg: {value}\n", encoding="utf-8")
    with pytest.raises(CaseFileError) as info:
        load_cases(path)
    (problem,) = info.value.problems
    assert problem.line == 3 and problem.field == "(yaml)"
    assert f"{value!r} reads as a YAML {kind} that cannot be built" in problem.message and "quote it" in problem.message
