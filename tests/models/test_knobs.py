"""Wiring as data: the reference and preview values of every knob, and which ones differ for a case."""

from dataclasses import replace

from parity.cases.resolve import resolve_suite
from parity.cases.schema import load_suite
from parity.facts.scale import Alpha, LoraScale
from parity.models.knobs import Knob, LoraMethod, RuntimeFacts, combine, differing, flip
from parity.models.qwen.knobs import (
    AITK_SCHEDULER_CONFIG,
    NegativeImages,
    OutputEncoding,
    TextImageSize,
    preview_wiring,
    reference_wiring,
    scheduler_items,
)


def facts_for(case, scheduler=None, zero_cond_t=True):
    sizes = {"person.png": (48, 64), "hat.png": (64, 48), "square.png": (64, 64), "landscape.png": (80, 40)}
    paths = set(case.effective.control_images) | set(case.preview.text_images)
    return RuntimeFacts(
        scheduler_config=scheduler_items(scheduler or AITK_SCHEDULER_CONFIG),
        zero_cond_t=zero_cond_t,
        dtype="float32",
        image_sizes={p: sizes[p.rsplit("/", 1)[-1]] for p in paths},
        lora_file_dtype="float16",
    )


def cases_of(write_case, text):
    return resolve_suite(load_suite(write_case(text)))


SUITE = """
loras: [{path: loras/tiny.safetensors}]
training: {rank: 4, alpha: 2, low_vram: true, quantize: true, qtype: qfloat8}
sample:
  width: 128
  height: 128
  guidance_scale: 4
  neg: ""
  samples:
    - {prompt: a, ctrl_img_1: inputs/square.png}
    - {prompt: b, ctrl_img: inputs/person.png, network_multiplier: 0.5}
"""


def test_values_of_both_wirings(write_case):
    square, _legacy = cases_of(write_case, SUITE)
    ref, pre = reference_wiring(square, facts_for(square)), preview_wiring(square, facts_for(square))
    assert ref.value(Knob.CFG_RENORM) is True and pre.value(Knob.CFG_RENORM) is False
    assert ref.value(Knob.LORA_METHOD) is LoraMethod.DIFFUSERS_FUSE
    assert pre.value(Knob.LORA_METHOD) is LoraMethod.AITK_UNMERGED  # two multipliers in the round
    # linear_alpha 2 at rank 4 is not the trainer's strength: its Qwen networks are PEFT-format, alpha = rank
    assert ref.value(Knob.LORA_SCALE) == LoraScale(1.0, Alpha.FILE) and pre.value(Knob.LORA_SCALE) == LoraScale(1.0, Alpha.RANK)
    assert "the job's linear_alpha 2 (rank 4) was not used" in pre[Knob.LORA_SCALE].shown
    assert any("linear_alpha 2 (rank 4) was not used by the trainer" in note for note in square.notes)
    assert ref.value(Knob.VAE_TILING) is False and pre.value(Knob.VAE_TILING) is True
    assert ref.value(Knob.OUTPUT) is OutputEncoding.PNG and pre.value(Knob.OUTPUT) is OutputEncoding.JPEG_75
    assert ref.value(Knob.TEXT_IMAGE_SIZE) is TextImageSize.SERVER and pre.value(Knob.TEXT_IMAGE_SIZE) is TextImageSize.ASPECT_KEPT
    assert pre.value(Knob.NEGATIVE_IMAGES) is NegativeImages.RESIZED_AGAIN
    assert not pre[Knob.QUANTIZATION].replayable and "qfloat8" in pre[Knob.QUANTIZATION].shown
    assert not pre[Knob.LORA_WEIGHTS].replayable


