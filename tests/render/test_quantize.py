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
import torch.nn.functional as F
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


def trainer_sample(engine, case, quantize, device: str = "cpu"):
    """The trainer's sampling of `case` on a pipeline of its own, as ai-toolkit builds it: loaded (on the CPU, as
    from_pretrained leaves it), quantized in place by `quantize(pipe)`, placed on `device`, the user's LoRA as an
    unmerged float32 branch (tests/preview_oracle.py); returns (the VAE output, the pipeline)."""
    from parity.render.loading import place, read_pipeline

    pipe = read_pipeline("tiny", ".", device)
    quantize(pipe)
    place(pipe, "none", device)
    TrainerLora(pipe, str(case.loras[0].path)).unmerged(case.requested.lora_scale, device=device)
    images = [engine.images(p) for p in case.effective.control_images]
    decoded = trainer_generate(
        pipe, case.effective.prompt, "", images, [engine.images(p) for p in case.preview.text_images], 64, 64,
        case.effective.steps, case.effective.guidance_scale, case.effective.seed,
    )
    return decoded, pipe


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


def trainer_quantize(pipe, qtype: str, qtype_te: str | None, device: str = "cpu", transformer: bool = True) -> None:
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

    model = pipe.transformer  # on the CPU, as from_pretrained leaves it
    for block in model.transformer_blocks if transformer else ():
        block.to(device, dtype=model.dtype)
        trainer_loop(block, qtypes[qtype])
        freeze(block)
        block.to("cpu")
    if transformer:
        trainer_loop(model, qtypes[qtype])
        freeze(model)
    if qtype_te is not None:
        pipe.text_encoder.to(device)
        trainer_loop(pipe.text_encoder, qtypes[qtype_te])
        freeze(pipe.text_encoder)


QUANTO_QTYPES = sorted(q for q, library in quant.REPLAYED.items() if library == "optimum-quanto")


@pytest.mark.parametrize("qtype", QUANTO_QTYPES)
def test_the_quantized_preview_equals_the_trainer_replay(write_case, engine, qtype):
    """Each quanto qtype on the transformer, qfloat8 on the text encoder (the trainer UI's default job is qfloat8 on
    both), the LoRA unmerged."""

    case = load_cases(write_case(quantized_suite(qtype=qtype)))[0]
    _, preview = engine.wirings(case)
    assert preview.value(Knob.QUANTIZATION) == qtype and preview[Knob.QUANTIZATION].replayable
    assert preview[Knob.TEXT_ENCODER_QUANTIZATION].replayable
    mine = engine.render(case, preview)
    assert any(f"rendered on the trainer's quantized model: transformer {qtype} (" in n and "text encoder qfloat8 (" in n for n in mine.notes)

    oracle, pipe = trainer_sample(engine, case, lambda pipe: trainer_quantize(pipe, qtype, "qfloat8"))
    for part in (pipe.transformer, pipe.text_encoder):  # the replay did quantize: every linear is quanto's now
        linears = [m for m in part.modules() if isinstance(m, torch.nn.Linear)]
        assert linears and all(isinstance(m, quanto.QLinear) for m in linears)
    assert torch.equal(mine.decoded, oracle)


def test_the_torchao_preview_equals_the_trainer_replay(write_case, engine):
    """int8 on the transformer, float8 on the text encoder (torchao 0.10.0, the trainer's pin), with the matmul
    precision torchao leaves set; the reference path's precision is put back after the render."""

    case = load_cases(write_case(quantized_suite(qtype="int8", qtype_te="float8")))[0]
    _, preview = engine.wirings(case)
    assert preview[Knob.QUANTIZATION].replayable and preview[Knob.TEXT_ENCODER_QUANTIZATION].replayable
    before = torch.get_float32_matmul_precision()
    mine = engine.render(case, preview)
    assert torch.get_float32_matmul_precision() == before == "highest"
    assert any("transformer int8 (34 layers), text encoder float8 (" in n and "torchao 0.10.0" in n for n in mine.notes)

    def quantize(pipe):
        trainer_quantize_torchao(pipe, "int8", "float8")
        assert torch.get_float32_matmul_precision() == "high"  # what the trainer's process samples under

    try:
        oracle, pipe = trainer_sample(engine, case, quantize)
    finally:
        torch.set_float32_matmul_precision(before)
    assert type(pipe.transformer.transformer_blocks[0].attn.to_q.weight).__name__ == "AffineQuantizedTensor"
    assert torch.equal(mine.decoded, oracle)


