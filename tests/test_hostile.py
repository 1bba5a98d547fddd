"""Hostile input, second round: no input ends a run, none eats the machine, every message names its culprit.

The five holes a hostile but realistic user found each have a test here (a NaN prompt flag that killed the writer,
a YAML alias bomb, --out naming a file, two runs into one folder, a failed LoRA load poisoning later cases); the
rules behind them are property tests that generate their own hostile inputs.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
import tracemalloc

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paths import REPO, small_suite
from safetensors.torch import load_file, save_file

from parity.cases.prompt_flags import FLAGS, INERT_FLAGS, parse_prompt
from parity.cases.schema import load_suite
from parity.cases.suite import load_cases
from parity.cli import main
from parity.core.errors import CaseFileError, CaseRunError, LoraRefused, ModelLoadError
from parity.judge.compare import Metrics
from parity.render.engine import Engine
from parity.results.format import read_json, write_json
from parity.results.record import CaseResult, RunInfo, Status
from parity.run.outdir import LOCK_NAME, OutputLock

GOOD = "{name: good, prompt: a hat, ctrl_img_1: inputs/square.png}"


def billion_laughs(depth: int = 9, fanout: int = 9) -> str:
    """The classic alias bomb: `depth` levels of `fanout` aliases of the level below (342 bytes at 9 x 9)."""
    lines = ['a: &a ["' + '","'.join(["lol"] * fanout) + '"]']
    for level in range(1, depth):
        this, below = chr(97 + level), chr(96 + level)
        lines.append(f"{this}: &{this} [" + ",".join([f"*{below}"] * fanout) + "]")
    return "\n".join(lines) + "\n"


def _strict_json(text: str):
    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


# 1. Non-finite numbers never reach the writer ------------------------------------------------------------------


def test_a_nan_prompt_flag_is_refused_by_validate_and_the_run_reports_every_file(write_case, workdir, capsys):
    """The reported hole: `--m nan` passed validate and then killed `parity run` in the JSON writer."""
    bad = write_case(small_suite(["{name: red, prompt: make it red --m nan, ctrl_img_1: inputs/square.png}"]), "bad.yaml")
    good = write_case(small_suite([GOOD]), "good.yaml")
    with pytest.raises(CaseFileError, match=r"--m.*a finite number"):
        load_cases(bad)
    assert main(["validate", str(bad)]) == 2
    out = workdir / "out"
    assert main(["run", str(bad), str(good), "--out", str(out)]) == 2
    data = _strict_json((out / "results.json").read_text())
    assert data["run"]["complete"] is True and (out / "index.html").is_file()
    assert {c["name"]: c["status"] for c in data["cases"]} == {"(case file)": "error", "good": "fail"}  # good: baseline written


@settings(max_examples=200, deadline=None)
@given(
    flag=st.sampled_from(sorted(FLAGS) + sorted(INERT_FLAGS)),
    content=st.one_of(
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.sampled_from(["nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e999", "-1e999", "0x10", "1_000", " 7 "]),
        st.text(max_size=12),
    ),
)
def test_every_number_a_prompt_flag_yields_is_finite(flag, content):
    parsed = parse_prompt(f"a prompt --{flag} {content}")
    for value in parsed.overrides.values():
        if isinstance(value, float):
            assert math.isfinite(value), (flag, content, value)


_any_float = st.floats(allow_nan=True, allow_infinity=True)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ssim=_any_float, psnr=_any_float, mean=_any_float, timing=_any_float, note=st.text(max_size=20))
def test_the_results_writer_is_strict_and_total(tmp_path, ssim, psnr, mean, timing, note):
    metrics = Metrics(ssim=ssim, psnr=psnr, max_abs_diff=3, mean_abs_diff=mean, changed_pixels=mean, pixel_tolerance=0.0)
    result = CaseResult(id="s::c", suite="s", suite_file="s.yaml", name="c", status=Status.FAIL, reason=note,
                        metrics=metrics, timings={"denoise": timing}, notes=(note,))
    run = RunInfo(started="now", finished="now", complete=True, device="cpu", base_model_override=None,
                  environment={"x": timing}, command="parity run")
    path = tmp_path / "results.json"
    write_json(path, run, [result])
    _strict_json(path.read_text())  # no NaN/Infinity tokens
    _, (back,) = read_json(path)
    for got, want in ((back.metrics.ssim, ssim), (back.metrics.psnr, psnr), (back.timings["denoise"], timing)):
        assert got == want or (math.isnan(got) and math.isnan(want))


# 2. Bounded work: YAML aliases are sized before they expand -------------------------------------------------------


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path):
    """The reported hole: 342 bytes grew `parity validate` by ~110 MB/s, in the line map."""
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(billion_laughs())
    assert len(bomb.read_bytes()) == 342
    tracemalloc.start()
    try:
        with pytest.raises(CaseFileError, match="aliases") as caught:
            load_suite(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000, peak
    assert "Fix:" in str(caught.value) and str(bomb) in str(caught.value)
    assert main(["validate", str(bomb)]) == 2


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(depth=st.integers(1, 14), fanout=st.integers(1, 16), wrap=st.sampled_from(["plain", "sample", "self"]))
def test_no_alias_structure_makes_loading_big_or_slow(tmp_path, depth, fanout, wrap):
    text = billion_laughs(depth, fanout)
    if wrap == "sample":  # the aliases where the schema walks: inside the samples list
        text = text + "sample:\n  samples: *" + chr(96 + depth) + "\n"
    elif wrap == "self":
        text = text + "loop: &loop [*loop, *a]\n"
    path = tmp_path / "aliases.yaml"
    path.write_text(text)
    tracemalloc.start()
    try:
        try:
            load_suite(path)
        except CaseFileError:
            pass
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64_000_000, (depth, fanout, wrap, peak)


def test_job_configs_are_read_with_the_same_bound(tmp_path):
    from parity.cases.importer import JobImportError, read_job_config

    config = tmp_path / "config.yaml"
    config.write_text(billion_laughs())
    with pytest.raises(JobImportError, match="aliases"):
        read_job_config(config)


# 3. and 4. The report folder: checked before anything renders, held by one run ----------------------------------


@pytest.fixture
def no_render(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a case rendered although the report folder was unusable")

    monkeypatch.setattr(Engine, "render", refuse)


def test_out_naming_a_file_is_refused_before_anything_renders(write_case, workdir, capsys, no_render):
    target = workdir / "report.txt"
    target.write_text("keep me")
    assert main(["run", str(write_case(small_suite([GOOD]))), "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert f"the report folder {target} is a file, not a folder" in err and "Fix: name a folder with --out" in err
    assert target.read_text() == "keep me"
    inside = target / "sub"
    assert main(["run", str(write_case(small_suite([GOOD]))), "--out", str(inside)]) == 2
    assert "part of its path is a file" in capsys.readouterr().err


def test_a_second_run_into_a_held_folder_is_refused_with_its_holder(write_case, workdir, capsys, no_render):
    out = workdir / "out"
    held = OutputLock.acquire(out, "parity run first.yaml")
    try:
        assert main(["run", str(write_case(small_suite([GOOD]))), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"another parity run is writing its report to {out}" in err and "parity run first.yaml" in err
        assert "give this run its own --out" in err
        assert not (out / "results.json").exists()
    finally:
        held.release()
    OutputLock.acquire(out).release()  # free again once the holder lets go


def test_a_crashed_run_never_leaves_the_folder_locked(tmp_path):
    """The lock is the operating system's: a process killed while holding it (SIGKILL, no clean-up) frees it."""
    out = tmp_path / "out"
    code = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(REPO)!r})
        from pathlib import Path
        from parity.run.outdir import OutputLock
        OutputLock.acquire(Path({str(out)!r}), "crashing run")
        print("held", flush=True)
        os.kill(os.getpid(), 9)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert done.stdout.strip() == "held" and done.returncode == -9
    assert "crashing run" in (out / LOCK_NAME).read_text()  # the file stays, naming the last holder
    OutputLock.acquire(out).release()


