"""`parity import`: job folders laid out exactly as ai-toolkit writes them."""

import json
import shutil

import numpy as np
import pytest
import yaml
from paths import INPUTS, TINY_LORA
from PIL import Image

from parity.cases.importer import JobImportError, import_job
from parity.cases.suite import load_cases
from parity.cli import main

NAME = "myjob"


def job_config(sample, arch="qwen_image_edit_plus", base="Qwen/Qwen-Image-Edit-2511", trigger="sks", steps=500):
    return {
        "job": "extension",
        "config": {
            "name": NAME,
            "process": [
                {
                    "type": "diffusion_trainer",
                    "training_folder": "output",
                    "trigger_word": trigger,
                    "network": {"type": "lora", "linear": 16, "linear_alpha": 8},
                    "save": {"dtype": "float16", "save_every": 250, "max_step_saves_to_keep": 5},
                    "train": {"steps": steps, "dtype": "bf16"},
                    "model": {"name_or_path": base, "arch": arch, "quantize": True, "qtype": "qfloat8", "low_vram": True},
                    "sample": sample,
                }
            ],
        },
        "meta": {"name": "[name]", "version": "1.0"},
    }


def make_job(root, sample, previews=None, checkpoints=("000000250", "000000500"), final=True, named=False, **config):
    """A job folder: config.yaml, samples/<ms>__<step>_<i>.jpg (+ .tmp/, .thumbs/), checkpoints."""
    job = root / "output" / NAME
    (job / "samples" / ".tmp").mkdir(parents=True)
    (job / "samples" / ".thumbs").mkdir()
    (job / "config.yaml").write_text(yaml.safe_dump(job_config(sample, **config)))
    count = len([s for s in sample.get("samples", [])]) or len(sample.get("prompts", []))
    ms = 1764460800000
    for step in previews if previews is not None else (0, 250, 500):
        for i in range(count):
            ms += 117  # taken per image at save time: one round's images have different times
            Image.new("RGB", (64, 64), (i * 40, step % 255, 90)).save(job / "samples" / f"{ms}__{step:09d}_{i}.jpg")
            (job / "samples" / ".thumbs" / f"{ms}__{step:09d}_{i}.jpg.jpg").write_bytes(b"thumb")
    infix = "_LoRA" if named else ""
    for step in checkpoints:
        shutil.copy(TINY_LORA, job / f"{NAME}{infix}_{step}.safetensors")
    if final:
        shutil.copy(TINY_LORA, job / f"{NAME}{infix}.safetensors")
    shutil.copytree(INPUTS, root / "inputs")
    return job


SAMPLES = {
    "width": 64,
    "height": 64,
    "seed": 42,
    "walk_seed": True,
    "guidance_scale": 4,
    "sample_steps": 2,
    "neg": "",
    "samples": [
        {"prompt": "[trigger] a hat", "ctrl_img_1": "inputs/person.png", "ctrl_img_2": "inputs/hat.png"},
        {"prompt": "a cat --seed 7", "ctrl_img_1": "inputs/square.png"},
    ],
}


