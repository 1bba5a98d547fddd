"""The preview wiring against an independent replay of ai-toolkit's sampler, and the ablation that names causes."""

import numpy as np
import pytest
import torch
from devices import gpu_test
from paths import TINY_LORA, case_folder
from preview_oracle import TrainerLora, trainer_generate

from parity.cases.suite import load_cases
from parity.core.images import OutputEncoding, encode_output
from parity.judge.compare import compare
from parity.judge.diagnose import diagnose
from parity.models.knobs import Knob, Setting, combine, differing, flip
from parity.models.qwen.knobs import scheduler_items
from parity.models.qwen.schedulers import AITK_SCHEDULER_CONFIG
from parity.render.engine import Engine

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
    - {prompt: "a hat", ctrl_img_1: inputs/person.png}
"""

# The LoRA entry's multiplier is the server's request scale (1.0); the trainer drew sample 0 at its own 0.7: a LoRA
# scale that differs, as it does when a served request asks for another strength than the preview had. The job's
# linear_alpha 2 at rank 4 is not one (ai-toolkit's Qwen networks use alpha = rank).
UNMERGED = """
loras: [{path: loras/tiny.safetensors, network_multiplier: 1.0}]
training: {low_vram: true, rank: 4, alpha: 2, do_cfg_norm: true}
sample:
  width: 64
  height: 64
  sample_steps: 3
  guidance_scale: 4
  neg: ""
  seed: 9
  samples:
    - {prompt: "a hat", ctrl_img: inputs/landscape.png, network_multiplier: 0.7}
    - {prompt: "b", ctrl_img_1: inputs/square.png}