def test_two_sessions_into_one_folder_in_one_process_are_refused(tmp_path):
    from parity.run.outdir import OutDirError
    from parity.run.session import ParitySession, RunOptions

    first, second = ParitySession(RunOptions(out_dir=tmp_path)), ParitySession(RunOptions(out_dir=tmp_path))
    first.claim()
    with pytest.raises(OutDirError, match="another parity run"):
        second.claim()
    first.finish()
    second.claim()
    second.finish()
    assert (tmp_path / "results.json").is_file()


def test_a_busy_report_folder_is_a_pytest_usage_error(pytester):
    from paths import case_folder

    case_folder(pytester.path / "cases")
    (pytester.path / "cases" / "suite.yaml").write_text(small_suite([GOOD]))
    pytester.makeini("[pytest]\nparity_cases = cases\nparity_out = out\n")
    held = OutputLock.acquire(pytester.path / "out", "parity run elsewhere")
    try:
        result = pytester.runpytest_inprocess("-m", "parity", "-p", "no:cacheprovider")
    finally:
        held.release()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*another parity run is writing its report to*parity run elsewhere*"])


# 5. Every case starts from a clean engine ------------------------------------------------------------------------


def _tiny_lora(workdir):
    return load_file(str(workdir / "cases" / "loras" / "tiny.safetensors"))