def trainer_quantize_uintx(pipe, qtype: str | None, qtype_te: str | None, only: set[str] | None = None) -> None:
    """ai-toolkit's uintx backend (toolkit/util/uintx_quant.py UIntXQuantizer, toolkit/util/ostris_quant.py
    OstrisLinear), rewritten here from its code: per linear whose input width is a multiple of 64 (uint8: none),
    min/max per group of 64 with zero included, scale and zero point, codes, then a forward on the weight
    dequantized in its own dtype. Writing that dequantized weight into the linear gives the same F.linear."""
    eps = torch.finfo(torch.float32).eps

    def dequantized(w, bits, group=64):
        out_f, in_f = w.shape
        groups = in_f // group
        wv = w.contiguous().view(out_f, groups, group)
        low = torch.min(torch.amin(wv, dim=2), torch.zeros(out_f, groups, dtype=w.dtype))
        high = torch.max(torch.amax(wv, dim=2), torch.zeros(out_f, groups, dtype=w.dtype))
        qmax = (1 << bits) - 1
        scale = torch.clamp((high - low) / float(qmax), min=eps)
        zero = torch.clamp(-torch.round(low / scale), 0, qmax).to(torch.int32)
        codes = torch.clamp(torch.round(wv * (1.0 / scale.view(out_f, groups, 1))) + zero.view(out_f, groups, 1), 0, qmax)
        dq = codes.to(torch.uint8).to(w.dtype) - zero.to(torch.uint8).to(w.dtype).view(out_f, groups, 1)
        return (dq * scale.view(out_f, groups, 1)).view(out_f, in_f)

    for part, name in ((pipe.transformer, qtype), (pipe.text_encoder, qtype_te)):
        bits = int(name.removeprefix("uint")) if name else 8
        for module_name, module in part.named_modules():
            if only is not None and module_name not in only:
                continue
            if bits < 8 and isinstance(module, torch.nn.Linear) and module.in_features % 64 == 0:
                with torch.no_grad():
                    module.weight.copy_(dequantized(module.weight, bits))


@pytest.mark.parametrize("qtype", [f"uint{bits}" for bits in range(2, 8)])
def test_the_uintx_preview_equals_the_trainer_replay(write_case, engine, qtype):
    """ai-toolkit's own uint2..uint7 on the transformer (uint3 on the text encoder), without an adapter."""

    case = load_cases(write_case(quantized_suite(qtype=qtype, qtype_te="uint3")))[0]
    _, preview = engine.wirings(case)
    assert preview[Knob.QUANTIZATION].replayable and preview[Knob.TEXT_ENCODER_QUANTIZATION].replayable
    mine = engine.render(case, preview)
    oracle, _ = trainer_sample(engine, case, lambda pipe: trainer_quantize_uintx(pipe, qtype, "uint3"))
    assert torch.equal(mine.decoded, oracle)


def test_uint8_quantizes_nothing_as_in_the_trainer(write_case, engine):
    """ai-toolkit's UIntXQuantizer refuses uint8 (torchao 0.10.0 raised packing 8 bits, and the trainer keeps that
    end state): a uint8 job's previews come from the unquantized model, LoRA unmerged."""
    quantized = load_cases(write_case(quantized_suite(qtype="uint8", quantize_te=False), "uint8.yaml"))[0]
    plain = load_cases(write_case(quantized_suite(quantize=False, quantize_te=False), "plain.yaml"))[0]
    _, preview = engine.wirings(quantized)
    _, unquantized = engine.wirings(plain)
    assert preview[Knob.QUANTIZATION].replayable
    mine = engine.render(quantized, preview)
    assert any("transformer uint8 (no layer: ai-toolkit quantizes none with uint8)" in n for n in mine.notes)
    assert torch.equal(mine.decoded, engine.render(plain, unquantized.with_setting(Knob.LORA_METHOD, preview[Knob.LORA_METHOD])).decoded)


