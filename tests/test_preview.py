"""The preview wiring against an independent replay of ai-toolkit's sampler, and the ablation that names causes."""

import pytest
import torch
from conftest import TINY_LORA
from preview_oracle import TrainerLora, trainer_generate

from parity.compare import measure
from parity.diagnose import diagnose
from parity.engine import Engine
from parity.images import encode_output
from parity.knobs import AITK_SCHEDULER_CONFIG, Knob, OutputEncoding, Setting, combine, differing, flip, scheduler_items
from parity.loading import load_pipeline
from parity.suite import load_cases

MERGED = """
loras: [{path: loras/tiny.safetensors}]
sample:
  width: 64
  height: 96
  sample_steps: 3
  guidance_scale: 4
  neg: "blurry"
  seed: 4
  samples:
    - {prompt: "a hat", ctrl_img_1: inputs/person.png, ctrl_img_2: inputs/hat.png}
"""

UNMERGED = """
loras: [{path: loras/tiny.safetensors}]
training: {low_vram: true, rank: 4, alpha: 2, do_cfg_norm: true}
sample:
  width: 64
  height: 64
  sample_steps: 3
  guidance_scale: 4
  neg: ""
  seed: 9
  samples:
    - {prompt: "a hat", ctrl_img: inputs/landscape.png, ctrl_img_2: inputs/hat.png, network_multiplier: 0.7}
    - {prompt: "b", ctrl_img_1: inputs/square.png}
"""


@pytest.fixture(scope="module")
def engine():
    return Engine("cpu")


@pytest.mark.parametrize("suite, merged, alpha_scale, low_vram, cfg_norm", [(MERGED, True, 1.0, False, False), (UNMERGED, False, 0.5, True, True)])
def test_preview_wiring_equals_the_trainer_replay(write_case, engine, suite, merged, alpha_scale, low_vram, cfg_norm):
    case = load_cases(write_case(suite))[0]
    assert case.preview.lora_merged is merged
    _, preview = engine.wirings(case)
    mine = engine.render(case, preview)

    pipe = load_pipeline("tiny", ".", "cpu")
    lora = TrainerLora(pipe, str(TINY_LORA), alpha_scale)
    multiplier = case.requested.lora_scale
    lora.merge_in(multiplier) if merged else lora.unmerged(multiplier)
    vae_images = [engine._image(p) for p in case.effective.control_images]
    text_images = [engine._image(p) for p in case.preview.text_images]
    assert len(text_images) == len(vae_images) + (0 if merged else 1)  # the legacy ctrl_img comes twice
    oracle = trainer_generate(
        pipe, case.effective.prompt, case.preview.negative_prompt, vae_images, text_images, case.preview.width,
        case.preview.height, case.effective.steps, case.effective.guidance_scale, case.effective.seed, cfg_norm, low_vram,
    )
    assert torch.equal(mine.decoded, oracle)


@pytest.fixture(scope="module")
def ablation(tmp_path_factory, engine):
    """A case on which most knobs differ, and a memoised renderer for its variants."""
    import shutil

    from conftest import INPUTS

    root = tmp_path_factory.mktemp("ablation")
    shutil.copytree(INPUTS, root / "inputs")
    (root / "loras").mkdir()
    shutil.copy(TINY_LORA, root / "loras" / "tiny.safetensors")
    path = root / "suite.yaml"
    text = UNMERGED.replace("do_cfg_norm: true", "do_cfg_norm: false, transformer_single_file: true")
    path.write_text(text.replace('neg: ""', 'neg: ""\n  format: jpg'))
    case = load_cases(path)[0]
    reference, preview = engine.wirings(case)
    shifted = scheduler_items(dict(AITK_SCHEDULER_CONFIG, base_shift=1.0, max_shift=1.5))
    preview = preview.with_setting(Knob.SCHEDULER, Setting(shifted, "planted", key=shifted))
    raw = {}

    def render(wiring):
        key = tuple((k, s.value) for k, s in wiring.settings if k is not Knob.OUTPUT)
        if key not in raw:
            png = Setting(OutputEncoding.PNG, "PNG")
            raw[key] = engine.render(case, wiring.with_setting(Knob.OUTPUT, png)).image
        return encode_output(raw[key], wiring.value(Knob.OUTPUT))

    return case, reference, preview, render


def test_flipping_every_knob_reproduces_the_preview_bit_for_bit(engine, ablation):
    case, reference, preview, _ = ablation
    knobs = differing(reference, preview)
    assert {Knob.CFG_RENORM, Knob.SCHEDULER, Knob.LORA_SCALE, Knob.LORA_METHOD, Knob.TEXT_IMAGES, Knob.TEXT_IMAGE_SIZE,
            Knob.NEGATIVE_IMAGES, Knob.VAE_TILING, Knob.ZERO_COND_T, Knob.OUTPUT} <= set(knobs)
    flipped = engine.render(case, combine(reference, preview, knobs, "all flipped"))
    direct = engine.render(case, preview)
    assert torch.equal(flipped.decoded, direct.decoded)
    assert not torch.equal(engine.render(case, reference).decoded, direct.decoded)


PLANTED = [
    Knob.CFG_RENORM, Knob.SCHEDULER, Knob.LORA_SCALE, Knob.LORA_METHOD, Knob.TEXT_IMAGES, Knob.TEXT_IMAGE_SIZE,
    Knob.NEGATIVE_IMAGES, Knob.VAE_TILING, Knob.ZERO_COND_T, Knob.OUTPUT,
]


@pytest.mark.parametrize("knob", PLANTED, ids=lambda k: k.name)
def test_a_planted_knob_is_named_first(ablation, knob):
    case, reference, preview, render = ablation
    baseline = render(flip(reference, preview, knob))  # the only difference from the reference is `knob`
    output = render(reference)
    base = measure(output, baseline, case.thresholds.pixel_tolerance)
    assert base.max_abs_diff > 0, f"planting {knob.value} changed nothing"
    result = diagnose(reference, preview, baseline, base, case.thresholds, render)
    assert result.ranked[0].knob is knob
    assert result.explained_by == (knob,)
    assert result.verdict.startswith(f"mismatch explained by: {knob.value} (SSIM")
