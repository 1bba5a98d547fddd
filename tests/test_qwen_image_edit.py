"""Qwen-Image-Edit (model id `qwen_image_edit`): both wirings bit for bit against independent replays of the server's
QwenImageEditPipeline path and of the trainer's qwen_image_edit sampler (torch.equal), the diagnosis of its own
knobs, and the resolver's one-control-image rule."""

import json

import pytest
import torch
from devices import DEVICES
from edit_oracle import server_generate, trainer_generate
from paths import TINY_LORA
from preview_oracle import TrainerLora

from parity.cases.suite import load_cases
from parity.core.errors import CaseFileError
from parity.models import MODELS, get_model
from parity.models.knobs import Knob, LoraMethod, differing
from parity.models.qwen.edit_knobs import VaeResize
from parity.render.engine import Engine
from parity.render.loading import load_pipeline

MODEL = "qwen_image_edit"
# Every test here takes the 2:1 landscape picture: non-square (the server's transposed text-image size) and not the
# output size (the first resize's kernel shows), and one picture keeps it lean. The pipeline encodes its control
# image at ~1 MP (3 s on 2 CPU cores) and the stock call, which the oracles run, encodes it every time; the
# engine's pooled model caches each resized picture's latents for the tests after.
SUITE = """
model: qwen_image_edit
loras: [{path: loras/tiny.safetensors}]
sample:
  width: 64
  height: 64
  sample_steps: 2
  guidance_scale: 4
  neg: "blurry"
  seed: 5
  samples:
    - {name: a-hat, prompt: "sks a hat", ctrl_img: inputs/landscape.png, network_multiplier: 0.7}
    - {name: red-sky, prompt: "sks red sky", ctrl_img: inputs/landscape.png}
"""
# test_preview's ablation case for this model: the 2:1 picture; no low_vram (VAE tiling would add two ~1 MP
# encodes and is the Edit-Plus tests' knob, the same code here); 2 steps (the planted knobs here act at any count).
ABLATION = """
loras: [{path: loras/tiny.safetensors, network_multiplier: 1.0}]  # the request scale: sample 0 asks 0.7
training: {rank: 4, alpha: 2, do_cfg_norm: true}
sample:
  width: 64
  height: 64
  sample_steps: 2
  guidance_scale: 4
  neg: ""
  seed: 9
  samples:
    - {prompt: "a hat", ctrl_img: inputs/landscape.png, network_multiplier: 0.7}
    - {prompt: "b", ctrl_img: inputs/landscape.png}
"""


@pytest.fixture(scope="module")
def pipe():
    """The module's own load of the tiny model (the server's, and the trainer's), apart from the engine's."""
    return load_pipeline("tiny", ".", "cpu", model_id=MODEL)


def test_the_tiny_model_is_a_qwen_image_edit_pipeline_with_zero_cond_t_off(pipe, tiny_pipe):
    """Its own checkpoint folder, saved as the server's pipeline class; the 2511 tiny model's text encoder and VAE;
    a tokenizer whose first 64 tokens of the Edit template are its system part (the pipeline drops exactly 64)."""
    folder = get_model(MODEL).ensure_tiny()
    assert json.loads((folder / "model_index.json").read_text())["_class_name"] == "QwenImageEditPipeline"
    assert folder not in {get_model(m).ensure_tiny() for m in MODELS if m != MODEL}
    assert pipe.transformer.config.zero_cond_t is False
    # its text encoder sees the picture capped at 384x384's area; the Edit-Plus models keep the real 12845056
    assert pipe.processor.image_processor.size["longest_edge"] == 384 * 384
    assert tiny_pipe.processor.image_processor.size["longest_edge"] == 12845056
    for name in ("text_encoder", "vae"):
        a, b = getattr(pipe, name).state_dict(), getattr(tiny_pipe, name).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    ids = pipe.tokenizer(pipe.prompt_template_encode.format("a hat"))["input_ids"]
    assert pipe.prompt_template_encode_start_idx == 64
    assert ids[64] == pipe.tokenizer.convert_tokens_to_ids("<|vision_start|>")


