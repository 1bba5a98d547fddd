"""The `parity` command: validate, run, fields; exit codes; no torch for --help."""

import json
import subprocess
import sys

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
    assert "sample.samples[0].sample_steps: less than 1 (got -2). Fix:" in out

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
          guidance_scale: 1
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


def test_an_invalid_file_is_an_error_row_and_exit_2_while_good_files_run(write_case, workdir, capsys):
    good = write_case(
        """
        sample:
          width: 64
          height: 64
          sample_steps: 2
          guidance_scale: 1
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
    # `parity report summary` on this real run: worst first, each case linked to its section of the report
    capsys.readouterr()
    assert main(["report", "summary", str(out), "--markdown", "--report-url", "https://ci.example/r"]) == 0
    markdown = capsys.readouterr().out
    assert markdown.startswith("### parity: 0 passed, 1 failed, 1 errors")
    rows = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| status | case |") and len(rows) == 3  # header and the two cases
    assert "error" in rows[1] and "[bad::(case file)](https://ci.example/r#case-" in rows[1]
    assert "fail" in rows[2] and "[good::only](https://ci.example/r#case-" in rows[2]
    assert main(["report", "summary", str(out / "results.json")]) == 0
    assert "1 failed, 1 errors" in capsys.readouterr().out
    assert main(["report", "summary", str(workdir / "nowhere")]) == 2


def test_bad_device_is_a_usage_error(write_case):
    path = write_case("sample: {prompts: ['a --ctrl_img inputs/hat.png']}\n")
    assert main(["run", str(path), "--device", "tpu"]) == 2


def test_help_validate_and_fields_do_not_import_torch():
    """One fresh interpreter runs the three commands (each must leave torch unimported) and reports after each."""
    code = (
        "import sys\nfrom parity.cli import main\n"
        "for args in (['--help'], ['validate', 'cases'], ['fields']):\n"
        "    try:\n        main(args)\n    except SystemExit:\n        pass\n"
        "    print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', args[0])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    verdicts = [line for line in out.splitlines() if line.split(" ")[0] in ("TORCH", "NO-TORCH")]
    assert verdicts == ["NO-TORCH --help", "NO-TORCH validate", "NO-TORCH fields"]


PREVIEW_SUITE = """
base_model: tiny
trigger_word: sks
loras: [{path: loras/tiny.safetensors}]
baseline_kind: preview
training: {rank: 4, alpha: 2, save_dtype: float16}
thresholds: {ssim_min: 0.999, psnr_min: 50}  # at 64x64 and 2 steps the wirings' gap fits a preview's default limits
sample:
  width: 64
  height: 64
  seed: 42
  walk_seed: true
  guidance_scale: 4
  sample_steps: 2
  neg: ""
  samples:  # one case: a diagnosis renders ~20 wirings (tests/models/test_preview.py plants each knob alone)
    - {name: portrait, prompt: "[trigger] a hat", ctrl_img_1: inputs/person.png, baseline: samples/1.jpg,
       network_multiplier: 0.5}
"""


def test_diagnose_names_the_causes_of_previews_drawn_here(write_case, tmp_path):
    """Previews drawn in this environment with the trainer's wiring (`parity draw-previews`), then `parity run
    --diagnose`: every case fails, its verdict names the knobs, and the full preview wiring reproduces the preview
    exactly (both drawn here: the same kernels)."""
    path = write_case(PREVIEW_SUITE)
    assert main(["draw-previews", str(path)]) == 0
    assert main(["run", str(path), "--diagnose", "--out", str(tmp_path / "out")]) == 1
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [c["status"] for c in data["cases"]] == ["fail"]
    for case in data["cases"]:
        diagnosis = case["diagnosis"]
        assert diagnosis["verdict"].startswith("mismatch explained by: ")
        # linear_alpha 2 at rank 4 is not the trainer's strength (alpha = rank for its Qwen networks): not a cause
        assert "LoRA scale" not in diagnosis["explained_by"]
        assert diagnosis["full_preview"]["metrics"]["max_abs_diff"] == 0
        knobs = {row["knob"]: row for row in diagnosis["rows"]}
        assert knobs["size snapping"]["same"] and knobs["scheduler"]["same"]  # always shown, even when equal
        assert knobs["LoRA scale"]["same"]
        assert not knobs["LoRA weights"]["replayable"]
    portrait = data["cases"][0]["diagnosis"]
    assert {row["knob"]: row for row in portrait["rows"]}["text encoder: control image size"]["same"] is False
    html = (tmp_path / "out" / "index.html").read_text()
    assert "mismatch explained by" in html and "measured effect" in html


def test_draw_previews_never_overwrites(write_case, capsys):
    path = write_case(
        """
        baseline_kind: preview
        sample:
          width: 64
          height: 64
          sample_steps: 2
          guidance_scale: 1
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