def test_differing_knobs_follow_the_case(write_case):
    square, legacy = cases_of(write_case, SUITE)
    diff = differing(reference_wiring(square, facts_for(square)), preview_wiring(square, facts_for(square)))
    # a square control image: both text-encoder resize rules give 384x384, once or twice
    assert Knob.TEXT_IMAGE_SIZE not in diff and Knob.NEGATIVE_IMAGES not in diff and Knob.TEXT_IMAGES not in diff
    assert {Knob.CFG_RENORM, Knob.LORA_METHOD, Knob.VAE_TILING, Knob.OUTPUT, Knob.QUANTIZATION} <= set(diff)
    assert Knob.LORA_SCALE not in diff  # the same strength on both sides, whatever the job's linear_alpha
    assert Knob.SIZE not in diff and Knob.SCHEDULER not in diff and Knob.GENERATOR not in diff

    diff = differing(reference_wiring(legacy, facts_for(legacy)), preview_wiring(legacy, facts_for(legacy)))
    # 48x64: the server transposes (384x448 vs 320x448...); a legacy ctrl_img reaches the trainer's text encoder twice
    assert {Knob.TEXT_IMAGE_SIZE, Knob.TEXT_IMAGES} <= set(diff)
    assert len(preview_wiring(legacy, facts_for(legacy)).value(Knob.TEXT_IMAGES)) == 2


def test_the_lora_scale_differs_where_the_server_applies_another_strength(write_case):
    """The server's request scale over the sample's multiplier, or a file whose `.alpha` keys the server's loader
    applies (ai-toolkit drew the previews at alpha = rank): each is a LoRA-scale difference, shown with its numbers."""
    case = cases_of(write_case, SUITE.replace("tiny.safetensors}", "tiny.safetensors, network_multiplier: 0.8}"))[0]
    ref, pre = reference_wiring(case, facts_for(case)), preview_wiring(case, facts_for(case))
    assert Knob.LORA_SCALE in differing(ref, pre) and ref[Knob.LORA_SCALE].shown == "0.8"
    case = cases_of(write_case, SUITE)[0]
    alpha_keys = replace(facts_for(case), lora_alpha_scale=2.0, lora_alpha_text="alpha 8 / rank 4")
    ref = reference_wiring(case, alpha_keys)
    assert Knob.LORA_SCALE in differing(ref, preview_wiring(case, alpha_keys))
    assert ref[Knob.LORA_SCALE].shown == "2 (scale 1 x the file's alpha 8 / rank 4)"
    assert ref[Knob.LORA_SCALE].effect_key == 2.0 and preview_wiring(case, alpha_keys)[Knob.LORA_SCALE].effect_key == 1.0


def test_a_checkpoint_scheduler_that_differs_is_a_difference(write_case):
    case = cases_of(write_case, SUITE)[0]
    other = dict(AITK_SCHEDULER_CONFIG, max_shift=1.15, max_image_seq_len=4096)
    assert Knob.SCHEDULER in differing(reference_wiring(case, facts_for(case, other)), preview_wiring(case, facts_for(case, other)))


def test_no_cfg_makes_renormalisation_moot(write_case):
    (case,) = cases_of(write_case, "sample:\n  guidance_scale: 1\n  samples: [{prompt: a, ctrl_img_1: inputs/square.png}]\n")
    assert Knob.CFG_RENORM not in differing(reference_wiring(case, facts_for(case)), preview_wiring(case, facts_for(case)))


def test_single_file_transformer_turns_zero_cond_t_off(write_case):
    (case,) = cases_of(write_case, "training: {transformer_single_file: true}\nsample:\n  samples: [{prompt: a, ctrl_img_1: inputs/square.png}]\n")
    pre = preview_wiring(case, facts_for(case))
    assert pre.value(Knob.ZERO_COND_T) is False and Knob.ZERO_COND_T in differing(reference_wiring(case, facts_for(case)), pre)


def test_flip_and_combine(write_case):
    case = cases_of(write_case, SUITE)[0]
    ref, pre = reference_wiring(case, facts_for(case)), preview_wiring(case, facts_for(case))
    one = flip(ref, pre, Knob.CFG_RENORM)
    assert differing(one, ref) == (Knob.CFG_RENORM,)
    assert differing(combine(ref, pre, differing(ref, pre), "all"), pre) == ()


