"""The contract every model of the registry keeps, on its tiny model: the real classes; the reference wiring equal
to the reference server's own path bit for bit; the preview wiring equal to a replay of the trainer's sampler bit for
bit; a knob planted in a preview named first by the diagnosis; every input moving the output. The drivers per
pipeline (tests/models/families.py) are independent of parity's wiring code."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ablation import planted_knob_is_named_first, render_memo
from devices import DEVICES
from families import family
from paths import INPUTS, TINY_LORA, case_folder
from preview_oracle import TrainerLora

from parity.cases.suite import load_cases
from parity.core.images import open_rgb
from parity.models import MODELS, get_model
from parity.models.knobs import Knob, LoraMethod, Setting
from parity.models.qwen.knobs import scheduler_items
from parity.models.qwen.schedulers import AITK_SCHEDULER_CONFIG
from parity.render.engine import Engine
from parity.render.loading import load_pipeline
from parity.render.lora import FusedLora

IDS = list(MODELS)


def first_of_its_pipeline(model_id: str) -> bool:
    return next(m for m in MODELS.values() if m.pipeline == get_model(model_id).pipeline).id == model_id


def cases_of(write_case, model_id: str, text: str | None = None):
    return load_cases(write_case(f"model: {model_id}\n" + (text or family(get_model(model_id)).suite), f"{model_id}.yaml"))


def server_pipe(model_id: str, scale: float, device: str):
    """ai-toolkit-inference's `_load_lora` on a fresh load (src/pipelines/base.py): FUSE fuses at the scale;
    SET_ADAPTERS keeps the adapter, a scale other than 1 set by set_weights_and_activate_adapters."""
    from diffusers.utils.peft_utils import set_weights_and_activate_adapters

    pipe = load_pipeline("tiny", ".", device, model_id=model_id)
    pipe.load_lora_weights(str(TINY_LORA.parent), weight_name=TINY_LORA.name, adapter_name="lora", local_files_only=True)
    if get_model(model_id).lora_method is LoraMethod.DIFFUSERS_FUSE:
        pipe.fuse_lora(adapter_names=["lora"], lora_scale=scale)
    elif scale != 1.0:
        set_weights_and_activate_adapters(pipe.transformer, ["lora"], [scale])
    return pipe


@pytest.mark.parametrize("model_id", IDS)
def test_the_tiny_model_is_the_real_classes_in_its_own_folder(model_id):
    model = get_model(model_id)
    folder = model.ensure_tiny()
    assert folder not in {get_model(m).ensure_tiny() for m in MODELS if m != model_id}
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == model.pipeline
    assert index["transformer"] == ["diffusers", "QwenImageTransformer2DModel"]
    assert index["vae"] == ["diffusers", "AutoencoderKLQwenImage"]
    assert index["text_encoder"] == ["transformers", "Qwen2_5_VLForConditionalGeneration"]
    assert index["scheduler"] == ["diffusers", "FlowMatchEulerDiscreteScheduler"]
    assert ("processor" in index) is (model.max_control_images > 0)
    pipe = load_pipeline("tiny", ".", "cpu", model_id=model_id)
    assert bool(pipe.transformer.config.zero_cond_t) is model.zero_cond_t
    user = "<|im_start|>user\n"  # the pipeline drops exactly the template's system part, up to the user's turn
    system = pipe.prompt_template_encode.split(user)[0] + user
    assert len(pipe.tokenizer(system)["input_ids"]) == pipe.prompt_template_encode_start_idx


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("model_id", IDS)
def test_the_reference_wiring_equals_the_servers_path(write_case, model_id, device):
    """Each case against a fresh server load at its scale (0.7, then 1.0), the server's per-prompt path and the stock
    call, compared with torch.equal."""
    model = get_model(model_id)
    cases = cases_of(write_case, model_id)
    engine = Engine(device)
    engine.expect(cases)
    try:
        for case in cases:
            reference, _ = engine.wirings(case)
            assert reference.value(Knob.LORA_METHOD) is model.lora_method
            rendered = engine.render(case)
            mine = engine._loaded.pipe.image_processor.postprocess(rendered.decoded, output_type="pt")
            images = [engine.images(p) for p in case.effective.control_images]
            theirs = family(model).server(server_pipe(model_id, case.effective.lora_scale, device), case.effective, images)
            assert torch.equal(mine, theirs), case.name
    finally:
        engine.close()


@pytest.mark.parametrize("model_id", IDS)
def test_the_preview_wiring_equals_the_trainer_replay(write_case, model_id):
    """One multiplier for the round: ai-toolkit merges its float32 LoRA; its sampler, its scheduler config, its
    sizes and its control-image rules, replayed independently (tests/models/test_preview.py also replays the unmerged branch
    with low_vram and do_cfg_norm on)."""
    model = get_model(model_id)
    (case, _) = cases_of(write_case, model_id, family(model).suite.replace("network_multiplier: 0.7", "network_multiplier: 1.0"))
    engine = Engine("cpu")
    _, preview = engine.wirings(case)
    assert preview.value(Knob.LORA_METHOD) is LoraMethod.AITK_MERGE
    rendered = engine.render(case, preview)
    vae = [engine.images(p) for p in case.effective.control_images]
    text = [engine.images(p) for p in case.preview.text_images]
    engine.close()
    pipe = load_pipeline("tiny", ".", "cpu", model_id=model_id)
    TrainerLora(pipe, str(TINY_LORA), case.training.alpha).merge_in(case.requested.lora_scale)
    theirs = family(model).trainer(pipe, case, vae, text)
    assert torch.equal(pipe.image_processor.postprocess(rendered.decoded, output_type="pt"), theirs)


@pytest.fixture(scope="module")
def ablations(tmp_path_factory):
    """Per model, a case on which most knobs differ, with the scheduler planted (the trainer's config is the tiny
    checkpoint's), and a memoised renderer of its variants."""
    made = {}

    def make(model_id):
        if model_id not in made:
            model = get_model(model_id)
            root = case_folder(tmp_path_factory.mktemp(model_id))
            (root / "suite.yaml").write_text(f"model: {model_id}\n" + family(model).ablation)
            case = load_cases(root / "suite.yaml")[0]
            engine = Engine("cpu")
            reference, preview = engine.wirings(case)
            shifted = scheduler_items(dict(AITK_SCHEDULER_CONFIG, base_shift=1.0, max_shift=1.5))
            preview = preview.with_setting(Knob.SCHEDULER, Setting(shifted, "planted", key=shifted))
            made[model_id] = (case, reference, preview, render_memo(engine, case))
        return made[model_id]

    return make


# Every model plants its pipeline's knobs; a model that shares its pipeline with one before it in the registry plants
# the first three (its own wiring and LoRA application run the same diagnosis; the suite's time stays in bounds).
PLANTED = [
    (model_id, knob)
    for model_id in IDS
    for knob in family(get_model(model_id)).planted[: None if first_of_its_pipeline(model_id) else 3]
]


@pytest.mark.parametrize("model_id, knob", PLANTED, ids=[f"{m}-{k.name}" for m, k in PLANTED])
def test_a_planted_knob_is_named_first(ablations, model_id, knob):
    ablation = ablations(model_id)
    case, reference, _, _ = ablation
    assert case.model == model_id and reference.value(Knob.LORA_METHOD) is get_model(model_id).lora_method
    planted_knob_is_named_first(ablation, knob)


@pytest.mark.parametrize("model_id", IDS)
def test_every_input_moves_the_output_by_at_least_one_level(model_id, tiny_latents, record_property):
    """Sensitivity of the tiny model: mean |difference| in 0..255 levels when one input changes, rendered by the
    model's own renderer with the LoRA as its server applies it. The knobs move on a one-picture render of 3 steps (at
    2 steps the shifted schedule is [1, shift_terminal] whatever the shift); with three pictures, each slot moves on a
    render without CFG (a slot's tokens reach the output through the conditional pass). Qwen-Image-Edit starts from
    the square picture, already the output size; text to image moves its negative prompt instead of pictures."""
    model = get_model(model_id)
    pipe = load_pipeline("tiny", ".", "cpu", model_id=model_id)
    lora = FusedLora(pipe)
    fuse = model.lora_method is LoraMethod.DIFFUSERS_FUSE
    lora.apply(str(TINY_LORA), 1.0, fuse=fuse)
    renderer = model.renderer(pipe)
    renderer.latent_cache = tiny_latents
    A, B, C, D = (open_rgb(INPUTS / f"{n}.png", n) for n in ("person", "hat", "square", "landscape"))
    pictures = {0: (), 1: (C,), 3: (A,)}[model.max_control_images]

    def run(prompt="put the hat on the person", neg="", imgs=pictures, cfg=4.0, steps=3, **knobs):
        request = model.request(prompt=prompt, negative_prompt=neg, width=64, height=64, steps=steps, guidance_scale=cfg, seed=3, images=imgs)
        return renderer.render(request, model.renderer_knobs(**knobs)).image.astype(np.float64)

    base = run()
    shifted = scheduler_items(dict(AITK_SCHEDULER_CONFIG, base_shift=1.0, max_shift=1.5))
    variants = {
        "prompt": lambda: run(prompt="make the sky red") - base,
        "CFG scale 4 -> 2.5": lambda: run(cfg=2.5) - base,
        "scheduler shift (mu from base 1.0 / max 1.5)": lambda: run(scheduler=shifted) - base,
    }
    if model.max_control_images:
        variants["control image (one picture)"] = lambda: run(imgs=(D,)) - base
        variants["CFG renormalisation off"] = lambda: run(cfg_renorm=False) - base
    else:
        variants["negative prompt"] = lambda: run(neg="blurry") - base
    if model.max_control_images > 1:
        three = run(imgs=(A, B, C), steps=2, cfg=1.0)
        for slot in range(3):
            moved = tuple(D if i == slot else p for i, p in enumerate((A, B, C)))
            variants[f"control image {slot + 1} of 3"] = lambda moved=moved: run(imgs=moved, steps=2, cfg=1.0) - three
    figures = {name: float(np.abs(make()).mean()) for name, make in variants.items()}
    lora.apply(str(TINY_LORA), 0.5, fuse=fuse)
    figures["LoRA scale 1.0 -> 0.5"] = float(np.abs(run() - base).mean())
    lora.apply(str(TINY_LORA), 1.0, fuse=fuse)
    assert np.array_equal(run(), base)  # back at 1.0: bit-identical again
    for name, value in figures.items():
        record_property(name, round(value, 3))
    assert all(value >= 1.0 for value in figures.values()), figures
