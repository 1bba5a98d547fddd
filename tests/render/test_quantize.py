"""The trainer's quantized model, replayed (parity/render/quantize.py): bit for bit against an independent replay of
ai-toolkit's quantized sampling, felt by the tiny model for every replayed qtype, undone exactly, and diagnosed.

The independent replay quantizes a second load of the tiny model the way ai-toolkit 27a03a9 does it
(toolkit/util/quantize.py `quantize_model`, the Qwen classes' `load_model`): each transformer block quantized by
the trainer's own loop over quanto's `_quantize_submodule` and frozen, then the whole transformer by that loop
(the blocks' quantized modules skipped by class name); the text encoder quantized whole and frozen; for torchao's
int8 and float8 the same loops handing torchao's `quantize_` one module at a time; the LoRA as an unmerged float32 branch (tests/preview_oracle.py).
"""

import contextlib

import numpy as np
import pytest
import torch
from devices import gpu_test
from preview_oracle import TrainerLora, trainer_generate

from parity.cases.suite import load_cases
from parity.facts import quant
from parity.models.knobs import Knob
from parity.render.engine import Engine

quanto = pytest.importorskip("optimum.quanto", reason="the trainer's quantization library: pip install 'parity[trainer]'")

QUANTIZED = """
loras: [{{path: loras/tiny.safetensors, network_multiplier: 1.0}}]
training: {{quantize: {quantize}, qtype: {qtype}, quantize_te: {quantize_te}, qtype_te: {qtype_te}}}
sample:
  width: 64
  height: 64
  sample_steps: 2
  guidance_scale: 4
  neg: ""
  seed: 5
  samples:
    - {{prompt: "a hat", ctrl_img_1: inputs/landscape.png, network_multiplier: 0.8}}
"""


def quantized_suite(quantize=True, qtype="qfloat8", quantize_te=True, qtype_te="qfloat8") -> str:
    return QUANTIZED.format(quantize=str(quantize).lower(), qtype=qtype, quantize_te=str(quantize_te).lower(), qtype_te=qtype_te)


@pytest.fixture(scope="module")
def engine():
    return Engine("cpu")


def trainer_quantize_torchao(pipe, qtype: str, qtype_te: str | None) -> None:
    """ai-toolkit's torchao path: its `quantize` with `exclude=[]` hands torchao's `quantize_` each linear of a block
    alone, then each linear of the whole transformer (the blocks' again: a no-op in torchao 0.10.0); the text
    encoder's `quantize` without exclude hands it every module, the text encoder itself first."""
    from torchao.quantization.quant_api import Float8WeightOnlyConfig, Int8WeightOnlyConfig, quantize_

    configs = {"int8": Int8WeightOnlyConfig(), "float8": Float8WeightOnlyConfig()}
    transformer = pipe.transformer
    for block in transformer.transformer_blocks:
        for module in block.modules():
            if isinstance(module, torch.nn.Linear):
                quantize_(module, configs[qtype])
    for module in transformer.modules():
        if isinstance(module, torch.nn.Linear):
            quantize_(module, configs[qtype])
    if qtype_te is not None:
        for module in list(pipe.text_encoder.modules()):
            with contextlib.suppress(Exception):  # the trainer prints and goes on
                quantize_(module, configs[qtype_te])


def trainer_quantize(pipe, qtype: str, qtype_te: str | None, device: str = "cpu") -> None:
    """ai-toolkit's order and calls, on a pipeline of its own: its `quantize` loop (every module through quanto's
    `_quantize_submodule`, quantized classes skipped by name, failures left as they are) per block, then over the
    whole transformer; the text encoder whole."""
    from optimum.quanto import freeze, qtypes
    from optimum.quanto.quantize import _quantize_submodule

    def trainer_loop(model, weights):
        for name, module in model.named_modules():
            if module.__class__.__name__ in ("QLinear", "QConv2d", "QLayerNorm"):
                continue
            with contextlib.suppress(Exception):  # the trainer prints and goes on
                _quantize_submodule(model, name, module, weights=weights, activations=None, optimizer=None)

    transformer = pipe.transformer  # on the CPU, as from_pretrained leaves it
    for block in transformer.transformer_blocks:
        block.to(device, dtype=transformer.dtype)
        trainer_loop(block, qtypes[qtype])
        freeze(block)
        block.to("cpu")
    trainer_loop(transformer, qtypes[qtype])
    freeze(transformer)
    if qtype_te is not None:
        pipe.text_encoder.to(device)
        trainer_loop(pipe.text_encoder, qtypes[qtype_te])
        freeze(pipe.text_encoder)


QUANTO_QTYPES = sorted(q for q, library in quant.REPLAYED.items() if library == "optimum-quanto")


