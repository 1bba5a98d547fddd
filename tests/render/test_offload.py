"""The reference server's offload modes: the choice (pure), the case-file key and option, the CPU's refusal, and on
a GPU each mode against the server's own path in that mode, bit for bit (torch.equal).

The GPU tests need CUDA (`pytest -m gpu`): diffusers refuses model and sequential offload without an accelerator,
as the server does, so they cannot be emulated on the CPU (diffusers' offload onto a `cpu:0` device moves the
weights to new buffers, and the CPU's matrix kernels round differently by alignment: not the GPU's ordering).
"""

import pytest
import torch
from devices import gpu_test
from oracle import server_generate
from paths import TINY_LORA, small_suite

from parity.cases.suite import load_cases
from parity.core import offload
from parity.core.errors import CaseFileError
from parity.results.record import Status

GB = 10**9


def test_a_mode_asked_for_is_the_mode_used():
    for mode in offload.MODES:
        assert offload.choose(mode, "cuda:0") == offload.Choice(mode, "asked for")


def test_auto_is_none_on_the_cpu():
    choice = offload.choose("auto", "cpu")
    assert choice.mode == "none" and "CPU" in choice.reason


@pytest.mark.parametrize(
    "budget_gb, mode",
    [(80, "none"), (65, "none"), (64, "model"), (48, "model"), (47, "sequential"), (10, "sequential"), (1, "sequential")],
)
def test_auto_takes_the_first_mode_that_fits(budget_gb, mode):
    # Qwen-Image-Edit-2511 in bf16: transformer 40.9, text encoder 16.6, VAE 0.3 GB; 3.5 GB of activations, kept
    # free twice over: none needs 64.8 GB, model 47.9, sequential 7
    need = offload.Need({"transformer": 40.9 * GB, "text_encoder": 16.6 * GB, "vae": 0.3 * GB}, int(3.5 * GB), "c1")
    choice = offload.choose("auto", "cuda:0", need, int(budget_gb * GB))
    assert choice.mode == mode
    assert f"cuda:0 allows {budget_gb:.1f} GB" in choice.reason and "c1" in choice.reason
    if budget_gb == 1:
        assert "last resort" in choice.reason


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="none, model, sequential, auto"):
        offload.choose("cpu", "cuda:0")


def test_the_case_file_key_names_the_modes(write_case):
    path = write_case(small_suite(["{prompt: a, ctrl_img_1: inputs/square.png}"], extra="offload: modle\n"))
    with pytest.raises(CaseFileError) as info:
        load_cases(path)
    text = str(info.value)
    assert str(path) in text and "offload" in text and "modle" in text and "model" in text
    path = write_case(small_suite(["{prompt: a, ctrl_img_1: inputs/square.png}"], extra="offload: sequential\n"))
    assert [c.offload for c in load_cases(path)] == ["sequential"]
    path = write_case(small_suite(["{prompt: a, ctrl_img_1: inputs/square.png}"]))
    assert [c.offload for c in load_cases(path)] == ["none"]  # the server's default


def test_on_the_cpu_an_offload_mode_is_an_error_row_and_the_override_runs_it(write_case, workdir):
    from parity.run.session import ParitySession, RunOptions

    path = write_case(small_suite(["{name: a, prompt: a, ctrl_img_1: inputs/square.png}"], extra="offload: model\n"))
    case = load_cases(path)[0]
    session = ParitySession(RunOptions(out_dir=workdir / "out"))
    refused = session.run_case(case)
    assert refused.status is Status.ERROR
    assert "offload model needs a GPU" in refused.reason and "--offload none" in refused.reason
    assert session._engine._loaded is None  # refused before anything was loaded
    session.finish()
    again = ParitySession(RunOptions(out_dir=workdir / "out2", offload="auto"))
    ran = again.run_case(case)
    again.finish()
    assert ran.status is Status.FAIL and "baseline was missing" in ran.reason  # rendered: the first pinned run
    assert ran.offload == "none"
    assert any(n.startswith("offload none (auto on the CPU") for n in ran.notes)


def test_a_bad_offload_option_is_a_usage_error(capsys, workdir):
    from parity.cli import main

    assert main(["run", str(workdir / "cases"), "--offload", "half"]) == 2
    assert "offload must be one of none, model, sequential, auto, not 'half'" in capsys.readouterr().err


# --- on a GPU: each mode against the server's own path in that mode ------------------------------------------------

SUITE = [
    "{name: one, prompt: 'sks a hat', ctrl_img_1: inputs/person.png, network_multiplier: 0.7}",
    "{name: two, prompt: 'sks three', ctrl_img_1: inputs/hat.png, ctrl_img_2: inputs/landscape.png, network_multiplier: 1.0}",
]