def trainer_adapter(pipe, qtype: str, path) -> None:
    """ai-toolkit's quantize_model with an accuracy recovery adapter, rewritten from its code: the adapter's network
    (PEFT format, alpha = rank, in the model's dtype, multiplier 1, never merged) hijacks the linears its file names;
    each of those is quantized with `qtype` (uintx: where the input width is a multiple of 64); the rest of the
    transformer with uint8, which quantizes nothing."""
    from safetensors.torch import load_file

    trainer_quantize_uintx(pipe, qtype, None, only={
        key.removeprefix("diffusion_model.").removesuffix(".lora_A.weight") for key in load_file(str(path)) if key.endswith(".lora_A.weight")
    })
    modules = dict(pipe.transformer.named_modules())
    dtype = pipe.transformer.dtype
    pairs = {}
    for key, value in load_file(str(path)).items():
        name = key.removeprefix("diffusion_model.")
        for suffix, role in ((".lora_A.weight", "down"), (".lora_B.weight", "up")):
            if name.endswith(suffix):
                pairs.setdefault(name.removesuffix(suffix), {})[role] = value.to(dtype)
    scale = torch.tensor(1.0, dtype=dtype)
    multiplier = torch.tensor((1.0,), dtype=dtype)
    for name, p in pairs.items():
        def hook(module, inputs, output, p=p):
            lx = F.linear(F.linear(inputs[0].to(dtype), p["down"]), p["up"]) * scale
            m = multiplier
            for _ in range(lx.dim() - m.dim()):
                m = m.unsqueeze(-1)
            return output + (lx * m).to(output.dtype)
        modules[name].register_forward_hook(hook)


def test_an_accuracy_recovery_adapter_preview_equals_the_trainer_replay(write_case, workdir, engine, tiny_pipe):
    """The trainer's Qwen example config: `qtype: uint3|<adapter>` and `qtype_te: qfloat8`. The adapter, written as
    the trainer's network saves a PEFT LoRA (bf16), names MLP outputs (input width 128: quantized to uint3) and
    attention queries (width 32: left in full precision, the adapter still on them); the user's LoRA runs unmerged
    around both."""
    from trainer_lora import Network, save


    adapter = save(workdir / "cases" / "ara" / "qwen_uint3.safetensors", tiny_pipe.transformer,
                   Network(linear=4, only_if_contains=("net.2", "to_q")), save_dtype="bf16", seed=11)
    case = load_cases(write_case(quantized_suite(qtype="uint3|ara/qwen_uint3.safetensors")))[0]
    _, preview = engine.wirings(case)
    setting = preview[Knob.QUANTIZATION]
    assert setting.replayable, setting.shown
    assert "and its accuracy recovery adapter (a branch in the model dtype, scale 1)" in setting.shown
    mine = engine.render(case, preview)
    assert any("transformer uint3|ara/qwen_uint3.safetensors (" in n for n in mine.notes)

    def quantize(pipe):
        trainer_quantize(pipe, "qfloat8", "qfloat8", transformer=False)
        trainer_adapter(pipe, "uint3", adapter)

    oracle, _ = trainer_sample(engine, case, quantize)
    assert torch.equal(mine.decoded, oracle)

    plain = load_cases(write_case(quantized_suite(qtype="uint3"), "no-adapter.yaml"))[0]  # the adapter moves the output
    _, without = engine.wirings(plain)
    assert not torch.equal(engine.render(plain, without).decoded, mine.decoded)


def test_an_adapter_that_is_not_here_says_where_to_put_it(write_case, engine, tmp_path, monkeypatch):
    """parity never downloads: an adapter named the hub's way is looked up in the local HF cache only, and where it
    is missing the knob says how to fetch it; found in the cache, it is replayed."""
    import huggingface_hub.constants
    from trainer_lora import Network, save

    from parity.render.loading import load_pipeline

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    qtype = "uint3|ostris/accuracy_recovery_adapters/qwen_uint3.safetensors"
    case = load_cases(write_case(quantized_suite(qtype=qtype, quantize_te=False), "hub.yaml"))[0]
    _, preview = engine.wirings(case)
    assert not preview[Knob.QUANTIZATION].replayable
    assert (
        "not in the local HF cache (parity never downloads: `huggingface-cli download ostris/accuracy_recovery_adapters "
        "qwen_uint3.safetensors`" in preview[Knob.QUANTIZATION].shown
    )
    snapshot = tmp_path / "hub" / "models--ostris--accuracy_recovery_adapters" / "snapshots" / ("0" * 40)
    (tmp_path / "hub" / "models--ostris--accuracy_recovery_adapters" / "refs").mkdir(parents=True)
    (tmp_path / "hub" / "models--ostris--accuracy_recovery_adapters" / "refs" / "main").write_text("0" * 40)
    save(snapshot / "qwen_uint3.safetensors", load_pipeline("tiny", ".", "cpu").transformer, Network(only_if_contains=("net.2",)), "bf16")
    _, preview = engine.wirings(case)
    assert preview[Knob.QUANTIZATION].replayable, preview[Knob.QUANTIZATION].shown