def test_a_quantization_parity_cannot_replay_here_says_why():
    """The trainer's library missing or at another version, an adapter over a qtype parity does not replay it over,
    a backend parity does not replay, layer_offloading: each shown, not replayed, with the reason and the fix."""
    from parity.models.knobs import RuntimeFacts
    from parity.models.qwen.knobs import _quantization

    facts = RuntimeFacts((), False, "float32", {}, quant_libraries=(("optimum-quanto", None), ("torchao", None)))
    missing = _quantization(True, "qfloat8", facts)
    assert not missing.replayable
    assert missing.shown == "qfloat8 (not replayed: optimum-quanto 0.2.4 is not installed (pip install 'parity[trainer]'))"
    other = _quantization(True, None, RuntimeFacts((), False, "float32", {}, quant_libraries=(("optimum-quanto", "0.2.5"),)))
    assert not other.replayable and "the trainer pins 0.2.4, and other versions give other bits" in other.shown
    assert "(the trainer's default)" in other.shown
    libraries = (("optimum-quanto", "0.2.4"), ("torchao", "0.10.0"))
    adapter = _quantization(True, "qfloat8|ostris/ara/qwen.safetensors", RuntimeFacts((), False, "float32", {}, quant_libraries=libraries))
    assert not adapter.replayable and "an accuracy recovery adapter over uint2, uint3" in adapter.shown
    own = _quantization(True, "orbit3", RuntimeFacts((), False, "float32", {}))
    assert not own.replayable and own.shown == (
        "orbit3 (not replayed: parity does not replay orbit3 (it replays qfloat8, qfloat8_e4m3fn, qfloat8_e5m2, qint8, "
        "qint4, qint2 (optimum-quanto 0.2.4); int8, float8, uint2, uint3, uint4, uint5, uint6, uint7, uint8 "
        "(torchao 0.10.0)))"
    )
    torchao = _quantization(True, "float8", RuntimeFacts((), False, "float32", {}, quant_libraries=(("torchao", None),)))
    assert not torchao.replayable and "torchao 0.10.0 is not installed" in torchao.shown
    here = RuntimeFacts((), False, "float32", {}, quant_libraries=(("torchao", "0.10.0"),))
    assert _quantization(True, "float8", here).replayable
    offloaded = _quantization(True, "float8", here, offloaded=True)  # what layer_offloading turns qfloat8 into
    assert not offloaded.replayable and "MemoryManager runs each layer on its dequantized weight" in offloaded.shown


def test_the_quantization_knob_takes_the_lora_application_with_it():
    """A quantized base takes no fused LoRA (the trainer cannot merge into it; the server's fuse has no float
    weights there): flipping or combining the quantization knob takes the preview's LoRA application too."""
    from parity.models.knobs import Setting, Wiring

    reference = Wiring("reference", ((Knob.LORA_METHOD, Setting(LoraMethod.DIFFUSERS_FUSE, "fuse")), (Knob.QUANTIZATION, Setting("none", "none"))))
    preview = Wiring("preview", ((Knob.LORA_METHOD, Setting(LoraMethod.AITK_UNMERGED, "branch")), (Knob.QUANTIZATION, Setting("qfloat8", "qfloat8"))))
    for wiring in (flip(reference, preview, Knob.QUANTIZATION), combine(reference, preview, (Knob.QUANTIZATION,), "x")):
        assert wiring.value(Knob.QUANTIZATION) == "qfloat8" and wiring.value(Knob.LORA_METHOD) is LoraMethod.AITK_UNMERGED
    alone = flip(reference, preview, Knob.LORA_METHOD)  # the other way round needs nothing
    assert alone.value(Knob.QUANTIZATION) == "none" and alone.value(Knob.LORA_METHOD) is LoraMethod.AITK_UNMERGED