@pytest.mark.parametrize("qtype", QUANTO_QTYPES)
def test_the_quantized_preview_equals_the_trainer_replay(write_case, engine, qtype):
    """Each quanto qtype on the transformer, qfloat8 on the text encoder (the trainer UI's default job is qfloat8 on
    both), the LoRA unmerged."""
    from parity.render.loading import load_pipeline

    case = load_cases(write_case(quantized_suite(qtype=qtype)))[0]
    _, preview = engine.wirings(case)
    assert preview.value(Knob.QUANTIZATION) == qtype and preview[Knob.QUANTIZATION].replayable
    assert preview[Knob.TEXT_ENCODER_QUANTIZATION].replayable
    mine = engine.render(case, preview)
    assert any(f"rendered on the trainer's quantized model: transformer {qtype}, text encoder qfloat8" in n for n in mine.notes)

    pipe = load_pipeline("tiny", ".", "cpu")  # a load of its own: the replay quantizes it in place
    trainer_quantize(pipe, qtype, "qfloat8")
    for part in (pipe.transformer, pipe.text_encoder):  # the replay did quantize: every linear is quanto's now
        linears = [m for m in part.modules() if isinstance(m, torch.nn.Linear)]
        assert linears and all(isinstance(m, quanto.QLinear) for m in linears)
    lora = TrainerLora(pipe, str(case.loras[0].path))
    lora.unmerged(case.requested.lora_scale)
    images = [engine.images(p) for p in case.effective.control_images]
    oracle = trainer_generate(
        pipe, case.effective.prompt, "", images, [engine.images(p) for p in case.preview.text_images], 64, 64,
        case.effective.steps, case.effective.guidance_scale, case.effective.seed,
    )
    assert torch.equal(mine.decoded, oracle)


def test_the_torchao_preview_equals_the_trainer_replay(write_case, engine):
    """int8 on the transformer, float8 on the text encoder (torchao 0.10.0, the trainer's pin), with the matmul
    precision torchao leaves set; the reference path's precision is put back after the render."""
    from parity.render.loading import load_pipeline

    case = load_cases(write_case(quantized_suite(qtype="int8", qtype_te="float8")))[0]
    _, preview = engine.wirings(case)
    assert preview[Knob.QUANTIZATION].replayable and preview[Knob.TEXT_ENCODER_QUANTIZATION].replayable
    before = torch.get_float32_matmul_precision()
    mine = engine.render(case, preview)
    assert torch.get_float32_matmul_precision() == before == "highest"
    assert any("transformer int8, text encoder float8 (torchao 0.10.0" in n for n in mine.notes)

    pipe = load_pipeline("tiny", ".", "cpu")
    try:
        trainer_quantize_torchao(pipe, "int8", "float8")
        assert torch.get_float32_matmul_precision() == "high"  # what the trainer's process samples under
        lora = TrainerLora(pipe, str(case.loras[0].path))
        lora.unmerged(case.requested.lora_scale)
        images = [engine.images(p) for p in case.effective.control_images]
        oracle = trainer_generate(
            pipe, case.effective.prompt, "", images, [engine.images(p) for p in case.preview.text_images], 64, 64,
            case.effective.steps, case.effective.guidance_scale, case.effective.seed,
        )
    finally:
        torch.set_float32_matmul_precision(before)
    assert type(pipe.transformer.transformer_blocks[0].attn.to_q.weight).__name__ == "AffineQuantizedTensor"
    assert torch.equal(mine.decoded, oracle)


@gpu_test
def test_the_quantized_preview_equals_the_trainer_replay_in_bf16_on_cuda(write_case):
    """The trainer's device regime: the base in bf16, the blocks quantized on the GPU, the rest of the transformer
    on the CPU, the text encoder on the GPU, the LoRA a float32 branch on the GPU."""
    from parity.render.loading import place, read_pipeline

    engine = Engine("cuda")
    try:
        case = load_cases(write_case(quantized_suite()))[0]
        _, preview = engine.wirings(case)
        mine = engine.render(case, preview).decoded
        pipe = read_pipeline("tiny", ".", "cuda")  # bf16, on the CPU as from_pretrained leaves it
        trainer_quantize(pipe, "qfloat8", "qfloat8", device="cuda")
        place(pipe, "none", "cuda")
        lora = TrainerLora(pipe, str(case.loras[0].path))
        lora.unmerged(case.requested.lora_scale, device="cuda")
        images = [engine.images(p) for p in case.effective.control_images]
        oracle = trainer_generate(
            pipe, case.effective.prompt, "", images, [engine.images(p) for p in case.preview.text_images], 64, 64,
            case.effective.steps, case.effective.guidance_scale, case.effective.seed,
        )
        assert mine.dtype == torch.bfloat16
        assert torch.equal(mine, oracle)
    finally:
        engine.close()


def test_going_back_to_the_loaded_model_is_exact(write_case, engine):
    """After a quantized render the reference render is the one of a model never quantized (the loaded modules are
    put back, the text embeddings of the quantized encoder are kept apart)."""
    case = load_cases(write_case(quantized_suite()))[0]
    before = engine.render(case).decoded
    _, preview = engine.wirings(case)
    engine.render(case, preview)
    after = engine.render(case)
    assert torch.equal(before, after.decoded)
    assert not any("quantized" in n for n in after.notes)
    fresh = Engine("cpu")
    try:
        assert torch.equal(fresh.render(case).decoded, after.decoded)
    finally:
        fresh.close()