def _misfit_lora(workdir):
    """Rank-consistent, but to_q's down weight takes 48 inputs where the model's layer takes 32."""
    tensors = _tiny_lora(workdir)
    key = next(k for k in tensors if k.endswith("blocks.0.attn.to_q.lora_A.weight"))
    tensors[key] = torch.zeros(tensors[key].shape[0], 48, dtype=tensors[key].dtype)
    return tensors


def _nan_lora(workdir):
    tensors = _tiny_lora(workdir)
    key = next(k for k in tensors if k.endswith("lora_B.weight"))
    tensors[key] = torch.full_like(tensors[key], float("nan"))
    return tensors


def _nan_alpha_lora(workdir):
    """Every layer with its alpha (the rank: scaling 1), one of them NaN. diffusers folds the alpha into the
    layer's weights as it converts the keys, so the check of the loaded adapter finds NaN in its lora_A."""
    tensors = _tiny_lora(workdir)
    for key in [k for k in tensors if k.endswith(".lora_A.weight")]:
        tensors[key.replace(".lora_A.weight", ".alpha")] = torch.tensor(float(tensors[key].shape[0]))
    tensors[next(k for k in sorted(tensors) if k.endswith(".alpha"))] = torch.tensor(float("nan"))
    return tensors


def _fail_inside(attribute: str, error: BaseException):
    """Make the pipeline's own `attribute` do its work and then fail, leaving whatever it changed."""

    def arrange(monkeypatch, engine):
        pipe = engine.model().pipe
        real = getattr(pipe, attribute)

        def half_done(*args, **kwargs):
            real(*args, **kwargs)
            raise error

        monkeypatch.setattr(pipe, attribute, half_done)

    return arrange


def _fail_in_denoise(error: BaseException):
    def arrange(monkeypatch, engine):
        import parity.models.qwen.wiring

        def broken(*args, **kwargs):
            raise error

        monkeypatch.setattr(parity.models.qwen.wiring, "generate", broken)

    return arrange


FAILURES = {
    # kind: (LoRA tensors of the failing case or None for the tiny one, its sample's settings, what fails, error)
    "LoRA shapes do not fit": (_misfit_lora, "", None, LoraRefused),
    "LoRA holds NaN": (_nan_lora, "", None, LoraRefused),
    "LoRA alpha NaN": (_nan_alpha_lora, "", None, LoraRefused),
    "LoRA load fails half-way": (_tiny_lora, "", _fail_inside("load_lora_weights", RuntimeError("simulated")), ModelLoadError),
    "interrupt inside a fuse": (None, ", network_multiplier: 0.5", _fail_inside("fuse_lora", KeyboardInterrupt()), KeyboardInterrupt),
    "error while denoising": (None, ", network_multiplier: 0.5", _fail_in_denoise(RuntimeError("simulated")), RuntimeError),
    "out of memory": (None, ", network_multiplier: 0.5", _fail_in_denoise(torch.cuda.OutOfMemoryError("simulated")), torch.cuda.OutOfMemoryError),
    "NaN output (one step)": (None, ", network_multiplier: 0.5, sample_steps: 1", None, CaseRunError),
}