def test_samples_list_latest_step(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    job = make_job(tmp_path, SAMPLES)
    result = import_job(job, base_model="tiny")
    assert result.step == 500 and result.samples == 2 and result.checkpoint.name == f"{NAME}_000000500.safetensors"
    suite = yaml.safe_load(result.case_file.read_text())
    assert result.case_file == tmp_path / "cases" / f"{NAME}.yaml"
    assert suite["baseline_kind"] == "preview" and suite["trigger_word"] == "sks" and suite["base_model"] == "tiny"
    assert suite["loras"] == [{"path": f"../output/{NAME}/{NAME}_000000500.safetensors"}]
    assert suite["training"] == {
        # quantize_te is not in the job: the trainer's ModelConfig takes quantize's value, and qfloat8 for its qtype
        "step": 500, "quantize": True, "qtype": "qfloat8", "quantize_te": True, "qtype_te": "qfloat8", "low_vram": True, "dtype": "bf16",
        "layer_offloading": False, "transformer_single_file": False, "network_type": "lora", "rank": 16, "alpha": 8.0,
        "save_dtype": "float16", "do_cfg_norm": False,
    }
    assert suite["sample"]["samples"][0]["ctrl_img_1"] == "../inputs/person.png"  # rewritten relative to the case file
    assert suite["sample"]["samples"][1]["prompt"] == "a cat --seed 7"  # otherwise verbatim
    first = suite["previews"][0]
    assert first["file"] == f"../baselines/{NAME}/0.jpg" and first["step"] == 500 and len(first["sha256"]) == 64
    assert first["source"].endswith("__000000500_0.jpg")

    cases = load_cases(result.case_file)
    assert [c.effective.seed for c in cases] == [42, 7]
    assert [c.training_step for c in cases] == [500, 500]
    assert cases[0].effective.prompt == "sks a hat"
    assert cases[0].preview.lora_merged is False  # trained on a quantized base: the trainer runs the LoRA unmerged


def test_legacy_prompts_list_with_flags_and_named_lora(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sample = {"seed": 3, "prompts": ["one --ctrl_img inputs/hat.png --w 96", "two --ctrl_img inputs/square.png"]}
    job = make_job(tmp_path, sample, named=True)
    result = import_job(job, step=250, out=tmp_path / "suites" / "legacy.yaml", baselines=tmp_path / "prev")
    assert result.checkpoint.name == f"{NAME}_LoRA_000000250.safetensors"
    suite = yaml.safe_load(result.case_file.read_text())
    assert suite["sample"]["prompts"] == ["one --ctrl_img ../inputs/hat.png --w 96", "two --ctrl_img ../inputs/square.png"]
    assert suite["previews"][1]["file"] == "../prev/1.jpg" and (tmp_path / "prev" / "1.jpg").is_file()
    cases = load_cases(result.case_file)
    assert [c.effective.seed for c in cases] == [3, 3]  # walk_seed false
    assert cases[0].effective.width == 96


def test_two_sources_naming_different_checkpoints_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    job = make_job(tmp_path, SAMPLES, base="Qwen/Qwen-Image-Edit-2511")
    with pytest.raises(JobImportError, match="names two different qwen_image_edit_plus checkpoints") as info:
        import_job(job, base_model="/models/Qwen-Image-Edit-2509")
    assert "--base-model '/models/Qwen-Image-Edit-2509' says qwen_image_edit_plus" in info.value.what
    assert "model.name_or_path 'Qwen/Qwen-Image-Edit-2511' says qwen_image_edit_plus_2511" in info.value.what


@pytest.mark.parametrize(
    "arch, base, given, model",
    [
        ("qwen_image_edit_plus", "Qwen/Qwen-Image-Edit-2509", "tiny", "qwen_image_edit_plus"),
        ("qwen_image_edit_plus:2511", "/data/models/qwen-edit", "tiny", "qwen_image_edit_plus_2511"),  # the UI's tag
        ("qwen_image_edit_plus", "/data/models/qwen-edit", "/data/Qwen-Image-Edit-2509", "qwen_image_edit_plus"),
        ("qwen_image", "Qwen/Qwen-Image", "tiny", "qwen_image"),
        ("qwen_image", "Qwen/Qwen-Image-2512", "tiny", "qwen_image_2512"),  # 2512 named before Qwen-Image is
        ("qwen_image:2512", "/data/models/qwen", "tiny", "qwen_image_2512"),
        ("qwen_image_edit_plus", "/data/qwen-edit-2509-vs-2511", "/data/Qwen-Image-Edit-2509", "qwen_image_edit_plus"),  # says neither
    ],
)
def test_the_model_id_follows_the_checkpoint_the_job_names(tmp_path, monkeypatch, arch, base, given, model):
    monkeypatch.chdir(tmp_path)
    samples = SAMPLES if "edit" in arch else {**SAMPLES, "samples": [{"prompt": s["prompt"]} for s in SAMPLES["samples"]]}
    result = import_job(make_job(tmp_path, samples, arch=arch, base=base), base_model=given)
    assert yaml.safe_load(result.case_file.read_text())["model"] == model
    if given == "tiny":
        assert {c.model for c in load_cases(result.case_file)} == {model}


def test_arch_qwen_image_edit_is_the_single_picture_model_whatever_it_loads(tmp_path, monkeypatch):
    """ai-toolkit's qwen_image_edit arch has one sampler and one model id; its UI writes a sample's picture as
    `ctrl_img`, which that sampler encodes once (not twice, as the Edit-Plus sampler does)."""
    monkeypatch.chdir(tmp_path)
    samples = {**SAMPLES, "samples": [{"prompt": "[trigger] a hat", "ctrl_img": "inputs/person.png"}, {"prompt": "a cat", "ctrl_img": "inputs/square.png"}]}
    result = import_job(make_job(tmp_path, samples, arch="qwen_image_edit", base="/data/models/my-edit"), base_model="tiny")
    assert yaml.safe_load(result.case_file.read_text())["model"] == "qwen_image_edit"
    case = load_cases(result.case_file)[0]
    assert case.model == "qwen_image_edit" and case.preview.text_images == case.effective.control_images
    assert not any("legacy ctrl_img" in note for note in case.notes)


def test_the_final_checkpoint_belongs_to_the_last_step_and_pruned_steps_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    job = make_job(tmp_path, SAMPLES, checkpoints=(), final=True)
    assert import_job(job).checkpoint.name == f"{NAME}.safetensors"
    with pytest.raises(JobImportError, match=r"no checkpoint for step 250 .*usable steps: 500"):
        import_job(job, step=250, out=tmp_path / "other.yaml")


def test_the_newest_of_several_previews_is_taken_and_said(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    job = make_job(tmp_path, SAMPLES)
    newest = job / "samples" / f"1864460800000__{500:09d}_1.jpg"
    Image.new("RGB", (64, 64), (1, 2, 3)).save(newest)
    result = import_job(job)
    assert any("took the newest" in n and newest.name in n for n in result.notes)
    assert yaml.safe_load(result.case_file.read_text())["previews"][1]["source"] == str(newest)


@pytest.mark.parametrize(
    "breaking, message",
    [
        (lambda job: (job / "config.yaml").unlink(), "job config not found"),
        (lambda job: [p.unlink() for p in (job / "samples").glob("*__000000500_1.jpg")], r"sample indices \[0\]"),
        (lambda job: shutil.rmtree(job.parent.parent / "inputs"), "control image\\(s\\) not found"),
        (lambda job: [p.unlink() for p in (job / "samples").glob("*.jpg")], "no previews"),
    ],
)
def test_refusals_write_nothing(tmp_path, monkeypatch, breaking, message):
    monkeypatch.chdir(tmp_path)
    job = make_job(tmp_path, SAMPLES)
    breaking(job)
    with pytest.raises(JobImportError, match=message):
        import_job(job)
    assert not (tmp_path / "cases").exists() or not any((tmp_path / "cases").iterdir())
    assert not (tmp_path / "baselines").exists()


def test_unsupported_architecture_and_pickled_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    job = make_job(tmp_path, SAMPLES, base="Qwen/Qwen-Image-Edit")
    with pytest.raises(JobImportError, match="cannot tell which qwen_image_edit_plus checkpoint") as info:
        import_job(job)
    assert "--base-model" in info.value.fix and "Qwen/Qwen-Image-Edit-2509" in info.value.fix
    shutil.rmtree(tmp_path / "output")
    shutil.rmtree(tmp_path / "inputs")
    job = make_job(tmp_path, SAMPLES, checkpoints=(), final=False)
    (job / f"{NAME}_000000500.ckpt").write_bytes(b"pickle")
    with pytest.raises(JobImportError, match="not a .safetensors"):
        import_job(job)


def test_an_existing_case_file_is_never_overwritten(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    job = make_job(tmp_path, SAMPLES)
    import_job(job)
    with pytest.raises(JobImportError, match="never overwrites"):
        import_job(job)


def test_import_and_run_end_to_end_on_the_tiny_model(tmp_path, monkeypatch, capsys):
    """Previews drawn with the trainer's wiring on the tiny model, imported, run: the report shows step, seed, file."""
    monkeypatch.chdir(tmp_path)
    job = make_job(tmp_path, SAMPLES, previews=(500,))
    # Redraw the job's previews as ai-toolkit's sampler would have (the tiny model's preview wiring).
    draft = tmp_path / "draft.yaml"
    draft_suite = {"base_model": "tiny", "trigger_word": "sks", "baseline_kind": "preview",
                   "loras": [{"path": str(job / f"{NAME}_000000500.safetensors")}], "sample": SAMPLES,
                   "previews": [{"file": str(p)} for p in sorted((job / "samples").glob("*__000000500_*.jpg"))]}
    draft.write_text(yaml.safe_dump(draft_suite))
    assert main(["draw-previews", "--force", str(draft)]) == 0

    assert main(["import", str(job), "--base-model", "tiny", "--run", "--report", str(tmp_path / "report")]) == 1
    out = capsys.readouterr().out
    assert "imported step 500 (2 samples" in out
    data = json.loads((tmp_path / "report" / "results.json").read_text())
    # The trainer's wiring and the server's differ, so the previews are off; how far each case lands from the preview
    # kind's loose default thresholds (after the trainer's JPEG encoding) depends on the model: on the tiny model one
    # passes (SSIM 0.94) and one fails (0.82).
    assert "fail" in [case["status"] for case in data["cases"]]
    for case in data["cases"]:
        assert case["status"] in ("pass", "fail") and case["training_step"] == 500
        assert case["baseline_origin"].endswith(f"__000000500_{case['index']}.jpg")
        assert case["jpeg"] is not None  # JPEG previews are also compared re-encoded
    html = (tmp_path / "report" / "index.html").read_text()
    assert "training step" in html and "__000000500_0.jpg" in html
    # the imported preview's hash is checked on every run
    shutil.copy(INPUTS / "square.png", tmp_path / "baselines" / NAME / "0.jpg")
    assert main(["run", str(tmp_path / "cases" / f"{NAME}.yaml"), "--out", str(tmp_path / "r2")]) == 1
    data = json.loads((tmp_path / "r2" / "results.json").read_text())
    assert data["cases"][0]["status"] == "error" and "changed since it was imported" in data["cases"][0]["reason"]
    assert np.asarray(Image.open(tmp_path / "baselines" / NAME / "0.jpg")).shape == (64, 64, 3)


def test_a_lokr_job_is_imported_and_its_lora_audit_says_the_server_refuses_it(tmp_path, monkeypatch, capsys):
    """The trainer UI's default network type: the import says at once that the reference server cannot apply the
    checkpoint (and `validate` refuses the case file), before anyone waits for a render."""
    from trainer_lora import Network, save

    from parity.render.loading import load_pipeline

    monkeypatch.chdir(tmp_path)
    job = make_job(tmp_path, SAMPLES)
    transformer = load_pipeline("tiny", ".", "cpu").transformer
    for checkpoint in job.glob("*.safetensors"):
        save(checkpoint, transformer, Network(type="lokr"))
    config = yaml.safe_load((job / "config.yaml").read_text())
    config["config"]["process"][0]["network"] = {"type": "lokr", "lokr_full_rank": True}
    (job / "config.yaml").write_text(yaml.safe_dump(config))
    capsys.readouterr()
    assert main(["import", str(job), "--base-model", "tiny", "--out", "cases/job.yaml"]) == 0
    out = capsys.readouterr().out
    assert "LoRA audit: myjob_000000500.safetensors: NOT served as trained: the reference server refuses it (LoKr)" in out
    data = yaml.safe_load((tmp_path / "cases" / "job.yaml").read_text())
    assert data["training"]["network_type"] == "lokr" and "alpha" not in data["training"]  # the job set none
    assert main(["validate", "cases/job.yaml"]) == 2
    assert "is a LoKr network, as ai-toolkit writes with `network: type: lokr`" in capsys.readouterr().out


@pytest.mark.parametrize(
    "model, expected",
    [
        ({}, {"quantize": False, "quantize_te": False}),
        ({"quantize": True}, {"quantize": True, "qtype": "qfloat8", "quantize_te": True, "qtype_te": "qfloat8"}),
        ({"quantize": True, "quantize_te": False, "qtype": "uint3|ostris/accuracy_recovery_adapters/qwen.safetensors"},
         {"quantize": True, "qtype": "uint3|ostris/accuracy_recovery_adapters/qwen.safetensors", "quantize_te": False}),
        ({"quantize": True, "layer_offloading": True}, {"qtype": "float8", "qtype_te": "float8", "layer_offloading": True}),
        ({"quantize": True, "auto_memory": True, "qtype_te": "int8"}, {"qtype": "float8", "qtype_te": "int8", "layer_offloading": True}),
        # an adapter named apart is carried after a bar, as ModelConfig reads `uint3|<adapter>`
        ({"quantize": True, "qtype": "uint3", "accuracy_recovery_adapter": "/ara/qwen_uint3.safetensors"},
         {"qtype": "uint3|/ara/qwen_uint3.safetensors", "qtype_te": "qfloat8"}),
        ({"quantize": True, "qtype": "qint8", "qtype_te": "qfloat8_e5m2"}, {"qtype": "qint8", "qtype_te": "qfloat8_e5m2"}),
    ],
)
def test_the_training_block_takes_the_trainers_quantization_defaults(model, expected):
    """ai-toolkit's ModelConfig (toolkit/config_modules.py): quantize_te defaults to quantize, qtype and qtype_te to
    qfloat8, layer_offloading to auto_memory, and layer_offloading turns qfloat8 into float8 (torchao)."""
    from parity.cases.importer import training_block

    block = training_block({"model": model}, 100)
    assert {k: block[k] for k in expected} == expected
    assert ("qtype" in block) is bool(block["quantize"] or model.get("qtype"))


def test_a_qtype_the_trainer_does_not_know_is_refused_with_what_parity_replays():
    """ai-toolkit's get_qtype would fail on it (toolkit/util/quantize.py): the import stops, naming the field, the value,
    the trainer's qtypes and the replayed ones."""
    from parity.cases.importer import JobImportError, training_block

    with pytest.raises(JobImportError) as raised:
        training_block({"model": {"quantize": True, "qtype": "qfloat4"}}, 100)
    assert "model.qtype: ai-toolkit knows no qtype 'qfloat4' (its qtypes: qfloat8," in str(raised.value)
    assert "parity replays qfloat8, qfloat8_e4m3fn, qfloat8_e5m2, qint8, qint4, qint2 (optimum-quanto 0.2.4); int8, float8, " in raised.value.fix
    with pytest.raises(JobImportError, match="reads an accuracy recovery adapter from model.qtype only"):
        training_block({"model": {"quantize": True, "qtype_te": "uint3|ostris/ara/qwen.safetensors"}}, 100)
    with pytest.raises(JobImportError, match="model.qtype_te: ai-toolkit knows no qtype 'fp8'"):
        training_block({"model": {"quantize": True, "qtype_te": "fp8"}}, 100)
