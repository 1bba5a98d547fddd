"""The reference wiring against the stock pipeline call, bit for bit (torch.equal)."""

import numpy as np
import pytest
import torch
from oracle import server_generate
from paths import INPUTS

from parity.core.images import open_rgb
from parity.models.qwen.wiring import Renderer, Request


def images(*names):
    return tuple(open_rgb(INPUTS / f"{n}.png", n) for n in names)


@pytest.mark.parametrize(
    "names, width, height, guidance",
    [
        (("person", "hat", "landscape"), 96, 64, 4.0),  # three pictures (3:4, 4:3, 2:1), non-square output, CFG
        (("hat",), 64, 96, 1.0),  # guidance 1: no CFG pass
    ],
)
def test_reference_wiring_equals_the_stock_call(tiny_pipe, tiny_latents, names, width, height, guidance):
    imgs = images(*names)
    request = Request("sks put the hat on", "blurry", width, height, 2, guidance, 11, imgs)
    renderer = Renderer(tiny_pipe)
    renderer.latent_cache = tiny_latents  # exact (the test below); the stock call encodes its own
    rendered = renderer.render(request)
    stock = server_generate(tiny_pipe, request.prompt, request.negative_prompt, imgs, width, height, 2, guidance, 11)
    mine = tiny_pipe.image_processor.postprocess(rendered.decoded, output_type="pt")
    assert mine.shape == stock.shape == (1, 3, height, width)
    assert torch.equal(mine, stock)
    # the stock call's PIL output is its "pt" output converted by the same image processor
    stock_pil = tiny_pipe.image_processor.numpy_to_pil(tiny_pipe.image_processor.pt_to_numpy(stock))[0]
    assert np.array_equal(rendered.image, np.asarray(stock_pil))


def test_wiring_is_deterministic_and_the_latent_cache_is_exact(tiny_pipe, monkeypatch):
    encodes = []
    real = tiny_pipe._encode_vae_image
    monkeypatch.setattr(tiny_pipe, "_encode_vae_image", lambda *a, **k: encodes.append(1) or real(*a, **k))
    imgs = images("person")
    request = Request("a hat", "", 64, 64, 2, 4.0, 5, imgs)
    wiring = Renderer(tiny_pipe)
    first = wiring.render(request)
    assert len(wiring.latent_cache) == 1 and len(encodes) == 1
    second = wiring.render(request)  # control latents now come from the cache
    assert len(encodes) == 1
    fresh = Renderer(tiny_pipe).render(request)  # empty cache: encoded again
    assert len(encodes) == 2
    assert torch.equal(first.decoded, second.decoded)
    assert torch.equal(first.decoded, fresh.decoded)