@pytest.mark.parametrize("kind", list(FAILURES))
def test_a_failed_case_leaves_the_next_case_bits_as_if_run_alone(kind, write_case, workdir, monkeypatch):
    make_lora, settings_, arrange, error = FAILURES[kind]
    good = load_cases(write_case(small_suite([GOOD]), "good.yaml"))[0]
    alone = Engine("cpu").render(good).decoded
    lora = "loras/tiny.safetensors"
    if make_lora is not None:
        save_file(make_lora(workdir), str(workdir / "cases" / "loras" / "other.safetensors"))
        lora = "loras/other.safetensors"
    item = f"{{name: bad, prompt: a cat, ctrl_img_1: inputs/person.png{settings_}}}"
    bad = load_cases(write_case(small_suite([item], lora=lora), "bad.yaml"))[0]
    engine = Engine("cpu")
    engine.render(good)  # the model is loaded, the LoRA fused: the state a failure could damage
    if arrange is not None:
        arrange(monkeypatch, engine)
    loaded = engine._loaded
    with pytest.raises(error) as caught:
        engine.render(bad)
    # a LoRA refused before it changed the model (the file's checks; NaN values, found in the loaded adapter,
    # which is taken out again) keeps the model loaded (a reload costs minutes at full size); any other failure
    # drops it and the next case loads it again
    assert (engine._loaded is loaded) is (error is LoraRefused)
    if "NaN" in kind and error is LoraRefused:
        assert "hold NaN or infinite values" in str(caught.value) and not engine._loaded.lora.fused._wrapped()
    monkeypatch.undo()
    assert torch.equal(engine.render(good).decoded, alone)


def test_a_run_with_an_unloadable_lora_first_renders_the_next_file_as_alone(write_case, workdir):
    """The reported hole end to end: a suite whose LoRA does not fit, then a suite that passes alone."""
    save_file(_misfit_lora(workdir), str(workdir / "cases" / "loras" / "misfit.safetensors"))
    bad = write_case(small_suite(["{name: bad, prompt: a, ctrl_img_1: inputs/square.png}"], lora="loras/misfit.safetensors"), "a.yaml")
    good = write_case(small_suite([GOOD]), "b.yaml")
    assert main(["run", str(good), "--out", str(workdir / "alone")]) == 1  # writes the baseline
    assert main(["run", str(bad), str(good), "--out", str(workdir / "both")]) == 1
    cases = {c["name"]: c for c in json.loads((workdir / "both" / "results.json").read_text())["cases"]}
    assert cases["good"]["status"] == "pass" and cases["good"]["metrics"]["max_abs_diff"] == 0
    assert cases["bad"]["status"] == "error"
    reason = cases["bad"]["reason"]
    assert "misfit.safetensors" in reason and "transformer_blocks.0.attn.to_q: the LoRA maps 48 -> 32 features" in reason
    assert "the model's layer 32 -> 32" in reason and "Fix: use a LoRA trained for this base model" in reason


# Every message names its culprit ----------------------------------------------------------------------------------


def _header(length: int) -> bytes:
    return length.to_bytes(8, "little")


LORA_FILES = {
    "empty": (lambda wd: b"", "is not a readable safetensors file"),
    "truncated header": (lambda wd: _header(4000) + b'{"a":', "is not a readable safetensors file"),
    "garbage": (lambda wd: bytes(range(256)) * 4, "is not a readable safetensors file"),
    "no LoRA weights": (lambda wd: _saved({"model.weight": torch.zeros(2, 2)}), "holds no LoRA weights"),
    "down without up": (
        lambda wd: _saved({"transformer.transformer_blocks.0.attn.to_q.lora_A.weight": torch.zeros(4, 32),
                           "transformer.transformer_blocks.0.attn.to_k.lora_A.weight": torch.zeros(4, 32),
                           "transformer.transformer_blocks.0.attn.to_k.lora_B.weight": torch.zeros(32, 4)}),
        "has no up weight",
    ),
    "ranks differ": (
        lambda wd: _saved({"transformer.transformer_blocks.0.attn.to_q.lora_A.weight": torch.zeros(4, 32),
                           "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": torch.zeros(32, 8)}),
        "do not fit together",
    ),
}


def _saved(tensors) -> bytes:
    from safetensors.torch import save

    return save(tensors)


@pytest.mark.parametrize("kind", list(LORA_FILES))
def test_a_damaged_lora_is_refused_by_validate_and_run_with_file_value_and_fix(kind, write_case, workdir):
    make, says = LORA_FILES[kind]
    path = workdir / "cases" / "loras" / "bad.safetensors"
    path.write_bytes(make(workdir))
    case_file = write_case(small_suite([GOOD], lora="loras/bad.safetensors"))
    with pytest.raises(CaseFileError) as caught:
        load_cases(case_file)
    text = str(caught.value)
    assert says in text and str(path) in text and "Fix:" in text and "loras[0].path" in text
    assert "SafetensorError" not in text and "Traceback" not in text


