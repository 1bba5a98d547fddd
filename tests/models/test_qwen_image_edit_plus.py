"""Qwen-Image-Edit-2509 (model id `qwen_image_edit_plus`): what its tiny model shares with 2511's. Both wirings, the
diagnosis and the sensitivity are the model contract's (tests/models/test_contract.py)."""

import pytest
import torch

from parity.models import get_model
from parity.render.loading import load_pipeline

MODEL = "qwen_image_edit_plus"
@pytest.fixture(scope="module")
def pipe_2509():
    return load_pipeline("tiny", ".", "cpu", model_id=MODEL)


def test_the_tiny_2509_is_the_2511_layout_with_zero_cond_t_off(pipe_2509, tiny_pipe):
    """Same classes and sizes; the text encoder and the VAE are the 2511's (so control latents are shared), the
    transformer is drawn from its own seed."""
    mine, theirs = ({k: v for k, v in p.transformer.config.items() if k != "_name_or_path"} for p in (pipe_2509, tiny_pipe))
    assert mine.pop("zero_cond_t") is False and theirs.pop("zero_cond_t") is True
    assert mine == theirs
    for name in ("text_encoder", "vae"):
        a, b = getattr(pipe_2509, name).state_dict(), getattr(tiny_pipe, name).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    a, b = pipe_2509.transformer.state_dict(), tiny_pipe.transformer.state_dict()
    assert a.keys() == b.keys() and not torch.equal(a["transformer_blocks.0.attn.to_q.weight"], b["transformer_blocks.0.attn.to_q.weight"])
    assert get_model(MODEL).ensure_tiny() != get_model("qwen_image_edit_plus_2511").ensure_tiny()