@gpu_test
def test_the_quantized_preview_equals_the_trainer_replay_in_bf16_on_cuda(write_case):
    """The trainer's device regime: the base in bf16, the blocks quantized on the GPU, the rest of the transformer
    on the CPU, the text encoder on the GPU, the LoRA a float32 branch on the GPU."""
    engine = Engine("cuda")
    try:
        case = load_cases(write_case(quantized_suite()))[0]
        _, preview = engine.wirings(case)
        mine = engine.render(case, preview).decoded
        # bf16, loaded on the CPU; the blocks quantized on the GPU, the rest on the CPU, then placed on the GPU
        oracle, _ = trainer_sample(engine, case, lambda pipe: trainer_quantize(pipe, "qfloat8", "qfloat8", device="cuda"), "cuda")
        assert mine.dtype == torch.bfloat16
        assert torch.equal(mine, oracle)
    finally:
        engine.close()


@gpu_test
def test_on_a_gpu_the_set_out_of_use_waits_in_host_memory(write_case):
    """While the quantized modules render, the loaded ones lie in host memory, and the other way round; the
    reference render after the round trip is the one before, bit for bit."""
    engine = Engine("cuda")
    try:
        case = load_cases(write_case(quantized_suite()))[0]
        before = engine.render(case).decoded
        _, preview = engine.wirings(case)
        engine.render(case, preview)
        part = engine._loaded.quant.transformer
        assert part.originals and all(p.device.type == "cpu" for m in part.originals.values() for p in m.parameters())
        after = engine.render(case).decoded
        assert all(p.device.type == "cuda" for m in part.originals.values() for p in m.parameters())
        assert all(t.device.type == "cpu" for m in part.made["qfloat8"].values() for t in (*m.parameters(), *m.buffers()))
        assert torch.equal(before, after)

        def nbytes(modules):
            return sum(t.numel() * t.element_size() for m in modules for t in (*m.parameters(), *m.buffers()))

        quant = engine._loaded.quant
        loaded, made = nbytes(part.originals.values()), nbytes(part.made["qfloat8"].values())
        largest = max(nbytes([m]) for m in (*part.originals.values(), *part.made["qfloat8"].values()))
        torch.cuda.synchronize()
        start = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        quant.apply("qfloat8", "qfloat8", before=lambda: None)  # the made set again: one module at a time
        assert torch.cuda.max_memory_allocated() - start <= max(made - loaded, 0) + largest
    finally:
        engine.close()


def test_two_case_files_naming_one_adapter_path_get_their_own_files(write_case, workdir, engine, tiny_pipe):
    """`uint3|ara/x.safetensors` in two folders names two files: each case renders its own (the quantized set is
    kept per file and its stamp, not per qtype text), and an edited file is read again."""
    from trainer_lora import Network, save

    targets = Network(linear=4, only_if_contains=("net.2",))
    save(workdir / "cases" / "ara" / "x.safetensors", tiny_pipe.transformer, targets, "bf16", seed=1)
    save(workdir / "cases" / "other" / "ara" / "x.safetensors", tiny_pipe.transformer, targets, "bf16", seed=2)
    suite = quantized_suite(qtype="uint3|ara/x.safetensors", quantize_te=False)
    first = load_cases(write_case(suite, "first.yaml"))[0]
    (workdir / "cases" / "other" / "inputs").symlink_to(workdir / "cases" / "inputs")
    (workdir / "cases" / "other" / "loras").symlink_to(workdir / "cases" / "loras")
    second = load_cases(write_case(suite, "other/second.yaml"))[0]
    renders = [engine.render(c, engine.wirings(c)[1]).decoded for c in (first, second, first)]
    assert not torch.equal(renders[0], renders[1]) and torch.equal(renders[0], renders[2])
    save(workdir / "cases" / "ara" / "x.safetensors", tiny_pipe.transformer, targets, "bf16", seed=2)  # edited
    assert torch.equal(engine.render(first, engine.wirings(first)[1]).decoded, renders[1])


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