def test_a_prompt_longer_than_the_text_positions_is_refused_with_the_numbers(write_case, workdir):
    item = "{name: long, prompt: '" + "a " * 5000 + "', ctrl_img_1: inputs/square.png}"
    case = load_cases(write_case(small_suite([item])))[0]
    with pytest.raises(CaseRunError) as caught:
        Engine("cpu").render(case)
    text = str(caught.value)
    assert "the prompt is" in text and "tokens long" in text and "text positions for" in text
    assert "the reference server's pipeline fails on it too" in text and "Fix: shorten the prompt by at least" in text


@pytest.mark.parametrize("update", [False, True])
def test_a_baseline_path_that_is_a_folder_is_an_error_row_and_nothing_is_written(write_case, workdir, update, cpu_set):
    from parity.run.session import ParitySession, RunOptions

    folder = workdir / "cases" / "taken.png"  # the file the sample names: a folder sits there
    folder.mkdir(parents=True)
    (case,) = load_cases(write_case(small_suite(["{name: c, prompt: a, ctrl_img_1: inputs/square.png, baseline: taken.png}"])))
    session = ParitySession(RunOptions(out_dir=workdir / "out", update=update))
    result = session.run_case(case)
    session.finish()
    assert result.status is Status.ERROR and "is a folder" in result.reason and "Fix: move it away" in result.reason
    assert str(folder) in result.reason or "taken.png" in result.reason
    assert list(folder.iterdir()) == [] and "Traceback" not in (result.error or "")
    assert not (workdir / "cases" / cpu_set).exists()  # no set file was written beside it instead


@pytest.mark.parametrize("update", [False, True])
def test_a_default_baseline_whose_set_file_is_a_folder_is_an_error_row(write_case, workdir, update, cpu_set):
    from parity.run.session import ParitySession, RunOptions

    folder = workdir / "baselines" / "suite" / cpu_set / "c.png"  # where this class's baseline of the case goes
    folder.mkdir(parents=True)
    (case,) = load_cases(write_case(small_suite(["{name: c, prompt: a, ctrl_img_1: inputs/square.png}"])))
    session = ParitySession(RunOptions(out_dir=workdir / "out", update=update))
    result = session.run_case(case)
    session.finish()
    assert result.status is Status.ERROR and "is a folder" in result.reason and str(folder) in result.reason
    assert list(folder.iterdir()) == []


def test_a_nan_output_is_traced_to_the_weight_that_holds_it(tiny_latents):
    from parity.models.qwen.wiring import Renderer, Request
    from parity.render.loading import load_pipeline

    pipe = load_pipeline("tiny", ".", "cpu")  # a private copy: its weights are damaged below
    pipe.transformer.transformer_blocks[1].attn.to_v.weight.data[0, 0] = float("nan")
    renderer = Renderer(pipe)
    renderer.latent_cache = tiny_latents
    from paths import INPUTS

    from parity.core.images import open_rgb

    request = Request("a hat", "", 64, 64, 2, 1.0, 3, (open_rgb(INPUTS / "square.png", "square"),))
    with pytest.raises(CaseRunError, match=r"transformer weight transformer_blocks\.1\.attn\.to_v\.weight holds NaN"):
        renderer.render(request)


