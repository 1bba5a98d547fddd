"""The reference wiring against the stock pipeline call, bit for bit (torch.equal)."""

import numpy as np
import pytest
import torch
from conftest import INPUTS
from oracle import server_generate

from parity.images import open_rgb
from parity.wiring import Renderer, Request


def images(*names):
    return tuple(open_rgb(INPUTS / f"{n}.png", n) for n in names)


@pytest.mark.parametrize(
    "names, width, height, guidance",
    [
        (("landscape",), 96, 64, 4.0),  # one 2:1 control image, non-square output
        (("person", "hat", "square"), 64, 64, 4.0),  # three pictures: portrait, landscape, square
        (("hat",), 64, 96, 1.0),  # guidance 1: no CFG pass
    ],
)
def test_reference_wiring_equals_the_stock_call(tiny_pipe, names, width, height, guidance):
    imgs = images(*names)
    request = Request("sks put the hat on", "blurry", width, height, 3, guidance, 11, imgs)
    rendered = Renderer(tiny_pipe).render(request)
    stock = server_generate(tiny_pipe, request.prompt, request.negative_prompt, imgs, width, height, 3, guidance, 11)
    mine = tiny_pipe.image_processor.postprocess(rendered.decoded, output_type="pt")
    assert mine.shape == stock.shape == (1, 3, height, width)
    assert torch.equal(mine, stock)
    stock_pil = server_generate(tiny_pipe, request.prompt, "blurry", imgs, width, height, 3, guidance, 11, "pil")[0]
    assert np.array_equal(rendered.image, np.asarray(stock_pil))


def test_wiring_is_deterministic_and_the_latent_cache_is_exact(tiny_pipe):
    imgs = images("person", "hat")
    request = Request("a hat", "", 64, 64, 2, 4.0, 5, imgs)
    wiring = Renderer(tiny_pipe)
    first = wiring.render(request)
    assert len(wiring.latent_cache) == 2
    second = wiring.render(request)  # control latents now come from the cache
    fresh = Renderer(tiny_pipe).render(request)  # empty cache
    assert torch.equal(first.decoded, second.decoded)
    assert torch.equal(first.decoded, fresh.decoded)
    assert second.timings["vae_encode"] < first.timings["vae_encode"]