def server_in_mode(mode: str, case):
    """ai-toolkit-inference's load for one request, in an offload mode: from_pretrained, the mode, the LoRA loaded
    and fused at the case's scale (a fresh process per scale), then its per-prompt path and the stock call."""
    from diffusers import QwenImageEditPlusPipeline

    from parity.core.images import open_rgb
    from parity.models import get_model

    # the server's own calls (src/pipelines/base.py load / _apply_offload_mode), not parity's loading code
    pipe = QwenImageEditPlusPipeline.from_pretrained(str(get_model("qwen_image_edit_plus_2511").ensure_tiny()), torch_dtype=torch.bfloat16)
    pipe.set_progress_bar_config(disable=True)
    if mode == "sequential":
        pipe.enable_sequential_cpu_offload()
    elif mode == "model":
        pipe.enable_model_cpu_offload()
    else:
        pipe.to("cuda")
    pipe.load_lora_weights(str(TINY_LORA.parent), weight_name=TINY_LORA.name, adapter_name="lora", local_files_only=True)
    pipe.fuse_lora(adapter_names=["lora"], lora_scale=case.effective.lora_scale)
    eff = case.effective
    images = [open_rgb(p, "control") for p in eff.control_images]
    out = server_generate(pipe, eff.prompt, eff.negative_prompt, images, eff.width, eff.height, eff.steps, eff.guidance_scale, eff.seed)
    return pipe, out


@gpu_test
@pytest.mark.parametrize("mode", offload.MODES)
def test_each_mode_equals_the_servers_path_in_that_mode(write_case, mode):
    from parity.render.engine import Engine

    path = write_case(small_suite(SUITE, extra=f"offload: {mode}\n").replace("guidance_scale: 1", "guidance_scale: 4"))
    cases = load_cases(path)
    engine = Engine("cuda:0")
    engine.expect(cases)
    for case in cases:  # the second case switches the scale on the loaded model
        rendered = engine.render(case)
        pipe, expected = server_in_mode(mode, case)
        mine = pipe.image_processor.postprocess(rendered.decoded, output_type="pt")
        assert rendered.offload == mode
        assert torch.equal(mine, expected), (mode, case.name)
    engine.close()



@gpu_test
def test_model_offload_fuses_on_the_cpu_so_its_weights_differ_from_none():
    """The server's model offload: the LoRA is fused while the transformer sits on the CPU, where PEFT computes the
    bf16 delta in float32; so the fused weights, and the pixels, are not offload none's."""
    from parity.render.loading import place, read_pipeline
    from parity.render.lora import FusedLora

    fused = {}
    for mode in ("none", "model"):
        pipe = read_pipeline("tiny", ".", "cuda")
        place(pipe, mode, "cuda:0")
        FusedLora(pipe).apply(str(TINY_LORA), 0.7)
        fused[mode] = {k: v.to("cpu") for k, v in pipe.transformer.state_dict().items()}
        assert pipe.transformer.device.type == ("cuda" if mode == "none" else "cpu")
    differ = [k for k in fused["none"] if not torch.equal(fused["none"][k], fused["model"][k])]
    assert differ and all(".base_layer.weight" in k for k in differ)


@gpu_test
def test_sequential_offload_renders_without_the_lora_as_the_server_does_and_says_so(write_case):
    """Under sequential offload diffusers' fuse_lora merges into meta placeholders: the server's image is the base
    model's. parity renders the same bits, and its note says the LoRA is not applied."""
    from parity.render.engine import Engine

    item = ["{name: one, prompt: 'sks a hat', ctrl_img_1: inputs/person.png, network_multiplier: 0.7}"]
    with_lora = load_cases(write_case(small_suite(item, extra="offload: sequential\n"), "seq.yaml"))[0]
    without = load_cases(write_case(small_suite(item, extra="loras: []\n").replace("loras: [{path: loras/tiny.safetensors}]\n", ""), "bare.yaml"))[0]
    assert with_lora.loras and not without.loras
    seq = Engine("cuda:0").render(with_lora)
    bare = Engine("cuda:0").render(without)
    assert torch.equal(seq.decoded, bare.decoded)
    assert any("the LoRA is NOT applied" in n for n in seq.notes)
    assert any(n.startswith("offload sequential (asked for)") for n in seq.notes)


@gpu_test
def test_auto_on_a_gpu_sizes_the_run_against_what_the_gpu_allows(write_case, monkeypatch):
    """Uncapped, the tiny model and its case fit: none. Under a 1 GB cap even the activations estimated for the case
    do not: sequential, the last resort. Each says so with its numbers."""
    import parity.render.pool as pool_module
    from parity.render.engine import Engine

    monkeypatch.setattr(pool_module, "POOL", None)  # every engine loads and chooses anew
    case = load_cases(write_case(small_suite(["{name: one, prompt: 'sks a hat', ctrl_img_1: inputs/person.png}"], extra="offload: auto\n")))[0]
    roomy = Engine("cuda:0")
    roomy.expect([case])
    first = roomy.render(case)
    roomy.close()
    assert first.offload == "none"
    assert any(n.startswith("offload none (auto: everything fits") and "cuda:0 allows" in n for n in first.notes)
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(1e9 / total, 0)
    try:
        tight = Engine("cuda:0")
        tight.expect([case])
        second = tight.render(case)
        tight.close()
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, 0)
    assert second.offload == "sequential"
    assert any("last resort" in n and "cuda:0 allows" in n for n in second.notes)
