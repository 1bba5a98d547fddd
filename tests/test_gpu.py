"""The CUDA path (bf16, as the reference server runs): exactness against the stock call and order independence.

Skipped without a CUDA device; run on a GPU machine with `pytest -m gpu`.
"""

import pytest
import torch
from conftest import INPUTS, TINY_LORA
from oracle import server_generate

from parity.images import open_rgb
from parity.loading import load_pipeline
from parity.lora import FusedLora
from parity.wiring import Renderer, Request

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(scope="module")
def cuda_pipe():
    return load_pipeline("tiny", ".", "cuda")


def images(*names):
    return tuple(open_rgb(INPUTS / f"{n}.png", n) for n in names)


@pytest.mark.parametrize("names", [("landscape",), ("person", "hat", "square")])
def test_cuda_wiring_equals_the_stock_call_in_bf16(cuda_pipe, names):
    assert cuda_pipe.transformer.dtype == torch.bfloat16
    imgs = images(*names)
    request = Request("sks put the hat on", "", 96, 64, 4, 4.0, 11, imgs)
    rendered = Renderer(cuda_pipe).render(request)
    stock = server_generate(cuda_pipe, request.prompt, "", imgs, 96, 64, 4, 4.0, 11)
    mine = cuda_pipe.image_processor.postprocess(rendered.decoded, output_type="pt")
    assert torch.equal(mine, stock)


def test_cuda_output_does_not_depend_on_the_scales_fused_before(cuda_pipe):
    imgs = images("person", "hat")
    request = Request("a hat", "", 64, 64, 3, 4.0, 5, imgs)
    wiring = Renderer(cuda_pipe)
    lora = FusedLora(cuda_pipe)
    lora.apply(str(TINY_LORA), 1.0)
    alone = wiring.render(request).decoded
    lora.apply(str(TINY_LORA), 0.5)
    wiring.render(request)
    lora.apply(str(TINY_LORA), 0.8)
    lora.apply(str(TINY_LORA), 1.0)
    after_others = wiring.render(request).decoded
    lora.apply(None, None)
    assert torch.equal(alone, after_others)


def test_a_real_cuda_out_of_memory_is_one_error_row_and_the_next_case_runs(write_case, workdir):
    from parity.results import Status
    from parity.session import ParitySession, RunOptions
    from parity.suite import load_cases

    cases = load_cases(write_case(
        "loras: [{path: loras/tiny.safetensors}]\nsample:\n  width: 64\n  height: 64\n  sample_steps: 2\n  neg: ''\n"
        "  samples:\n    - {name: a, prompt: a, ctrl_img_1: inputs/square.png}\n    - {name: b, prompt: b, ctrl_img_1: inputs/square.png}\n"
    ))
    session = ParitySession(RunOptions(out_dir=workdir / "out", device="cuda"))
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(1e-5)  # ~1.4 MB of the H200: nothing fits
    try:
        first = session.run_case(cases[0])
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    second = session.run_case(cases[1])
    session.finish()
    assert first.status is Status.ERROR and "ran out of memory" in first.reason
    assert second.status is Status.FAIL and "baseline was missing" in second.reason
