"""The CUDA path (bf16, as the reference server runs): exactness against the stock call and order independence.

Skipped without a CUDA device; run on a GPU machine with `pytest -m gpu`.
"""

import pytest
import torch
from devices import GPU_MARKS
from oracle import server_generate
from paths import INPUTS, TINY_LORA, case_folder

from parity.core.images import open_rgb
from parity.models.qwen.wiring import Renderer, Request
from parity.render.loading import load_pipeline
from parity.render.lora import FusedLora

pytestmark = GPU_MARKS


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
    from parity.cases.suite import load_cases
    from parity.results.record import Status
    from parity.run.session import ParitySession, RunOptions

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


two_gpus = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")


@two_gpus
def test_cfg_parallel_on_two_gpus_equals_one_gpu():
    """Each unconditional pass on cuda:1 while the conditional one runs on cuda:0: the same bits as cuda:0 alone,
    across scale switches (the copy follows every re-fuse) and 1 to 3 control images."""
    from parity.cases.suite import load_cases
    from parity.render.engine import Engine

    cases = load_cases(INPUTS.parent / "example.yaml")
    one, two = Engine("cuda:0"), Engine("cuda:0", cfg_device="cuda:1")
    for case in cases:
        expected = one.render(case)
        got = two.render(case)
        assert torch.equal(expected.decoded, got.decoded), case.name
    assert two.cfg.replica.model.transformer_blocks[0].attn.to_q.weight.device == torch.device("cuda:1")


@two_gpus
def test_xdist_workers_take_one_gpu_each_and_agree_bit_for_bit(pytester):
    """`-n 2 --parity-device cuda`: worker gwN renders on cuda:N; the baselines the two GPUs pinned all pass
    when the whole suite runs again on cuda:1 alone (the same bits on either GPU)."""
    import json

    case_folder(pytester.path / "cases")
    samples = "".join(
        f"    - {{name: c{i}, prompt: 'case {i}', ctrl_img_1: inputs/square.png, network_multiplier: {0.5 + i / 10}}}\n"
        for i in range(6)
    )
    (pytester.path / "cases" / "suite.yaml").write_text(
        "loras: [{path: loras/tiny.safetensors}]\nsample:\n  width: 64\n  height: 64\n  sample_steps: 3\n  neg: ''\n"
        f"  samples:\n{samples}"
    )
    pytester.makeini("[pytest]\nparity_cases = cases\nparity_out = out\n")
    args = ("-p", "parity.plugin", "-n", "2", "--parity-device", "cuda")
    first = pytester.runpytest_subprocess(*args)
    first.assert_outcomes(failed=6)  # baselines written
    pinned_on = {json.loads((pytester.path / "out" / w / "results.json").read_text())["run"]["device"]: w for w in ("gw0", "gw1")}
    assert set(pinned_on) == {"cuda:0", "cuda:1"}
    again = pytester.runpytest_subprocess("-p", "parity.plugin", "--parity-device", "cuda:1")
    again.assert_outcomes(passed=6)


def test_cuda_lora_load_equals_the_servers_default_load():
    """parity's low_cpu_mem_usage load, fused, against the server's plain load + fuse, on the GPU in bf16."""
    ours, theirs = load_pipeline("tiny", ".", "cuda"), load_pipeline("tiny", ".", "cuda")
    FusedLora(ours).apply(str(TINY_LORA), 0.7)
    theirs.load_lora_weights(str(TINY_LORA.parent), weight_name=TINY_LORA.name, adapter_name="lora")
    theirs.fuse_lora(adapter_names=["lora"], lora_scale=0.7)
    mine, reference = ours.transformer.state_dict(), theirs.transformer.state_dict()
    assert mine.keys() == reference.keys() and any(".lora_A." in k for k in mine)
    assert all(mine[k].dtype == reference[k].dtype and torch.equal(mine[k], reference[k]) for k in mine)
