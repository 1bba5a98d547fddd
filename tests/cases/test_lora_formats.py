"""LoRA files as ai-toolkit's trainer writes them (tests/trainer_lora.py), each against the reference server's own
loader and against what parity says of it.

The server's path is ai-toolkit-inference's `_load_lora` for a FUSE model: `load_lora_weights(dir, weight_name=…,
adapter_name="lora")` then `fuse_lora(adapter_names=["lora"], lora_scale=…)`, called here on a fresh tiny pipeline.
A file it loads must give parity's reference wiring the same weights bit for bit (and so the same render: one is
rendered through the stock call to show it); a file it refuses must be refused by `parity validate` and `parity run`
in the same words, naming the kind of network, the trainer setting that wrote it and what the server does.
"""

from __future__ import annotations

import json

import pytest
import torch
from oracle import server_generate
from paths import REPO
from trainer_lora import Network, save

from parity.cases import lorafile
from parity.cases.suite import load_cases
from parity.cli import main
from parity.core.errors import CaseFileError
from parity.render.engine import Engine
from parity.render.loading import load_pipeline
from parity.render.lora import FusedLora

# id: (the trainer setting it stands for, its network block, save.dtype)
LOADABLE = {
    "lora-fp16": ("network: {type: lora}, save: {dtype: float16}: the defaults", Network(), "float16"),
    "lora-bf16": ("save: {dtype: bf16}", Network(), "bf16"),
    "lora-fp32": ("save: {dtype: float32}", Network(), "float32"),
    "linear_alpha-8": ("network: {linear: 4, linear_alpha: 8}: no .alpha key is saved", Network(linear_alpha=8), "float16"),
    "transformer_only-false": ("network: {transformer_only: false}: img_in, txt_in, proj_out... too", Network(transformer_only=False), "float16"),
    "only_if_contains": ("network: {only_if_contains: [attn]}", Network(only_if_contains=("attn",)), "float16"),
    "ignore_if_contains": ("network: {ignore_if_contains: [mlp]}", Network(ignore_if_contains=("mlp",)), "float16"),
}
# id: (trainer setting, network, save.dtype, the server's exception and its text, what parity's message names)
REFUSED = {
    "lokr": ("network: {type: lokr}: the UI's default, lokr_full_rank", Network(type="lokr"), "float16",
             (ValueError, "should be empty at this point"), ("is a LoKr network", "`network: type: lokr`", "ComfyUI")),
    "lokr-rank-2": ("network: {type: lokr, lokr_full_rank: false, linear: 2}: lokr_w2_a/b", Network(type="lokr", lokr_full_rank=False, linear=2),
                    "bf16", (ValueError, "should be empty at this point"), ("is a LoKr network",)),
    "lokr-old": ("network: {type: lokr, old_lokr_format: true}: lycoris_ keys", Network(type="lokr", old_lokr_format=True), "float16",
                 (ValueError, "should be empty at this point"), ("LoKr (old lycoris_ keys)", "old_lokr_format: true")),
    "dora": ("network: {type: dora}", Network(type="dora"), "float16",
             (ValueError, "should be empty at this point"), ("is a DoRA network", "`network: type: dora`", "magnitude")),
    "fullrank": ("network: {type: fullrank}", Network(type="fullrank"), "float16",
                 (ValueError, "Missing lora_B weight"), ("is a full-rank network", "`network: type: fullrank`", "Missing lora_B weight")),
    "full_if_contains": ("network: {full_if_contains: [to_q]}", Network(full_if_contains=("to_q",)), "float16",
                         (ValueError, "should be empty at this point"), ("full weight differences", "full_if_contains", ".diff")),
    "all_layers": ("network: {all_layers: true}", Network(all_layers=True), "float16",
                   (ValueError, "should be empty at this point"), ("full weight differences", "all_layers")),
    "8bit": ("save: {dtype: 8bit}", Network(), "8bit",
             (NotImplementedError, "mul_cpu_reduced_float"), ("saved in float8", "`save: dtype: 8bit`", "mul_cpu_reduced_float")),
}


def server_fuse(pipe, path, scale=1.0) -> None:
    """ai-toolkit-inference's _load_lora for a FUSE model (src/pipelines/base.py)."""
    pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name="lora")
    pipe.fuse_lora(adapter_names=["lora"], lora_scale=scale)


@pytest.fixture(scope="module")
def transformer():
    return load_pipeline("tiny", ".", "cpu").transformer


