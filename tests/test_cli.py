"""The `parity` command: validate, run, fields; exit codes; no torch for --help."""

import json
import subprocess
import sys

import pytest

from parity.cli import main


def test_validate_rejects_a_misspelt_key_a_missing_control_image_and_a_negative_step_count(write_case, capsys):
    path = write_case(
        """
        sample:
          sample_step: 4
          samples:
            - {prompt: a, ctrl_img_1: inputs/nope.png, sample_steps: -2}
        """
    )
    assert main(["validate", str(path)]) == 2
    out = capsys.readouterr().out
    assert f"INVALID {path}" in out
    assert f"{path}:2: sample.sample_step: unknown key (did you mean 'sample_steps'?)" in out
    assert "sample.samples[0].sample_steps: out of range 1..150 (got -2). Fix:" in out

    path.write_text(path.read_text().replace("sample_step: 4\n", "").replace(", sample_steps: -2", ""))
    assert main(["validate", str(path)]) == 2
    out = capsys.readouterr().out
    assert "sample.samples[0].ctrl_img_1: control image not found" in out and "Fix: check the path" in out


def test_validate_accepts_the_example_suite(capsys):
    assert main(["validate", "cases"]) == 0
    assert "cases/example.yaml: 6 case(s)" in capsys.readouterr().out


def test_missing_lora_and_base_model_folder(write_case, capsys):
    path = write_case(
        """
        base_model: ./no-such-model
        loras: [{path: loras/missing.safetensors}]
        sample:
          samples: [{prompt: a, ctrl_img_1: inputs/hat.png}]
        """
    )
    assert main(["validate", str(path)]) == 2
    out = capsys.readouterr().out
    assert "loras[0].path: LoRA file not found" in out and "base_model: no such folder" in out


def test_run_exit_codes_and_report(write_case, workdir, capsys):
    path = write_case(
        """
        sample:
          width: 64
          height: 64
          sample_steps: 2
          neg: ""
          samples: [{name: only, prompt: a, ctrl_img_1: inputs/square.png}]
        """
    )
    out = workdir / "out"
    assert main(["run", str(path), "--out", str(out)]) == 1  # baseline written: a person must look
    assert main(["run", str(path), "--out", str(out)]) == 0
    data = json.loads((out / "results.json").read_text())
    assert data["counts"]["pass"] == 1 and (out / "index.html").is_file()
    assert "1 passed, 0 failed, 0 errors" in capsys.readouterr().out


def test_an_invalid_file_is_an_error_row_and_exit_2_while_good_files_run(write_case, workdir):
    good = write_case(
        """
        sample:
          width: 64
          height: 64
          sample_steps: 2
          neg: ""
          samples: [{name: only, prompt: a, ctrl_img_1: inputs/square.png}]
        """,
        "good.yaml",
    )
    write_case("sample: {sample_stepz: 3, prompts: [a]}\n", "bad.yaml")
    out = workdir / "out"
    assert main(["run", str(good.parent), "--out", str(out)]) == 2
    data = json.loads((out / "results.json").read_text())
    statuses = {c["id"]: c["status"] for c in data["cases"]}
    assert statuses == {"bad::(case file)": "error", "good::only": "fail"}


def test_bad_device_is_a_usage_error(write_case):
    path = write_case("sample: {prompts: ['a --ctrl_img inputs/hat.png']}\n")
    assert main(["run", str(path), "--device", "tpu"]) == 2


@pytest.mark.parametrize("args", [["--help"], ["validate", "cases"], ["fields"]])
def test_help_validate_and_fields_do_not_import_torch(args):
    code = (
        "import sys\nfrom parity.cli import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("NO-TORCH")


def test_diagnose_names_the_causes_on_the_preview_example(tmp_path, capsys):
    """`parity run --diagnose cases/example-preview.yaml`: every case fails and its verdict names the knobs."""
    assert main(["run", "cases/example-preview.yaml", "--diagnose", "--out", str(tmp_path)]) == 1
    data = json.loads((tmp_path / "results.json").read_text())
    assert [c["status"] for c in data["cases"]] == ["fail"] * 4
    for case in data["cases"]:
        diagnosis = case["diagnosis"]
        assert diagnosis["verdict"].startswith("mismatch explained by: ")
        assert {"CFG renormalisation", "LoRA scale"} <= set(diagnosis["explained_by"])
        assert diagnosis["full_preview"]["metrics"]["ssim"] > 0.999  # the previews were drawn with this wiring
        knobs = {row["knob"]: row for row in diagnosis["rows"]}
        assert knobs["size snapping"]["same"] and knobs["scheduler"]["same"]  # always shown, even when equal
        assert not knobs["LoRA weights"]["replayable"]
    html = (tmp_path / "index.html").read_text()
    assert "mismatch explained by" in html and "measured effect" in html


def test_draw_previews_never_overwrites(write_case, capsys):
    path = write_case(
        """
        baseline_kind: preview
        sample:
          width: 64
          height: 64
          sample_steps: 2
          neg: ""
          samples: [{prompt: a, ctrl_img_1: inputs/square.png, baseline: previews/0.jpg}]
        """
    )
    assert main(["draw-previews", str(path)]) == 0
    preview = path.parent / "previews" / "0.jpg"
    first = preview.read_bytes()
    assert first[:2] == b"\xff\xd8"  # a JPEG, as the trainer saves jpg previews
    assert main(["draw-previews", str(path)]) == 2
    assert "never overwritten" in capsys.readouterr().err
    assert preview.read_bytes() == first
