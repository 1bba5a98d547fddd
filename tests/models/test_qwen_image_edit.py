"""Qwen-Image-Edit (model id `qwen_image_edit`): what is its own in its tiny model, and the resolver's one-control-image
rules. Both wirings, the diagnosis and the sensitivity are the model contract's (tests/models/test_contract.py)."""

import json

import pytest
import torch

from parity.cases.suite import load_cases
from parity.core.errors import CaseFileError
from parity.models import MODELS, get_model
from parity.render.loading import load_pipeline

MODEL = "qwen_image_edit"
# A case file of this model, which the resolver's tests below change where they need to.
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