@pytest.mark.parametrize("kind", list(LOADABLE))
def test_a_file_the_server_loads_gives_parity_its_weights_bit_for_bit(kind, transformer, tmp_path):
    _, network, dtype = LOADABLE[kind]
    path = save(tmp_path / f"{kind}.safetensors", transformer, network, dtype)
    lora = lorafile.inspect(str(path))
    assert lora.refusal() is None and lora.format is lorafile.LoraFormat.PEFT_LORA and not lora.alphas
    server, mine = load_pipeline("tiny", ".", "cpu"), load_pipeline("tiny", ".", "cpu")
    server_fuse(server, path, 0.8)
    FusedLora(mine).apply(str(path), 0.8)
    theirs = server.transformer.state_dict()
    assert all(torch.equal(value, theirs[key]) for key, value in mine.transformer.state_dict().items())


def test_a_loadable_trainer_file_renders_as_the_stock_call_renders_it(transformer, write_case, workdir):
    """One of them end to end: bf16, every linear of the transformer (transformer_only: false)."""
    save(workdir / "cases" / "loras" / "wide.safetensors", transformer, Network(transformer_only=False), "bf16")
    (case,) = load_cases(write_case(
        "loras: [{path: loras/wide.safetensors}]\nsample: {width: 64, height: 64, sample_steps: 2, guidance_scale: 4, "
        "neg: '', samples: [{prompt: a hat, ctrl_img_1: inputs/person.png}]}\n"
    ))
    engine = Engine("cpu")
    rendered = engine.render(case)
    mine = engine._loaded.pipe.image_processor.postprocess(rendered.decoded, output_type="pt")
    engine.close()
    server = load_pipeline("tiny", ".", "cpu")
    server_fuse(server, workdir / "cases" / "loras" / "wide.safetensors")
    eff = case.effective
    images = [engine.images(p) for p in eff.control_images]
    theirs = server_generate(server, eff.prompt, eff.negative_prompt, images, eff.width, eff.height, eff.steps, eff.guidance_scale, eff.seed)
    assert torch.equal(mine, theirs)


@pytest.mark.parametrize("kind", list(REFUSED))
def test_the_server_refuses_it_and_parity_says_so_in_validate_and_run(kind, transformer, write_case, workdir, capsys):
    _, network, dtype, (error, raised), named = REFUSED[kind]
    path = save(workdir / "cases" / "loras" / "trained.safetensors", transformer, network, dtype)
    with pytest.raises(error, match=raised.replace("[", r"\[")):
        server_fuse(load_pipeline("tiny", ".", "cpu"), path)

    case_file = write_case("loras: [{path: loras/trained.safetensors}]\nsample: {samples: [{prompt: a, ctrl_img_1: inputs/square.png}]}\n")
    with pytest.raises(CaseFileError) as caught:
        load_cases(case_file)
    (problem,) = caught.value.problems
    said = f"{problem.message}. Fix: {problem.fix}"
    assert problem.field == "loras[0].path" and str(path) in problem.message
    assert all(text in said for text in named), said
    assert "the reference server refuses it" in said

    capsys.readouterr()
    assert main(["validate", str(case_file)]) == 2
    validate_said = capsys.readouterr()
    assert problem.message in validate_said.out + validate_said.err
    out = workdir / "out"
    assert main(["run", str(case_file), "--out", str(out)]) == 2
    data = json.loads((out / "results.json").read_text())
    (row,) = data["cases"]
    assert row["status"] == "error" and problem.message in row["error"]  # run says what validate says
    (audit,) = data["run"]["loras"]
    assert audit["server_action"] == "refuses it" and not audit["served_as_trained"]
    assert audit["format"] == lorafile.inspect(str(path)).format.value + "".join(
        f" + {k.value}" for k in lorafile.inspect(str(path)).mixed
    )


def test_the_trainer_ignores_linear_alpha_for_every_qwen_network(transformer, tmp_path):
    """PEFT-format networks (every Qwen arch) save no .alpha; LoKr saves alpha = its dim (scale 1); only the old LoKr
    format keeps the job's linear_alpha."""
    for network in (Network(linear_alpha=8), Network(type="dora", linear_alpha=8), Network(type="fullrank", linear_alpha=8)):
        assert not lorafile.inspect(str(save(tmp_path / "a.safetensors", transformer, network))).alphas
    lokr = lorafile.inspect(str(save(tmp_path / "b.safetensors", transformer, Network(type="lokr", lokr_full_rank=False, linear=2, linear_alpha=8), "float32")))
    assert set(lokr.alphas.values()) == {2.0}  # alpha = dim: the job's 8 is not used
    old = lorafile.inspect(str(save(tmp_path / "c.safetensors", transformer, Network(type="lokr", old_lokr_format=True, lokr_full_rank=False, linear=2, linear_alpha=8), "float32")))
    assert set(old.alphas.values()) == {8.0}


