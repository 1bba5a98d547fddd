"""Inputs that fail at run time: each is one error row with a clear reason; the rest runs; the report is written."""

import json
import struct
import zlib

import numpy as np
import pytest
import torch
from paths import small_suite
from PIL import Image
from safetensors.torch import load_file, save_file

from parity.cases.suite import load_cases
from parity.cli import main
from parity.core.errors import CaseFileError
from parity.core.images import open_with_notes
from parity.results.record import Status
from parity.run.session import ParitySession, RunOptions


def suite(write_case, items, kind="pinned", lora="loras/tiny.safetensors", extra=""):
    return load_cases(write_case(small_suite(items, lora, kind, extra)))


def run(cases, out):
    session = ParitySession(RunOptions(out_dir=out))
    results = [session.run_case(c) for c in cases]
    paths = session.finish()
    return results, paths


def png_header_only(path, width, height):
    """A tiny PNG file whose header claims a huge image (a decompression bomb)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b""))


def test_bad_inputs_each_become_one_error_row(write_case, workdir):
    inputs = workdir / "cases" / "inputs"
    png_header_only(inputs / "bomb.png", 100_000, 100_000)
    good = inputs / "square.png"
    (inputs / "truncated.png").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    (inputs / "empty.png").write_bytes(b"")
    (inputs / "text.png").write_text("not an image")
    cases = suite(
        write_case,
        [
            "{name: good, prompt: a, ctrl_img_1: inputs/square.png}",
            "{name: bomb, prompt: a, ctrl_img_1: inputs/bomb.png}",
            "{name: truncated, prompt: a, ctrl_img_1: inputs/truncated.png}",
            "{name: empty, prompt: a, ctrl_img_1: inputs/empty.png}",
            "{name: not-an-image, prompt: a, ctrl_img_1: inputs/text.png}",
            "{name: vanished, prompt: a, ctrl_img_1: inputs/hat.png}",
            "{name: corrupt-baseline, prompt: a, ctrl_img_1: inputs/square.png, baseline: inputs/text.png}",
        ],
    )
    (inputs / "hat.png").unlink()  # deleted after the file was checked
    results, paths = run(cases, workdir / "out")
    by_name = {r.name: r for r in results}
    assert by_name["good"].status is Status.FAIL and "baseline was missing" in by_name["good"].reason
    expectations = {
        "bomb": "decompression bomb",
        "truncated": "cannot be read",
        "empty": "cannot be read",
        "not-an-image": "cannot be read",
        "vanished": "not found",
        "corrupt-baseline": "baseline cannot be read",
    }
    for name, text in expectations.items():
        assert by_name[name].status is Status.ERROR, name
        assert text in by_name[name].reason, (name, by_name[name].reason)
        assert "Fix:" in by_name[name].error
    data = json.loads(paths.results_json.read_text())
    assert data["counts"] == {"pass": 0, "fail": 1, "error": 6, "skip": 0} and paths.index_html.is_file()


def test_unusual_image_modes_follow_the_pipelines_and_are_noted(write_case, workdir):
    inputs = workdir / "cases" / "inputs"
    rgb = Image.open(inputs / "square.png").convert("RGB")
    rgba = rgb.copy()
    rgba.putalpha(128)
    rgba.save(inputs / "alpha.png")
    Image.fromarray(np.asarray(rgb)[:, :, 0].astype(np.uint16) * 300).save(inputs / "deep.png")
    rotated = rgb.copy()
    exif = rotated.getexif()
    exif[0x0112] = 6
    rotated.save(inputs / "rotated.jpg", exif=exif)
    rgb.convert("P").save(inputs / "palette.png")
    files = {"alpha": "alpha.png", "deep": "deep.png", "rotated": "rotated.jpg", "palette": "palette.png"}
    opened = {name: open_with_notes(inputs / file, "control image") for name, file in files.items()}
    assert all(image.mode == "RGB" for image, _ in opened.values())  # as both pipelines: .convert("RGB")
    assert np.array_equal(np.asarray(opened["alpha"][0]), np.asarray(rgb))  # alpha dropped, not composited
    notes = {name: " ".join(n) for name, (_, n) in opened.items()}
    assert "has alpha: dropped" in notes["alpha"]
    assert "values above 255 clip" in notes["deep"]
    assert "EXIF orientation 6: ignored" in notes["rotated"]
    assert notes["palette"] == ""  # a palette image without transparency simply expands to RGB: nothing to note
    (result,), _ = run(suite(write_case, ["{name: alpha, prompt: a, ctrl_img_1: inputs/alpha.png}"]), workdir / "out")
    assert result.status is Status.FAIL and "baseline was missing" in result.reason  # it ran
    assert any("has alpha: dropped" in note for note in result.notes)  # and the report says so


def test_loras_that_are_missing_pickled_or_unmatched(write_case, workdir):
    loras = workdir / "cases" / "loras"
    tensors = load_file(str(loras / "tiny.safetensors"))
    partial = dict(tensors)
    partial["diffusion_model.transformer_blocks.0.attn.to_zz.lora_A.weight"] = torch.zeros(4, 32, dtype=torch.float16)
    partial["diffusion_model.transformer_blocks.0.attn.to_zz.lora_B.weight"] = torch.zeros(32, 4, dtype=torch.float16)
    save_file(partial, str(loras / "partial.safetensors"))
    save_file({k.replace("transformer_blocks", "blocks"): v for k, v in tensors.items()}, str(loras / "other.safetensors"))
    item = ["{name: c, prompt: a, ctrl_img_1: inputs/square.png}"]
    (result,), _ = run(suite(write_case, item, lora="loras/partial.safetensors"), workdir / "o1")
    assert result.status is Status.ERROR and "1 of 29 target modules match nothing" in result.reason
    assert "transformer_blocks.0.attn.to_zz" in result.reason and "allow_partial_lora" in result.error
    (result,), _ = run(suite(write_case, item, lora="loras/other.safetensors"), workdir / "o2")
    assert result.status is Status.ERROR and "none of its 28 target modules exists" in result.reason
    (result,), _ = run(suite(write_case, item, lora="loras/partial.safetensors", extra="allow_partial_lora: true\n"), workdir / "o3")
    assert result.status is Status.FAIL and any("allowed by allow_partial_lora" in n for n in result.notes)
    (loras / "pickled.ckpt").write_bytes(b"not unpickled")
    with pytest.raises(CaseFileError, match="pickled checkpoints are never loaded"):
        suite(write_case, item, lora="loras/pickled.ckpt")
    cases = suite(write_case, item, lora="loras/partial.safetensors", extra="allow_partial_lora: true\n")
    (loras / "partial.safetensors").unlink()  # gone between validation and the run
    (result,), _ = run(cases, workdir / "o4")
    assert result.status is Status.ERROR and "LoRA file not found" in result.reason


def test_all_black_output_is_an_error(write_case, workdir, monkeypatch):
    import parity.models.qwen.wiring

    monkeypatch.setattr(parity.models.qwen.wiring, "to_uint8", lambda pipe, decoded: np.zeros((64, 64, 3), dtype=np.uint8))
    (result,), _ = run(suite(write_case, ["{prompt: a, ctrl_img_1: inputs/square.png}"]), workdir / "out")
    assert result.status is Status.ERROR and result.reason.startswith("the output is all black. Fix:")


def test_out_of_memory_in_one_case_is_freed_and_the_next_case_runs(write_case, workdir, monkeypatch):
    from parity.models.qwen.wiring import Renderer

    real = Renderer.render
    calls = {"n": 0}

    def flaky(self, request, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(self, request, *args, **kwargs)

    monkeypatch.setattr(Renderer, "render", flaky)
    cases = suite(write_case, ["{name: a, prompt: a, ctrl_img_1: inputs/square.png}", "{name: b, prompt: b, ctrl_img_1: inputs/square.png}"])
    session = ParitySession(RunOptions(out_dir=workdir / "out"))
    first = session.run_case(cases[0])
    engine = session.engine
    assert first.status is Status.ERROR and "ran out of memory" in first.reason and engine._loaded is None
    second = session.run_case(cases[1])
    assert second.status is Status.FAIL and "baseline was missing" in second.reason  # it ran: model reloaded
    assert "model_load" in second.timings


def test_ctrl_c_keeps_the_finished_cases_and_marks_the_report_incomplete(write_case, workdir, monkeypatch):
    from parity.render.engine import Engine

    real = Engine.render
    calls = {"n": 0}

    def interrupted(self, case, wiring=None):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, case, wiring)

    monkeypatch.setattr(Engine, "render", interrupted)
    path = write_case(small_suite([f"{{name: n{i}, prompt: a, ctrl_img_1: inputs/square.png}}" for i in range(3)]))
    out = workdir / "out"
    assert main(["run", str(path), "--out", str(out)]) == 130
    data = json.loads((out / "results.json").read_text())
    assert data["run"]["complete"] is False and [c["name"] for c in data["cases"]] == ["n0"]
    assert "This run did not finish" in (out / "index.html").read_text()


def test_a_case_gives_the_same_bits_whatever_ran_before_it(write_case):
    """Two LoRA scales, one and two control images, and the trainer's wiring (ai-toolkit's merge and unmerged
    branch) in between: every case renders to the same bits in any order, on one engine."""
    from parity.render.engine import Engine

    cases = suite(write_case, [
        "{name: full, prompt: a hat, ctrl_img_1: inputs/square.png}",
        "{name: half, prompt: a hat, ctrl_img_1: inputs/square.png, network_multiplier: 0.5}",
        "{name: two, prompt: a cat, ctrl_img_1: inputs/person.png, ctrl_img_2: inputs/square.png}",
    ])
    engine = Engine("cpu")
    first = {c.name: engine.render(c).decoded for c in cases}
    engine.render(cases[0], engine.wirings(cases[0])[1])  # the trainer's unmerged float32 branch (two multipliers)
    for case in reversed(cases):
        assert torch.equal(engine.render(case).decoded, first[case.name]), case.name


@pytest.mark.parametrize("name", ["../../escape", "a/b", ".."])
def test_case_names_never_write_outside_the_output_folder(write_case, workdir, name):
    cases = suite(write_case, [f"{{name: '{name}', prompt: a, ctrl_img_1: inputs/square.png, baseline: inputs/square.png}}"])
    run(cases, workdir / "out")
    out = (workdir / "out").resolve()
    written = [p.resolve() for p in (workdir / "out").rglob("*") if p.is_file()]
    assert written and all(out in p.parents for p in written)
