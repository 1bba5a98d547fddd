"""The reference server's SET_ADAPTERS LoRA application (its Qwen-Image, Qwen-Image-Edit and Edit-2509 models):
the adapter loaded and kept unfused, a scale other than 1 set with diffusers' set_weights_and_activate_adapters.
parity's LoraState reaches the same weights and the same output bits (torch.equal), from a fresh load and after
any other state (fused at some scale, the adapter at another), on the tiny model."""

import pytest
import torch
from oracle import server_generate
from paths import INPUTS, TINY_LORA

from parity.core.images import open_rgb
from parity.facts.scale import Alpha, LoraScale
from parity.models.knobs import LoraMethod
from parity.render.loading import load_pipeline
from parity.render.lora import LoraState, is_tuner

IMAGES = (open_rgb(INPUTS / "hat.png", "hat"),)


def server_set_adapters(scale: float):
    """ai-toolkit-inference's `_load_lora` for a SET_ADAPTERS model, on a fresh pipeline (src/pipelines/base.py)."""
    from diffusers.utils.peft_utils import set_weights_and_activate_adapters

    pipe = load_pipeline("tiny", ".", "cpu")
    pipe.load_lora_weights(str(TINY_LORA.parent), weight_name=TINY_LORA.name, adapter_name="lora", local_files_only=True)
    if scale != 1.0:
        set_weights_and_activate_adapters(pipe.transformer, ["lora"], [scale])
    return pipe


def render(pipe):
    return server_generate(pipe, "sks put the hat on", "", IMAGES, 64, 64, 2, 4.0, 3)


def scalings(pipe) -> dict:
    return {n: dict(m.scaling) for n, m in pipe.transformer.named_modules() if is_tuner(m)}


@pytest.fixture(scope="module")
def server():
    pipes = {scale: server_set_adapters(scale) for scale in (0.7, 1.0)}
    return {scale: (pipe, render(pipe) if scale == 1.0 else None) for scale, pipe in pipes.items()}


def test_the_adapter_after_any_state_is_the_servers_fresh_set_adapters(server):
    pipe = load_pipeline("tiny", ".", "cpu")
    lora = LoraState.for_pipe(pipe)
    path = str(TINY_LORA)
    steps = [
        (LoraMethod.DIFFUSERS_ADAPTER, 0.7),  # from a fresh load
        (LoraMethod.DIFFUSERS_ADAPTER, 1.0),  # a scale switch back to the loaded scale
        (LoraMethod.DIFFUSERS_FUSE, 0.5),  # fused in between...
        (LoraMethod.DIFFUSERS_ADAPTER, 0.7),  # ...and the adapter again: the fused weights were restored
        (LoraMethod.DIFFUSERS_FUSE, 0.5),
        (LoraMethod.DIFFUSERS_ADAPTER, 1.0),  # from a fuse straight to the loaded scale
        (LoraMethod.AITK_MERGE, 0.8),  # ai-toolkit's merge in between
        (LoraMethod.DIFFUSERS_ADAPTER, 1.0),
    ]
    for method, scale in steps:
        alpha = Alpha.RANK if method is LoraMethod.AITK_MERGE else Alpha.FILE
        timings = lora.apply(method, path, LoraScale(scale, alpha))
        if method is not LoraMethod.DIFFUSERS_ADAPTER:
            continue
        reference, _ = server[scale]
        assert scalings(pipe) == scalings(reference), (method, scale)
        mine = pipe.transformer.state_dict()
        assert all(torch.equal(v, reference.transformer.state_dict()[k]) for k, v in mine.items())
        assert "lora_fuse" not in timings
    # equal weights and scalings are equal renders; rendered once, at the end of the walk, to show it
    assert torch.equal(render(pipe), server[1.0][1])


def test_a_fuse_after_the_adapter_is_a_fresh_fuse():
    path = str(TINY_LORA)
    fresh = load_pipeline("tiny", ".", "cpu")
    LoraState.for_pipe(fresh).apply(LoraMethod.DIFFUSERS_FUSE, path, LoraScale(0.6))
    pipe = load_pipeline("tiny", ".", "cpu")
    lora = LoraState.for_pipe(pipe)
    lora.apply(LoraMethod.DIFFUSERS_ADAPTER, path, LoraScale(0.3))
    lora.apply(LoraMethod.DIFFUSERS_FUSE, path, LoraScale(0.6))
    assert scalings(pipe) == scalings(fresh)
    mine, theirs = pipe.transformer.state_dict(), fresh.transformer.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in mine.items())
    assert lora.key == (path, 0.6, True, None)