@pytest.mark.parametrize("device", DEVICES)
def test_reference_wiring_equals_the_servers_path(write_case, pipe, device):
    """The server's QwenImageEditPipeline: load_lora_weights, then (scale != 1) set_weights_and_activate_adapters,
    then _run_inference: the transposed ~1 MP text image (the picture is 80x40), the Lanczos resize to the output
    size, the stock call. Then a scale change, as its set_lora_scale makes it (0.7 -> 1.0)."""
    from diffusers.utils.peft_utils import set_weights_and_activate_adapters

    cases = load_cases(write_case(SUITE))
    engine = Engine(device)
    engine.expect(cases)
    pipe = pipe if device == "cpu" else load_pipeline("tiny", ".", device, model_id=MODEL)
    pipe.load_lora_weights(str(TINY_LORA.parent), weight_name=TINY_LORA.name, adapter_name="lora", local_files_only=True)
    try:
        current = 1.0
        for case in cases:
            reference, _ = engine.wirings(case)
            assert reference.value(Knob.LORA_METHOD) is LoraMethod.DIFFUSERS_ADAPTER
            assert reference.value(Knob.VAE_IMAGES) is VaeResize.LANCZOS
            rendered = engine.render(case)
            eff = case.effective
            if eff.lora_scale != current:
                set_weights_and_activate_adapters(pipe.transformer, ["lora"], [eff.lora_scale])
                current = eff.lora_scale
            (image,) = (engine.images(p) for p in eff.control_images)
            stock = server_generate(pipe, eff.prompt, eff.negative_prompt, image, eff.width, eff.height, eff.steps, eff.guidance_scale, eff.seed)
            assert torch.equal(pipe.image_processor.postprocess(rendered.decoded, output_type="pt"), stock), case.name
        assert [c.effective.lora_scale for c in cases] == [0.7, 1.0]
    finally:
        pipe.unload_lora_weights()
        engine.close()


def test_preview_wiring_equals_the_trainer_replay(write_case, pipe):
    """ai-toolkit's qwen_image_edit sampler: the stock pipeline with its scheduler config, the aspect-kept ~1 MP text
    image, the bilinear resize to the output size, the LoRA merged in float32 (one multiplier for the round)."""
    case = load_cases(write_case(SUITE.replace("network_multiplier: 0.7", "network_multiplier: 1.0")))[0]
    engine = Engine("cpu")
    reference, preview = engine.wirings(case)
    assert preview.value(Knob.LORA_METHOD) is LoraMethod.AITK_MERGE and preview.value(Knob.VAE_IMAGES) is VaeResize.BILINEAR
    assert {Knob.VAE_IMAGES, Knob.TEXT_IMAGE_SIZE} <= set(differing(reference, preview))
    assert Knob.CFG_RENORM not in differing(reference, preview)  # the stock pipeline renormalises on both sides
    mine = engine.render(case, preview)
    engine.close()
    lora = TrainerLora(pipe, str(TINY_LORA))
    lora.merge_in(case.requested.lora_scale)
    try:
        (image,) = (engine.images(p) for p in case.preview.text_images)
        oracle = trainer_generate(
            pipe, case.effective.prompt, case.preview.negative_prompt, image, case.preview.width, case.preview.height,
            case.effective.steps, case.effective.guidance_scale, case.effective.seed,
        )
    finally:
        lora.remove()
    assert torch.equal(pipe.image_processor.postprocess(mine.decoded, output_type="pt"), oracle)


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    from test_preview import make_ablation

    return make_ablation(tmp_path_factory, Engine("cpu"), model=MODEL, suite=ABLATION)


@pytest.mark.parametrize("knob", [Knob.VAE_IMAGES, Knob.TEXT_IMAGE_SIZE, Knob.LORA_SCALE], ids=lambda k: k.name)
def test_a_planted_knob_is_named_first(ablation, knob):
    """--diagnose on Qwen-Image-Edit: a preview that differs from the reference in one knob (the first resize's
    kernel among them) is explained by that knob alone."""
    from test_preview import planted_knob_is_named_first

    case, reference, _, _ = ablation
    assert case.model == MODEL and reference.value(Knob.LORA_METHOD) is LoraMethod.DIFFUSERS_ADAPTER
    planted_knob_is_named_first(ablation, knob)


def test_more_than_one_control_image_is_refused_with_the_fix(write_case):
    path = write_case(SUITE.replace("ctrl_img: inputs/landscape.png,", "ctrl_img_1: inputs/person.png, ctrl_img_2: inputs/hat.png,"))
    with pytest.raises(CaseFileError) as info:
        load_cases(path)
    (problem,) = info.value.problems
    assert (problem.file, problem.field, problem.value) == (str(path), "sample.samples[0].ctrl_img_2", "inputs/hat.png")
    assert "qwen_image_edit takes one control image, this sample has 2" in problem.message
    assert problem.fix.startswith("remove ctrl_img_2 and keep one control image, as `ctrl_img`")


def test_a_sample_without_ctrl_img_says_the_trainer_drew_no_preview(write_case):
    """The server takes a lone ctrl_img_1 as its control image; ai-toolkit's qwen_image_edit sampler hands its pipeline
    `ctrl_img` only, so it fails on such a sample: the case renders, with that note."""
    (case, _) = load_cases(write_case(SUITE.replace("ctrl_img: inputs/landscape.png,", "ctrl_img_1: inputs/person.png,")))
    assert case.effective.control_images == case.preview.text_images and len(case.effective.control_images) == 1
    assert any(note.startswith("ctrl_img_1 without ctrl_img: ai-toolkit's single-picture sampler") for note in case.notes)