@pytest.mark.parametrize("qtype", sorted(quant.REPLAYED))
def test_the_tiny_model_feels_every_replayed_qtype(write_case, engine, qtype):
    """Each qtype moves the transformer's output, and (qfloat8 for the rest) the text encoder's."""
    plain = load_cases(write_case(quantized_suite(quantize=False, quantize_te=False), "plain.yaml"))[0]
    _, unquantized = engine.wirings(plain)
    base = engine.render(plain, unquantized).decoded
    for transformer, text_encoder in ((True, False), (False, True)):
        if text_encoder and qtype != "qfloat8":
            continue
        suite = quantized_suite(quantize=transformer, qtype=qtype, quantize_te=text_encoder, qtype_te=qtype)
        case = load_cases(write_case(suite, f"{qtype}-{transformer}.yaml"))[0]
        _, preview = engine.wirings(case)
        decoded = engine.render(case, preview).decoded
        assert not torch.equal(decoded, base), (qtype, transformer, text_encoder)


def test_a_quantized_preview_is_explained_by_the_quantization(write_case, workdir, engine):
    """A preview drawn by the preview wiring on the quantized model: `run --diagnose` names the quantization, and
    the full preview wiring reproduces it exactly."""
    from PIL import Image

    from parity.judge.compare import compare
    from parity.judge.diagnose import diagnose

    (workdir / "cases" / "samples").mkdir()
    suite = quantized_suite(quantize_te=False).replace('network_multiplier: 0.8}', 'network_multiplier: 1.0, baseline: samples/0.png}')
    suite = suite.replace("sample:\n", "sample:\n  format: png\n")
    (workdir / "cases" / "samples" / "0.png").write_bytes(b"")
    case = load_cases(write_case(suite, "drawn.yaml"))[0]
    reference, preview = engine.wirings(case)
    drawn = engine.render(case, preview)
    Image.fromarray(drawn.image).save(case.baseline)
    baseline = np.asarray(Image.open(case.baseline).convert("RGB"))

    output = engine.render(case).image
    base = compare(output, baseline, case.thresholds)
    assert base.violations
    result = diagnose(reference, preview, baseline, base.metrics, case.thresholds, lambda w: engine.render(case, w).image)
    assert result.full_preview is not None and result.full_preview.metrics.max_abs_diff == 0
    assert Knob.QUANTIZATION in result.explained_by, result.verdict
    assert result.verdict.startswith("mismatch explained by:") and "transformer quantization" in result.verdict


def test_without_the_library_the_knob_says_what_to_install():
    """No optimum-quanto (or another version than the trainer's): shown, not replayed, with the install line."""
    from parity.models.knobs import RuntimeFacts
    from parity.models.qwen.knobs import _quantization

    facts = RuntimeFacts((), False, "float32", {}, quant_libraries=(("optimum-quanto", None), ("torchao", None)))
    missing = _quantization(True, "qfloat8", facts)
    assert not missing.replayable
    assert missing.shown == "qfloat8 (not replayed: optimum-quanto 0.2.4 is not installed (pip install 'parity[trainer]'))"
    other = _quantization(True, None, RuntimeFacts((), False, "float32", {}, quant_libraries=(("optimum-quanto", "0.2.5"),)))
    assert not other.replayable and "the trainer pins 0.2.4, and other versions give other bits" in other.shown
    assert "(the trainer's default)" in other.shown
    adapter = _quantization(True, "uint3|ostris/ara/qwen_uint3.safetensors", RuntimeFacts((), False, "float32", {}))
    assert not adapter.replayable and "accuracy recovery adapter" in adapter.shown
    own = _quantization(True, "uint4", RuntimeFacts((), False, "float32", {}))
    assert not own.replayable and own.shown == (
        "uint4 (not replayed: parity does not replay uint4 (it replays qfloat8, qfloat8_e4m3fn, qfloat8_e5m2, qint8, "
        "qint4, qint2 (optimum-quanto 0.2.4); int8, float8 (torchao 0.10.0)))"
    )
    torchao = _quantization(True, "float8", RuntimeFacts((), False, "float32", {}, quant_libraries=(("torchao", None),)))
    assert not torchao.replayable and "torchao 0.10.0 is not installed" in torchao.shown
    here = RuntimeFacts((), False, "float32", {}, quant_libraries=(("torchao", "0.10.0"),))
    assert _quantization(True, "float8", here).replayable
    offloaded = _quantization(True, "float8", here, offloaded=True)  # what layer_offloading turns qfloat8 into
    assert not offloaded.replayable and "MemoryManager runs each layer on its dequantized weight" in offloaded.shown


def test_an_unreplayed_qtype_is_never_rendered(write_case, engine):
    """uint4 (ai-toolkit's own backend) is recorded, not replayed: the preview renders on the loaded model and the
    table says so."""
    case = load_cases(write_case(quantized_suite(qtype="uint4", quantize_te=False)))[0]
    _, preview = engine.wirings(case)
    assert not preview[Knob.QUANTIZATION].replayable
    rendered = engine.render(case, preview)
    assert not any("quantized model" in n for n in rendered.notes)