@pytest.mark.parametrize("qtype", sorted(q for q in quant.REPLAYED if q != "uint8"))
def test_the_tiny_model_feels_every_replayed_qtype(write_case, engine, qtype):
    """Each qtype moves the transformer's output, and (qfloat8 for the rest) the text encoder's. uint8 moves
    nothing, as in the trainer (test_uint8_quantizes_nothing_as_in_the_trainer)."""
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


def test_an_unreplayed_qtype_is_never_rendered(write_case, engine):
    """orbit3 (ai-toolkit's own backend) is recorded, not replayed: the preview renders on the loaded model and the
    table says so."""
    case = load_cases(write_case(quantized_suite(qtype="orbit3", quantize_te=False)))[0]
    _, preview = engine.wirings(case)
    assert not preview[Knob.QUANTIZATION].replayable
    rendered = engine.render(case, preview)
    assert not any("quantized model" in n for n in rendered.notes)


def test_an_adapter_the_trainer_would_not_load_is_shown_not_replayed(write_case, workdir, engine, tiny_pipe):
    """A file that is no safetensors, one that mixes ranks (the trainer cuts or pads them to the first rank): the
    knob says why, before any render; a preview drawn where the adapter is missing says what it was drawn without."""
    import torch as t
    from safetensors.torch import save_file

    from parity.render.previews import draw_previews

    (workdir / "cases" / "ara").mkdir()
    (workdir / "cases" / "ara" / "broken.safetensors").write_bytes(b"not a safetensors file")
    prefix = "diffusion_model.transformer_blocks.0"
    save_file({f"{prefix}.attn.to_q.lora_A.weight": t.ones(4, 32), f"{prefix}.attn.to_q.lora_B.weight": t.ones(32, 4),
               f"{prefix}.attn.to_k.lora_A.weight": t.ones(2, 32), f"{prefix}.attn.to_k.lora_B.weight": t.ones(32, 2)},
              str(workdir / "cases" / "ara" / "mixed.safetensors"))
    for name, why in (("broken", "is not a readable safetensors file"), ("mixed", "mixes ranks [2, 4]: the trainer builds")):
        case = load_cases(write_case(quantized_suite(qtype=f"uint3|ara/{name}.safetensors", quantize_te=False), f"{name}.yaml"))[0]
        _, preview = engine.wirings(case)
        setting = preview[Knob.QUANTIZATION]
        assert not setting.replayable and f"(not replayed: the accuracy recovery adapter ara/{name}.safetensors: " in setting.shown
        assert why in setting.shown, setting.shown

    suite = quantized_suite(qtype="uint3|ara/absent.safetensors", quantize_te=False).replace(
        'network_multiplier: 0.8}', 'network_multiplier: 0.8, baseline: drawn/0.jpg}')
    absent = load_cases(write_case(suite, "absent.yaml"))
    said: list[str] = []
    (written,) = draw_previews(absent, engine, said=said.append)
    assert written.is_file() and len(said) == 1
    assert "drawn without what parity does not replay here: transformer quantization: uint3|ara/absent.safetensors" in said[0]


def test_an_adapter_for_another_model_is_refused_and_the_model_stays_loaded(write_case, workdir, engine):
    """Names the transformer lacks: the case is refused, naming them, before anything changes; the loaded model
    stays (a reload costs minutes at full size) and renders the reference as before."""
    import torch as t
    from safetensors.torch import save_file

    from parity.core.errors import QuantizationRefused

    (workdir / "cases" / "ara").mkdir()
    save_file({"diffusion_model.blocks.9.q.lora_A.weight": t.ones(4, 32), "diffusion_model.blocks.9.q.lora_B.weight": t.ones(32, 4)},
              str(workdir / "cases" / "ara" / "other.safetensors"))
    case = load_cases(write_case(quantized_suite(qtype="uint3|ara/other.safetensors", quantize_te=False)))[0]
    before = engine.render(case).decoded
    loaded = engine._loaded
    _, preview = engine.wirings(case)
    assert preview[Knob.QUANTIZATION].replayable  # the file is a LoRA; what it names is the model's question
    with pytest.raises(QuantizationRefused, match=r"names 1 layer\(s\) this transformer lacks \(blocks.9.q\)"):
        engine.render(case, preview)
    assert engine._loaded is loaded
    assert torch.equal(engine.render(case).decoded, before)