def test_a_lora_for_another_model_is_refused_as_the_server_refuses_it(transformer, write_case, workdir):
    """No module matches: the server raises PEFT's NoMatchingPeftModuleError (it does not render the base model)."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(REPO / "cases" / "loras" / "tiny.safetensors"))
    path = workdir / "cases" / "loras" / "other.safetensors"
    save_file({k.replace("transformer_blocks", "double_blocks"): v for k, v in tensors.items()}, str(path))
    with pytest.raises(ValueError) as raised:
        server_fuse(load_pipeline("tiny", ".", "cpu"), path)
    assert type(raised.value).__name__ == "NoMatchingPeftModuleError"
    (case,) = load_cases(write_case(
        "loras: [{path: loras/other.safetensors}]\nsample: {width: 64, height: 64, sample_steps: 2, samples: [{prompt: a, ctrl_img_1: inputs/square.png}]}\n"
    ))
    from parity.core.errors import LoraRefused

    with pytest.raises(LoraRefused) as refused:
        Engine("cpu").render(case)
    text = str(refused.value)
    assert "none of its 28 target modules exists" in text and "NoMatchingPeftModuleError" in text
    assert "silently" not in text


def test_a_partly_matching_lora_says_the_server_applies_the_rest(workdir, write_case):
    """Half the modules match: the server logs `unexpected keys` and applies the others; parity refuses unless
    allow_partial_lora, then notes what the server drops and audits it."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(REPO / "cases" / "loras" / "tiny.safetensors"))
    path = workdir / "cases" / "loras" / "half.safetensors"
    save_file({k.replace("transformer_blocks.1.", "transformer_blocks.9."): v for k, v in tensors.items()}, str(path))
    server = load_pipeline("tiny", ".", "cpu")
    server_fuse(server, path)
    from parity.render.lora import is_tuner

    assert sum(is_tuner(m) for m in server.transformer.modules()) == 14
    text = "loras: [{path: loras/half.safetensors}]\nsample: {width: 64, height: 64, sample_steps: 2, samples: [{prompt: a, ctrl_img_1: inputs/square.png}]}\n"
    assert main(["run", str(write_case(text)), "--out", str(workdir / "strict")]) == 1
    (row,) = json.loads((workdir / "strict" / "results.json").read_text())["cases"]
    assert "14 of 28 target modules match nothing" in row["error"] and "applies the 14 that match" in row["error"]
    main(["run", str(write_case("allow_partial_lora: true\n" + text, "allowed.yaml")), "--out", str(workdir / "allowed")])
    data = json.loads((workdir / "allowed" / "results.json").read_text())
    (audit,) = data["run"]["loras"]
    assert audit["server_action"] == "applies part of it and drops the rest" and audit["modules_matched"] == 14
    assert len(audit["dropped"]) == 14 and not audit["served_as_trained"]


def test_the_audit_of_a_lora_served_as_trained(workdir, write_case):
    from paths import TINY_LORA

    path = write_case("training: {rank: 4, alpha: 8}\nloras: [{path: loras/tiny.safetensors}]\nsample: {width: 64, height: 64, sample_steps: 2, samples: [{prompt: a, ctrl_img_1: inputs/square.png}]}\n")
    main(["run", str(path), "--out", str(workdir / "out")])
    data = json.loads((workdir / "out" / "results.json").read_text())
    (audit,) = data["run"]["loras"]
    assert audit["path"] == str(workdir / "cases" / "loras" / "tiny.safetensors")
    assert audit["format"] == "PEFT LoRA" and audit["dtype"] == "float16" and audit["rank"] == "4"
    assert audit["modules_in_file"] == audit["modules_matched"] == 28 and audit["linears_in_model"] == 34
    assert audit["server_action"] == "applies all of it" and audit["served_as_trained"]
    assert audit["alpha_trainer"] == "= rank (the job's linear_alpha 8 at rank 4 was not used)"
    assert audit["alpha_server"] == "= rank (no .alpha keys)"
    assert audit["line"].startswith("tiny.safetensors: served as trained — PEFT LoRA")
    html = (workdir / "out" / "index.html").read_text()
    assert "LoRA audit" in html and "served as trained" in html
    assert TINY_LORA.name in html


