"""Qwen-Image and Qwen-Image-2512 (model ids `qwen_image`, `qwen_image_2512`: text to image): their tiny models, the
reference wiring bit for bit against the server's own path (SET_ADAPTERS for Qwen-Image, FUSE for 2512, then the
stock QwenImagePipeline call with the prompt strings), the preview wiring against the trainer's call, the model's
rules in the resolver, the tiny models' sensitivity and the diagnosis."""

import json

import pytest
import torch
from devices import DEVICES
from paths import TINY_LORA

from parity.cases.schema import CaseFileError
from parity.cases.suite import load_cases
from parity.models import get_model
from parity.models.knobs import Knob, LoraMethod
from parity.render.engine import Engine
from parity.render.loading import load_pipeline

LONG = "a red hat " * 200  # 600 tokens: the stock call keeps the first 512 (its max_sequence_length)
SUITE = f"""
model: {{model}}
loras: [{{{{path: loras/tiny.safetensors}}}}]
sample:
  width: 80
  height: 64
  sample_steps: 2
  guidance_scale: 4
  neg: "blurry"
  seed: 5
  samples:
    - {{{{name: long, prompt: "{LONG}"}}}}
    - {{{{name: no-negative, prompt: "a hat", neg: ""}}}}
    - {{{{name: no-cfg, prompt: "a hat", guidance_scale: 1.0}}}}
"""


def suite(model: str) -> str:
    return SUITE.format(model=model)


def server_pipe(model: str, method: LoraMethod, scale: float, device: str = "cpu"):
    """ai-toolkit-inference's `_load_lora` on a fresh load (src/pipelines/base.py): SET_ADAPTERS keeps the adapter
    (a scale other than 1 set by set_weights_and_activate_adapters), FUSE fuses it at the scale."""
    from diffusers.utils.peft_utils import set_weights_and_activate_adapters

    pipe = load_pipeline("tiny", ".", device, model_id=model)
    pipe.load_lora_weights(str(TINY_LORA.parent), weight_name=TINY_LORA.name, adapter_name="lora", local_files_only=True)
    if method is LoraMethod.DIFFUSERS_FUSE:
        pipe.fuse_lora(adapter_names=["lora"], lora_scale=scale)
    elif scale != 1.0:
        set_weights_and_activate_adapters(pipe.transformer, ["lora"], [scale])
    return pipe


def server_call(pipe, eff):
    """QwenImagePipeline._run_inference: the prompt strings, true CFG against the negative ("" when none)."""
    with torch.inference_mode():
        return pipe(
            prompt=eff.prompt, negative_prompt=eff.negative_prompt or "", width=eff.width, height=eff.height,
            num_inference_steps=eff.steps, true_cfg_scale=eff.guidance_scale,
            generator=torch.Generator("cpu").manual_seed(eff.seed), output_type="pt",
        ).images


def test_the_tiny_models_are_text_to_image_pipelines_of_the_real_classes():
    one, other = (load_pipeline("tiny", ".", "cpu", model_id=m) for m in ("qwen_image", "qwen_image_2512"))
    for model in ("qwen_image", "qwen_image_2512"):
        index = json.loads((get_model(model).ensure_tiny() / "model_index.json").read_text())
        assert index["_class_name"] == "QwenImagePipeline" and "processor" not in index
    for pipe in (one, other):
        assert pipe.vae_scale_factor == 8  # the real VAE's: sizes in steps of 16 stay as the server floors them
        assert pipe.transformer.config.zero_cond_t is False
        system = pipe.prompt_template_encode.split("{}")[0]
        assert len(pipe.tokenizer(system)["input_ids"]) == pipe.prompt_template_encode_start_idx == 34
    for name in ("text_encoder", "vae"):
        a, b = getattr(one, name).state_dict(), getattr(other, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    key = "transformer_blocks.0.attn.to_q.weight"
    assert not torch.equal(one.transformer.state_dict()[key], other.transformer.state_dict()[key])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("model, method", [("qwen_image", LoraMethod.DIFFUSERS_ADAPTER)])
def test_the_text_to_image_branches_equal_the_servers_path(write_case, model, method, device):
    """Beyond the model contract, the text-to-image pipeline's own branches against a fresh server process:
    `long` proves the 512-token cut, `no-negative` the server's "" negative (true CFG still on), `no-cfg` guidance 1
    (the stock call skips the negative pass)."""
    cases = load_cases(write_case(suite(model)))
    engine = Engine(device)
    engine.expect(cases)
    for case in cases:
        reference, _ = engine.wirings(case)
        assert reference.value(Knob.LORA_METHOD) is method and reference.value(Knob.SIZE) == (80, 64)
        rendered = engine.render(case)
        stock = server_call(server_pipe(model, method, case.effective.lora_scale, device), case.effective)
        mine = engine._loaded.pipe.image_processor.postprocess(rendered.decoded, output_type="pt")
        assert torch.equal(mine, stock), case.name
    engine.close()


def test_a_control_image_is_refused_with_the_fix(write_case):
    with pytest.raises(CaseFileError) as info:
        load_cases(write_case("model: qwen_image\nsample:\n  samples:\n    - {prompt: a, ctrl_img_1: inputs/hat.png}\n"))
    (problem,) = info.value.problems
    assert problem.field == "sample.samples[0]" and "qwen_image is text to image" in problem.message
    assert "remove ctrl_img" in problem.fix


def test_a_preview_of_another_size_is_diagnosed_and_the_size_named(write_case, workdir):
    """`parity run --diagnose` on a training preview that the trainer drew at its own size (80 floored to 64 by
    its divisor 32, where the server keeps 80): the comparison cannot measure pixels, the diagnosis still runs and
    names the size among the knobs that explain the preview."""
    from parity.cli import main
    from parity.core.images import save_png

    text = suite("qwen_image").split("  samples:")[0] + "  samples:\n    - {name: scaled, prompt: sks a hat}\n"
    (case,) = load_cases(write_case(text, "pinned.yaml"))
    engine = Engine("cpu")
    _, preview = engine.wirings(case)
    save_png(engine.render(case, preview).image, workdir / "cases" / "p.png")  # the trainer's picture, 64x64
    engine.close()
    text = text.replace("model: qwen_image", "model: qwen_image\nbaseline_kind: preview")
    path = write_case(text.replace("prompt: sks a hat}", "prompt: sks a hat, baseline: p.png}"))
    assert main(["run", str(path), "--diagnose", "--out", str(workdir / "out")]) == 1
    (row,) = json.loads((workdir / "out" / "results.json").read_text())["cases"]
    assert row["output_size"] == [80, 64] and row["baseline_size"] == [64, 64]
    diagnosis = row["diagnosis"]
    assert Knob.SIZE.value in diagnosis["explained_by"] and diagnosis["verdict"].startswith("mismatch explained by: ")
    assert "(another size -> SSIM " in diagnosis["verdict"]
    assert diagnosis["ranked"][0]["knob"] == Knob.SIZE.value  # the only flip that reaches the preview's size
    html = (workdir / "out" / "index.html").read_text()
    assert f"{Knob.SIZE.value}: another size -&gt; SSIM" in html and "another size → SSIM" in html
