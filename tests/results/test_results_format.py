"""results.json: the explicit key mapping, the shipped JSON Schema, real runs held to it, and files from before."""

import dataclasses
import json
from pathlib import Path

import pytest
from paths import small_suite

from parity.cli import main
from parity.results import format as results_format
from parity.results.format import FORMAT, SCHEMA_FILE, encode, read_json, write_json

jsonschema = pytest.importorskip("jsonschema")  # the test extra installs it; parity itself does not need it

BEFORE = Path(__file__).parent.parent / "data" / "results-v1-before"  # two cases written by the asdict() writer (f5da211)
SCHEMA = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
DEFS = {  # record type -> its definition in the schema
    "RunInfo": "run",
    "CaseResult": "case",
    "Metrics": "metrics",
    "Violation": "violation",
    "Thresholds": "thresholds",
    "Settings": "settings",
    "CasePaths": "paths",
    "JpegCheck": "jpeg",
    "KnobRow": "knob_row",
    "Variant": "variant",
    "Diagnosis": "diagnosis",
    "LoraAudit": "lora",
}


def validate(data):
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.Draft202012Validator(SCHEMA).validate(data)


@pytest.mark.parametrize("record", list(FORMAT), ids=lambda t: t.__name__)
def test_every_attribute_is_mapped_once_and_every_key_is_in_the_schema(record):
    """A new attribute is a decision (map it, or move the version); a key the schema does not know cannot be written."""
    keys, attrs = zip(*FORMAT[record])
    fields = {f.name for f in dataclasses.fields(record)}
    assert fields <= set(attrs) and len(set(attrs)) == len(attrs)
    # beyond the fields, only properties: values derived for the reader (written, never read back)
    assert all(isinstance(getattr(record, a, None), property) for a in set(attrs) - fields)
    assert len(set(keys)) == len(keys)
    assert set(keys) == set(SCHEMA["$defs"][DEFS[record.__name__]]["properties"])


def test_a_renamed_attribute_keeps_its_key(monkeypatch):
    """The mapping, not the attribute name, decides the key: what a rename of `suite_file` would look like."""
    (_, (case, *_)) = read_json(BEFORE / "results.json")
    renamed = dataclasses.make_dataclass("Renamed", [("case_file", str)])
    monkeypatch.setitem(FORMAT, renamed, (("suite_file", "case_file"),))
    assert encode(renamed(case.suite_file)) == {"suite_file": case.suite_file}


def test_a_version_1_file_from_before_the_mapping_reads_validates_and_writes_back_the_same(tmp_path):
    data = json.loads((BEFORE / "results.json").read_text())
    validate(data)
    run, cases = read_json(BEFORE / "results.json")
    assert [c.id for c in cases] == ["example-preview::portrait-control", "example::hat-on-person"]
    assert cases[0].diagnosis is not None and cases[0].jpeg is not None and cases[0].metrics.psnr > 0
    write_json(tmp_path / "results.json", run, cases)
    written = json.loads((tmp_path / "results.json").read_text())
    added_to_cases = {"peak_memory_by_device": {}, "offload": None}  # keys added since, at their defaults
    assert written == {
        **data,
        "run": {**data["run"], "unused_baselines": [], "loras": []},
        "cases": [{**c, **added_to_cases} for c in data["cases"]],
    }


def test_merge_reads_a_version_1_file_from_before(tmp_path, capsys):
    out = tmp_path / "merged"
    assert main(["report", "merge", str(BEFORE), str(BEFORE), "--out", str(out)]) == 0
    merged = json.loads((out / "results.json").read_text())
    validate(merged)
    assert [c["id"] for c in merged["cases"]] == 2 * ["example-preview::portrait-control", "example::hat-on-person"]
    assert (out / "index.html").is_file()


def test_a_real_run_with_pass_error_and_refused_rows_validates(write_case, workdir):
    items = ["{name: ok, prompt: a, ctrl_img_1: inputs/square.png}", "{name: refused, prompt: a, seed: -1, ctrl_img_1: inputs/square.png}"]
    path = write_case(small_suite(items), "good.yaml")
    write_case("sample: {sample_stepz: 3, prompts: [a]}\n", "bad.yaml")
    out = workdir / "out"
    assert main(["run", str(path.parent), "--out", str(out)]) == 2
    data = json.loads((out / "results.json").read_text())
    validate(data)
    assert {c["id"]: c["status"] for c in data["cases"]} == {"bad::(case file)": "error", "good::ok": "fail", "good::refused": "error"}
    assert data["schema_version"] == results_format.SCHEMA_VERSION == 1


def test_the_schema_rejects_what_the_format_never_writes():
    data = json.loads((BEFORE / "results.json").read_text())
    for broken in (
        {**data, "schema_version": 2},
        {**data, "cases": [{**data["cases"][0], "status": "passed"}]},
        {**data, "cases": [{**data["cases"][0], "surprise": 1}]},
        {**data, "cases": [{**data["cases"][0], "metrics": {**data["cases"][0]["metrics"], "psnr": "infinite"}}]},
    ):
        with pytest.raises(jsonschema.ValidationError):
            validate(broken)
