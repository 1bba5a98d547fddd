"""Qwen-Image-Edit-2509 (model id `qwen_image_edit_plus`): its tiny model, and both wirings bit for bit against the
server's SET_ADAPTERS path with the stock call and against a replay of the trainer's sampler (torch.equal)."""

import pytest
import torch
from devices import DEVICES
from oracle import server_generate
from paths import TINY_LORA
from preview_oracle import TrainerLora, trainer_generate

from parity.cases.suite import load_cases
from parity.models import get_model
from parity.models.knobs import Knob, LoraMethod
from parity.render.engine import Engine
from parity.render.loading import load_pipeline

MODEL = "qwen_image_edit_plus"
SUITE = """
model: qwen_image_edit_plus
loras: [{path: loras/tiny.safetensors}]
sample:
  width: 64
  height: 64
  sample_steps: 2
  guidance_scale: 4
  neg: "blurry"
  seed: 5
  samples:
    - {name: one, prompt: "sks a hat", ctrl_img_1: inputs/person.png, ctrl_img_2: inputs/hat.png, network_multiplier: 0.7}
    - {name: two, prompt: "sks a square", ctrl_img_1: inputs/landscape.png}
"""


@pytest.fixture(scope="module")
def pipe_2509():
    return load_pipeline("tiny", ".", "cpu", model_id=MODEL)


def test_the_tiny_2509_is_the_2511_layout_with_zero_cond_t_off(pipe_2509, tiny_pipe):
    """Same classes and sizes; the text encoder and the VAE are the 2511's (so control latents are shared), the
    transformer is drawn from its own seed."""
    mine, theirs = ({k: v for k, v in p.transformer.config.items() if k != "_name_or_path"} for p in (pipe_2509, tiny_pipe))
    assert mine.pop("zero_cond_t") is False and theirs.pop("zero_cond_t") is True
    assert mine == theirs
    for name in ("text_encoder", "vae"):
        a, b = getattr(pipe_2509, name).state_dict(), getattr(tiny_pipe, name).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    a, b = pipe_2509.transformer.state_dict(), tiny_pipe.transformer.state_dict()
    assert a.keys() == b.keys() and not torch.equal(a["transformer_blocks.0.attn.to_q.weight"], b["transformer_blocks.0.attn.to_q.weight"])
    assert get_model(MODEL).ensure_tiny() != get_model("qwen_image_edit_plus_2511").ensure_tiny()


@pytest.mark.parametrize("device", DEVICES)
def test_reference_wiring_equals_the_servers_set_adapters_path(write_case, pipe_2509, device):
    """The server's QwenImageEditPlus2509Pipeline: load_lora_weights, then (scale != 1) set_weights_and_activate_
    adapters, then its per-prompt path and the stock call; a scale change is its set_lora_scale (the same call,
    absolute, so the server's running process equals a fresh one)."""
    from diffusers.utils.peft_utils import set_weights_and_activate_adapters

    cases = load_cases(write_case(SUITE))
    engine = Engine(device)
    engine.expect(cases)
    # the module's own load of the 2509 tiny model (not the engine's), or a fresh one on the GPU
    server = pipe_2509 if device == "cpu" else load_pipeline("tiny", ".", device, model_id=MODEL)
    server.load_lora_weights(str(TINY_LORA.parent), weight_name=TINY_LORA.name, adapter_name="lora", local_files_only=True)
    current = 1.0
    try:
        for case in cases:
            reference, _ = engine.wirings(case)
            assert reference.value(Knob.LORA_METHOD) is LoraMethod.DIFFUSERS_ADAPTER
            rendered = engine.render(case)
            scale = case.effective.lora_scale
            if scale != current:
                set_weights_and_activate_adapters(server.transformer, ["lora"], [scale])
                current = scale
            eff = case.effective
            images = [engine.images(p) for p in eff.control_images]
            stock = server_generate(server, eff.prompt, eff.negative_prompt, images, eff.width, eff.height, eff.steps, eff.guidance_scale, eff.seed)
            mine = server.image_processor.postprocess(rendered.decoded, output_type="pt")
            assert torch.equal(mine, stock), case.name
            assert "lora_snapshot" not in rendered.timings  # an adapter never changes the base weights: no copy made
    finally:  # the module's pipeline goes back without the adapter, whatever failed
        server.unload_lora_weights()
        engine.close()


def test_preview_wiring_equals_the_trainer_replay(write_case, pipe_2509):
    """ai-toolkit samples 2509 with the 2511 code path (arch qwen_image_edit_plus): merged in float32 here."""
    case = load_cases(write_case(SUITE.replace("network_multiplier: 0.7", "network_multiplier: 1.0")))[0]
    engine = Engine("cpu")
    _, preview = engine.wirings(case)
    assert preview.value(Knob.LORA_METHOD) is LoraMethod.AITK_MERGE
    mine = engine.render(case, preview)
    lora = TrainerLora(pipe_2509, str(TINY_LORA))
    lora.merge_in(case.requested.lora_scale)
    try:
        images = [engine.images(p) for p in case.effective.control_images]
        oracle = trainer_generate(
            pipe_2509, case.effective.prompt, case.preview.negative_prompt, images, images, case.preview.width,
            case.preview.height, case.effective.steps, case.effective.guidance_scale, case.effective.seed, False, False,
        )
    finally:
        lora.remove()
    engine.close()
    assert torch.equal(mine.decoded, oracle)


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    from test_preview import make_ablation

    return make_ablation(tmp_path_factory, Engine("cpu"), model=MODEL)


@pytest.mark.parametrize("knob", [Knob.CFG_RENORM, Knob.TEXT_IMAGE_SIZE, Knob.LORA_SCALE], ids=lambda k: k.name)
def test_a_planted_knob_is_named_first(ablation, knob):
    """--diagnose on 2509: a preview that differs from the reference in one knob is explained by that knob alone."""
    from test_preview import planted_knob_is_named_first

    case, reference, _, _ = ablation
    assert case.model == MODEL and reference.value(Knob.LORA_METHOD) is LoraMethod.DIFFUSERS_ADAPTER
    planted_knob_is_named_first(ablation, knob)