def test_an_undecodable_control_image_is_refused_by_validate_and_is_one_error_row_in_a_run(write_case, workdir, capsys):
    (workdir / "cases" / "inputs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30)
    path = write_case(small_suite([GOOD, "{name: broken, prompt: a, ctrl_img_1: inputs/broken.png}"]))
    with pytest.raises(CaseFileError, match=r"ctrl_img_1: control image cannot be read"):
        load_cases(path, decode_images=True)
    assert main(["validate", str(path)]) == 2
    assert "control image cannot be read" in capsys.readouterr().out
    assert main(["run", str(path), "--out", str(workdir / "out")]) == 1
    cases = {c["name"]: c for c in json.loads((workdir / "out" / "results.json").read_text())["cases"]}
    assert cases["good"]["status"] == "fail" and cases["broken"]["status"] == "error"  # good: baseline written
    assert "control image cannot be read" in cases["broken"]["reason"]


# Nothing raw in the report -------------------------------------------------------------------------------------------

_HIDDEN = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_visible_text_holds_no_invisible_character(text):
    import unicodedata

    from parity.core.visible import visible

    shown = visible(text)
    assert all(ch in "\n\t" or unicodedata.category(ch) not in _HIDDEN for ch in shown)
    if all(ch in "\n\t" or unicodedata.category(ch) not in _HIDDEN for ch in text):
        assert shown == text


def test_the_report_summary_and_terminal_show_invisible_characters_escaped(tmp_path, capsys):
    from parity.cli import _print_problem
    from parity.report.html import write_report
    from parity.report.summary import markdown

    hostile = "red\x1b[2J\u202eevil\x00 <b>x</b>"
    result = CaseResult(id=f"s::{hostile}", suite="s", suite_file="s.yaml", name=hostile, status=Status.ERROR,
                        reason=f"prompt {hostile} failed", error=hostile)
    run = RunInfo(started="now", finished="now", complete=True, device="cpu", base_model_override=None,
                  environment={}, command=f"parity run {hostile}")
    index = write_report(tmp_path, run, [result], False)
    _print_problem(result)
    html, summary, terminal = index.read_text(encoding="utf-8"), markdown(run, [result]), capsys.readouterr().err
    for shown in (html, summary, terminal):
        assert "\x1b" not in shown and "\u202e" not in shown and "\x00" not in shown
        assert "\\x1b[2J" in shown and "\\u202e" in shown
    assert "<b>x</b>" not in html and "<b>x</b>" not in summary  # and escaped as HTML where HTML is read


# The rest of the surface: any bytes as a LoRA or an image, any path as --out ----------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=300), st.builds(lambda n, rest: _header(n) + rest, st.integers(0, 2**64 - 1), st.binary(max_size=64))))
def test_any_bytes_as_a_lora_are_read_or_refused_with_the_file_named(tmp_path, data):
    from parity.cases.lorafile import inspect

    path = tmp_path / "any.safetensors"
    path.write_bytes(data)
    try:
        inspect(str(path))
    except ModelLoadError as exc:
        assert str(path) in exc.what and exc.fix


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=400), st.builds(lambda cut: (REPO / "cases" / "inputs" / "square.png").read_bytes()[:cut], st.integers(0, 400))))
def test_any_bytes_as_an_image_are_read_or_refused_with_the_file_named(tmp_path, data):
    from parity.core.images import open_with_notes

    path = tmp_path / "any.png"
    path.write_bytes(data)
    try:
        open_with_notes(path, "control image")
    except CaseRunError as exc:
        assert str(path) in exc.what and exc.fix


_names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00/"), min_size=1, max_size=30)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(_names, min_size=1, max_size=3), file_at=st.integers(-1, 2))
def test_any_out_path_is_usable_or_refused_before_anything_runs(tmp_path, parts, file_at):
    from parity.run.outdir import OutDirError, check_out_dir

    base = tmp_path / str(abs(hash((tuple(parts), file_at))))
    base.mkdir()
    target = base.joinpath(*parts)
    if 0 <= file_at < len(parts):  # a file where one of the folders should be
        blocker = base.joinpath(*parts[: file_at + 1])
        blocker.parent.mkdir(parents=True, exist_ok=True)
        if not blocker.exists():
            blocker.write_text("x")
    try:
        check_out_dir(target)
    except OutDirError as exc:
        assert exc.fix and str(target) in exc.what
    else:
        assert target.is_dir()


def test_a_long_case_shows_its_steps_on_a_terminal(monkeypatch):
    """The step bar appears once a case has run for tqdm's delay (3 s), on a terminal only. tqdm measures the
    delay with the clock its module imported (tqdm.std.time, read when the bar starts and after each step): the
    test sets that clock and moves it on at each step, so no real time passes."""
    import io

    import tqdm.std

    from parity.models.qwen.denoise import _shown_steps

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    now = [1000.0]
    monkeypatch.setattr(tqdm.std, "time", lambda: now[0])

    def run(stream, seconds_per_step: float) -> tuple[list[bool], bool]:
        """Four steps; whether the bar had been drawn when each began, and whether it was drawn at all."""
        monkeypatch.setattr(sys, "stderr", stream)
        drawn_before = []
        for _ in _shown_steps(range(4)):
            drawn_before.append("denoise" in stream.getvalue())
            now[0] += seconds_per_step
        return drawn_before, "denoise" in stream.getvalue() and "step" in stream.getvalue()

    # 1.1 s a step: past the delay after the third step (3.3 s), drawn from then on, never before
    assert run(Terminal(), 1.1) == ([False, False, False, True], True)
    # 0.7 s a step: the whole case (2.8 s) stays under the delay, no bar
    assert run(Terminal(), 0.7) == ([False] * 4, False)
    # off a terminal (captured, piped to a log): no bar however long the case runs
    assert run(io.StringIO(), 1.1) == ([False] * 4, False)
