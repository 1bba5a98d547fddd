"""Base-model loading offline and exact LoRA fusing."""

import pytest
import torch
from paths import TINY_LORA
from safetensors.torch import save_file

from parity.core.errors import ModelLoadError
from parity.render.loading import load_pipeline
from parity.render.lora import FusedLora, lora_module_names


@pytest.fixture
def pipe():
    return load_pipeline("tiny", ".", "cpu")


def transformer_state(pipe):
    return {k: v.detach().clone() for k, v in pipe.transformer.state_dict().items()}


def fused_weights(pipe):
    """Every base weight the LoRA targets (PEFT keeps them under `.base_layer.`)."""
    return {k: v.detach().clone() for k, v in pipe.transformer.state_dict().items() if ".base_layer." in k}


def test_refusing_at_any_scale_equals_a_fresh_fuse(pipe):
    lora = FusedLora(pipe)
    lora.apply(str(TINY_LORA), 1.0)
    fresh_1 = fused_weights(pipe)
    lora.apply(str(TINY_LORA), 0.5)
    at_half = fused_weights(pipe)
    lora.apply(str(TINY_LORA), 0.8)
    lora.apply(str(TINY_LORA), 1.0)
    again_1 = fused_weights(pipe)
    assert all(torch.equal(fresh_1[k], again_1[k]) for k in fresh_1)
    assert any(not torch.equal(fresh_1[k], at_half[k]) for k in fresh_1)

    other = load_pipeline("tiny", ".", "cpu")
    FusedLora(other).apply(str(TINY_LORA), 0.5)
    fresh_half = fused_weights(other)
    assert all(torch.equal(fresh_half[k], at_half[k]) for k in fresh_half)


def test_the_servers_unfuse_then_fuse_keeps_the_old_scale(pipe):
    """Documents a quirk of the reference server's set_lora_scale (unfuse_lora -> fuse_lora(new scale)):
    diffusers multiplies PEFT's scaling in place on fuse and never resets it, so 0.5 -> 1.0 stays at 0.5."""
    pipe.load_lora_weights(str(TINY_LORA.parent), weight_name=TINY_LORA.name, adapter_name="lora")
    pipe.fuse_lora(adapter_names=["lora"], lora_scale=0.5)
    at_half = fused_weights(pipe)
    pipe.unfuse_lora()
    pipe.fuse_lora(adapter_names=["lora"], lora_scale=1.0)
    after_switch = fused_weights(pipe)
    assert all(torch.equal(at_half[k], after_switch[k]) for k in at_half)


def test_dropping_the_lora_restores_the_base_model(pipe):
    before = transformer_state(pipe)
    lora = FusedLora(pipe)
    lora.apply(str(TINY_LORA), 0.7)
    lora.apply(None, None)
    after = transformer_state(pipe)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_lora_matching_nothing_is_an_error_not_a_silent_no_op(pipe, tmp_path):
    bad = tmp_path / "bad.safetensors"
    save_file(
        {
            "diffusion_model.transformer_blocks.0.attn.to_q.lora_A.weight": torch.zeros(4, 32),
            "diffusion_model.transformer_blocks.0.attn.to_q.lora_B.weight": torch.zeros(32, 4),
            "diffusion_model.transformer_blocks.0.attn.to_qq.lora_A.weight": torch.zeros(4, 32),
            "diffusion_model.transformer_blocks.0.attn.to_qq.lora_B.weight": torch.zeros(32, 4),
        },
        str(bad),
    )
    assert lora_module_names(str(bad)) == {"transformer_blocks.0.attn.to_q", "transformer_blocks.0.attn.to_qq"}
    with pytest.raises(ModelLoadError, match="match nothing"):
        FusedLora(pipe).apply(str(bad), 1.0)


def test_a_pickled_lora_is_refused(pipe, tmp_path):
    path = tmp_path / "lora.ckpt"
    path.write_bytes(b"not loaded")
    with pytest.raises(ModelLoadError, match="not a .safetensors"):
        FusedLora(pipe).apply(str(path), 1.0)


def test_an_hf_id_missing_from_the_cache_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ModelLoadError, match="local cache only"):
        load_pipeline("nobody/not-a-model", str(tmp_path), "cpu")


def test_a_missing_local_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="folder not found"):
        load_pipeline("./missing-model", str(tmp_path), "cpu")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_parity_loads_the_lora_to_the_same_bits_as_the_servers_default_load(dtype):
    """parity loads with low_cpu_mem_usage (no throw-away random init); every transformer tensor, the LoRA's own
    A/B weights included, must equal the server's plain load_lora_weights + fuse_lora, in float32 and bf16."""
    ours, theirs = load_pipeline("tiny", ".", "cpu"), load_pipeline("tiny", ".", "cpu")
    for pipe in (ours, theirs):
        pipe.transformer.to(dtype)
    FusedLora(ours).apply(str(TINY_LORA), 0.7)
    theirs.load_lora_weights(str(TINY_LORA.parent), weight_name=TINY_LORA.name, adapter_name="lora")
    theirs.fuse_lora(adapter_names=["lora"], lora_scale=0.7)
    mine, reference = transformer_state(ours), transformer_state(theirs)
    assert mine.keys() == reference.keys() and any(".lora_A." in k for k in mine)
    assert all(mine[k].dtype == reference[k].dtype and torch.equal(mine[k], reference[k]) for k in mine)