@pytest.mark.parametrize("partial", [False, True], ids=["every-lora_B-zero", "targeted-modules-zero"])
def test_a_lora_that_changes_nothing_says_so(partial, transformer, workdir, write_case):
    """A step-0 checkpoint (ai-toolkit initialises lora_B to zeros) fuses to the base model exactly: the case and the
    audit say so. `targeted-modules-zero`: the modules the model has are zero, the nonzero ones match nothing."""
    from safetensors.torch import save_file
    from trainer_lora import state_dict

    tensors = state_dict(transformer, Network(), zero_up=True)
    if partial:
        nonzero = state_dict(transformer, Network(only_if_contains=("transformer_blocks.1.",)), seed=3)
        tensors.update({k.replace("transformer_blocks.1.", "transformer_blocks.9."): v for k, v in nonzero.items()})
    save_file(tensors, str(workdir / "cases" / "loras" / "step0.safetensors"))
    extra = "allow_partial_lora: true\n" if partial else ""
    path = write_case(extra + "loras: [{path: loras/step0.safetensors}]\nsample: {width: 64, height: 64, sample_steps: 2, samples: [{prompt: a, ctrl_img_1: inputs/square.png}]}\n")
    main(["run", str(path), "--out", str(workdir / "out")])
    data = json.loads((workdir / "out" / "results.json").read_text())
    (row,) = data["cases"]
    assert any("this LoRA changes nothing: every lora_B is zero" in note for note in row["notes"]), row["notes"]
    (audit,) = data["run"]["loras"]
    assert audit["changes_nothing"].startswith("this LoRA changes nothing: every lora_B is zero")
    assert "changes nothing" in audit["line"]


def test_a_file_with_alpha_keys_is_applied_with_them_by_the_server_and_without_by_the_trainer(tmp_path):
    """Not a file ai-toolkit writes for Qwen, but one users serve (converted): the server's loader bakes alpha / rank
    into the weights; LoraScale(alpha=FILE) is exactly its fuse, LoraScale(alpha=RANK) fuses at the trainer's
    strength (the scale divided by alpha / rank, here exact: 2)."""
    from safetensors.torch import load_file, save_file

    from parity.facts.scale import Alpha, LoraScale
    from parity.models.knobs import LoraMethod
    from parity.render.lora import LoraState

    tensors = load_file(str(REPO / "cases" / "loras" / "tiny.safetensors"))
    tensors.update({k.replace(".lora_A.weight", ".alpha"): torch.tensor(8.0) for k in list(tensors) if k.endswith(".lora_A.weight")})
    path = tmp_path / "alpha8.safetensors"
    save_file(tensors, str(path))
    lora = lorafile.inspect(str(path))
    assert lora.alpha_scale() == 2.0 and lora.alpha_text == "alpha 8 / rank 4" and lora.trainer_setting.startswith("another tool, or a converted file")
    for alpha, server_scale in ((Alpha.FILE, 0.6), (Alpha.RANK, 0.3)):
        server, mine = load_pipeline("tiny", ".", "cpu"), load_pipeline("tiny", ".", "cpu")
        server_fuse(server, path, server_scale)
        LoraState.for_pipe(mine).apply(LoraMethod.DIFFUSERS_FUSE, str(path), LoraScale(0.6, alpha))
        theirs = server.transformer.state_dict()
        assert all(torch.equal(v, theirs[k]) for k, v in mine.transformer.state_dict().items()), alpha


@pytest.mark.parametrize("alpha", [torch.tensor(0.0), torch.ones(3)], ids=["zero", "not-one-number"])
def test_odd_alpha_keys_are_said_as_the_server_treats_them(alpha, workdir, write_case):
    """`.alpha` 0: the server's loader multiplies the weights by alpha / rank, so the LoRA changes nothing (said, the
    case renders). An `.alpha` of several numbers: the loader raises (`cannot be converted to Scalar`): refused."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(REPO / "cases" / "loras" / "tiny.safetensors"))
    tensors.update({k.replace(".lora_A.weight", ".alpha"): alpha.clone() for k in list(tensors) if k.endswith(".lora_A.weight")})
    path = workdir / "cases" / "loras" / "odd.safetensors"
    save_file(tensors, str(path))
    if alpha.numel() > 1:
        with pytest.raises(RuntimeError, match="cannot be converted to Scalar"):
            server_fuse(load_pipeline("tiny", ".", "cpu"), path)
    text = "loras: [{path: loras/odd.safetensors}]\nsample: {width: 64, height: 64, sample_steps: 2, samples: [{prompt: a, ctrl_img_1: inputs/square.png}]}\n"
    main(["run", str(write_case(text)), "--out", str(workdir / "out")])
    data = json.loads((workdir / "out" / "results.json").read_text())
    (row,) = data["cases"]
    if alpha.numel() > 1:
        assert row["status"] == "error" and "28 .alpha keys hold more than one number" in row["error"]
        assert data["run"]["loras"][0]["server_action"] == "refuses it"
    else:
        assert any("every .alpha key in the file is 0" in note for note in row["notes"])
        assert data["run"]["loras"][0]["changes_nothing"].startswith("this LoRA changes nothing: every .alpha key")