"""


@pytest.fixture(scope="module")
def engine():
    return Engine("cpu")


@pytest.mark.parametrize("suite, merged, low_vram, cfg_norm", [(MERGED, True, False, False), (UNMERGED, False, True, True)])
def test_preview_wiring_equals_the_trainer_replay(write_case, engine, tiny_pipe, suite, merged, low_vram, cfg_norm):
    case = load_cases(write_case(suite.replace("sample_steps: 3", "sample_steps: 2")))[0]
    assert case.preview.lora_merged is merged
    _, preview = engine.wirings(case)
    mine = engine.render(case, preview)

    lora = TrainerLora(tiny_pipe, str(TINY_LORA), case.training.alpha)  # a second load of the model, restored below
    multiplier = case.requested.lora_scale
    lora.merge_in(multiplier) if merged else lora.unmerged(multiplier)
    try:
        vae_images = [engine.images(p) for p in case.effective.control_images]
        text_images = [engine.images(p) for p in case.preview.text_images]
        assert len(text_images) == len(vae_images) + (0 if merged else 1)  # the legacy ctrl_img comes twice
        oracle = trainer_generate(
            tiny_pipe, case.effective.prompt, case.preview.negative_prompt, vae_images, text_images, case.preview.width,
            case.preview.height, case.effective.steps, case.effective.guidance_scale, case.effective.seed, cfg_norm,
            low_vram,
        )
    finally:
        lora.remove()
    assert torch.equal(mine.decoded, oracle)


@pytest.fixture(scope="module")
def ablation(tmp_path_factory, engine):
    return make_ablation(tmp_path_factory, engine)


def make_ablation(tmp_path_factory, engine, model: str | None = None, suite: str = UNMERGED):
    """A case on which most knobs differ, and a memoised renderer for its variants (`model`: another model id;
    `suite`: another case file of UNMERGED's form)."""
    root = tmp_path_factory.mktemp("ablation")
    case_folder(root)
    path = root / "suite.yaml"
    text = suite.replace("do_cfg_norm: true", "do_cfg_norm: false, transformer_single_file: true")
    text = f"model: {model}\n{text}" if model else text
    path.write_text(text.replace('neg: ""', 'neg: ""\n  format: jpg'))
    case = load_cases(path)[0]
    reference, preview = engine.wirings(case)
    shifted = scheduler_items(dict(AITK_SCHEDULER_CONFIG, base_shift=1.0, max_shift=1.5))
    preview = preview.with_setting(Knob.SCHEDULER, Setting(shifted, "planted", key=shifted))
    return case, reference, preview, render_memo(engine, case)


def render_memo(engine, case):
    """A renderer of `case` under any wiring, each pixel-deciding combination rendered once (the output encoding
    is applied to the memoised pixels)."""
    raw = {}

    def render(wiring):
        key = tuple((k, s.value) for k, s in wiring.settings if k is not Knob.OUTPUT)
        if key not in raw:
            png = Setting(OutputEncoding.PNG, "PNG")
            raw[key] = engine.render(case, wiring.with_setting(Knob.OUTPUT, png)).image
        return encode_output(raw[key], wiring.value(Knob.OUTPUT))

    return render


def test_flipping_every_knob_reproduces_the_preview_bit_for_bit(engine, ablation):
    case, reference, preview, _ = ablation
    knobs = differing(reference, preview)
    assert {Knob.CFG_RENORM, Knob.SCHEDULER, Knob.LORA_SCALE, Knob.LORA_METHOD, Knob.TEXT_IMAGES, Knob.TEXT_IMAGE_SIZE,
            Knob.NEGATIVE_IMAGES, Knob.VAE_TILING, Knob.ZERO_COND_T, Knob.OUTPUT} <= set(knobs)
    flipped = engine.render(case, combine(reference, preview, knobs, "all flipped"))
    direct = engine.render(case, preview)
    assert torch.equal(flipped.decoded, direct.decoded)
    assert not torch.equal(engine.render(case, reference).decoded, direct.decoded)


# Every knob whose effect shows in 8-bit pixels on any CPU. LoRA application is not one of them on the CPU: in
# float32, diffusers' fused delta and ai-toolkit's float32 branch differ by rounding only, and whether that flips a
# pixel depends on the CPU's kernels (it does on AVX2, it did not on an AVX-512 Xeon). Its float difference is
# checked below on any CPU; its diagnosis in bf16, where the fused delta is rounded to the model dtype, on a GPU
# (tests/test_gpu.py).
PLANTED = [
    Knob.CFG_RENORM, Knob.SCHEDULER, Knob.LORA_SCALE, Knob.TEXT_IMAGES, Knob.TEXT_IMAGE_SIZE,
    Knob.NEGATIVE_IMAGES, Knob.VAE_TILING, Knob.ZERO_COND_T, Knob.OUTPUT,
]


def planted_knob_is_named_first(ablation, knob):
    case, reference, preview, render = ablation
    baseline = render(flip(reference, preview, knob))  # the only difference from the reference is `knob`
    output = render(reference)
    base = compare(output, baseline, case.thresholds).metrics  # None: the planted knob changed the size
    assert (base is None) == (knob is Knob.SIZE), "only the size knob may change the size"
    assert base is None or base.max_abs_diff > 0, f"planting {knob.value} changed nothing"
    result = diagnose(reference, preview, baseline, base, case.thresholds, render)
    assert result.ranked[0].knob is knob
    assert result.explained_by == (knob,)
    assert result.verdict.startswith(f"mismatch explained by: {knob.value} (" + ("another size -> SSIM" if base is None else "SSIM"))


@pytest.mark.parametrize("knob", PLANTED, ids=lambda k: k.name)
def test_a_planted_knob_is_named_first(ablation, knob):
    planted_knob_is_named_first(ablation, knob)


def test_lora_application_changes_the_float_output(engine, ablation):
    """On the CPU the LoRA methods differ by float32 rounding: not equal as tensors, on any kernels."""
    case, reference, preview, _ = ablation
    fused = engine.render(case, reference).decoded
    branch = engine.render(case, flip(reference, preview, Knob.LORA_METHOD)).decoded
    assert not torch.equal(fused, branch)
    assert (fused - branch).abs().max().item() < 1e-3  # rounding, not a different LoRA


@gpu_test
def test_a_planted_lora_application_is_named_first_in_bf16_on_cuda(tmp_path_factory):
    """In bf16 (the reference server on a GPU) the fused delta is rounded to the model dtype and ai-toolkit's branch
    is not: a difference in pixels, which the diagnosis must name alone."""
    engine = Engine("cuda")
    try:
        planted_knob_is_named_first(make_ablation(tmp_path_factory, engine), Knob.LORA_METHOD)
    finally:
        engine.close()


ALPHA_8 = """
baseline_kind: preview
loras: [{path: loras/alpha8.safetensors}]
training: {rank: 4, alpha: 8}
thresholds: {ssim_min: 1.0, psnr_min: 1000, max_abs_diff_max: 0, mean_abs_diff_max: 0}
sample:
  width: 64
  height: 64
  sample_steps: 2
  guidance_scale: 4
  neg: ""
  seed: 4
  format: jpg
  samples:
    - {prompt: "a hat", ctrl_img_1: inputs/person.png, baseline: samples/0.jpg}
"""


def test_a_preview_drawn_at_linear_alpha_8_is_reproduced_exactly(write_case, workdir, engine, tiny_pipe):
    """The trainer's semantics end to end: a job with `linear: 4, linear_alpha: 8` saves a PEFT LoRA without .alpha
    keys (tests/trainer_lora.py) and draws its previews at strength = the multiplier. Drawn here by the independent
    replay and saved as the trainer saves a jpg (PIL's default quality), the preview is the preview wiring's output
    within exact limits, and the knob table says both sides apply the same strength."""
    from PIL import Image
    from trainer_lora import Network, save

    from parity.judge.compare import compare
    from parity.judge.diagnose import wiring_rows

    lora_path = save(workdir / "cases" / "loras" / "alpha8.safetensors", tiny_pipe.transformer, Network(linear=4, linear_alpha=8))
    (workdir / "cases" / "samples").mkdir()
    (workdir / "cases" / "samples" / "0.jpg").write_bytes(b"")  # the case file needs its preview; drawn below
    case = load_cases(write_case(ALPHA_8))[0]
    lora = TrainerLora(tiny_pipe, str(lora_path), linear_alpha=8)
    assert lora.scale == 1.0
    lora.merge_in(1.0)
    try:
        images = [engine.images(p) for p in case.effective.control_images]
        oracle = trainer_generate(
            tiny_pipe, case.effective.prompt, "", images, images, 64, 64, case.effective.steps, case.effective.guidance_scale,
            case.effective.seed,
        )
    finally:
        lora.remove()
    tiny_pipe.image_processor.postprocess(oracle, output_type="pil")[0].save(case.baseline)

    reference, preview = engine.wirings(case)
    rendered = engine.render(case, preview)
    baseline = np.asarray(Image.open(case.baseline).convert("RGB"))
    result = compare(rendered.image, baseline, case.thresholds)
    assert not result.violations and result.metrics.max_abs_diff == 0
    (row,) = [r for r in wiring_rows(reference, preview) if r.knob is Knob.LORA_SCALE]
    assert row.same and row.preview.startswith("1 (the sample's multiplier, alpha = rank; the job's linear_alpha 8")
