"""The untouched copy of the LoRA-targeted weights is kept only when the run's plan will restore it."""

import dataclasses
import os
import shutil

import pytest
import torch
from devices import gpu_test
from paths import small_suite

import parity.render.pool as pool_module
from parity.cases.suite import load_cases
from parity.models.knobs import LoraMethod
from parity.render.checkpoint import CheckpointWeights
from parity.render.engine import Engine
from parity.render.memory import READ_BACK_RESTORES


@pytest.fixture
def two_scales(write_case):
    """Qwen-Image-2512 fuses its LoRA as 2511 does, with the same plan and copy; having no control picture, it
    spares the unpooled engines below an encode at ~1 MP each."""
    items = ["{name: full, prompt: a hat}", "{name: half, prompt: a hat, network_multiplier: 0.5}"]
    return load_cases(write_case(small_suite(items, extra="model: qwen_image_2512\n")))


@pytest.fixture
def unpooled(monkeypatch):
    """Engines load the model themselves: a pooled model is handed back restored, so it always keeps the copy."""
    monkeypatch.setattr(pool_module, "POOL", None)


def test_a_one_state_plan_keeps_no_copy_and_an_unplanned_state_reloads_with_the_same_bits(two_scales, unpooled):
    full, half = two_scales
    planned = Engine("cpu")
    planned.expect([full])  # the plan: one LoRA at one scale on this model
    lean = planned.render(full)
    assert "lora_snapshot" not in lean.timings and planned._loaded.lora.pristine_bytes == 0
    assert any("no copy of the LoRA-targeted weights is kept" in note for note in lean.notes)
    surprise = planned.render(half)  # not in the plan: the model is loaded again, never unfused in place
    assert any("loaded again (same bits)" in note for note in surprise.notes)
    assert "model_load" in surprise.timings and planned._loaded.lora.pristine_bytes > 0  # from now on it keeps it
    planned.close()

    unplanned = Engine("cpu")  # no plan (calibrate, previews, a notebook): the copy is kept, as before
    kept = unplanned.render(full)
    assert "lora_snapshot" in kept.timings and unplanned._loaded.lora.pristine_bytes > 0
    assert any("a copy of the LoRA-targeted weights is kept" in note for note in kept.notes)
    assert torch.equal(kept.decoded, lean.decoded)
    assert torch.equal(unplanned.render(half).decoded, surprise.decoded)  # restored from the copy, then fused
    unplanned.close()


def test_a_plan_with_two_scales_or_diagnose_keeps_the_copy(two_scales, unpooled):
    full, half = two_scales
    for plan, diagnose in (([full, half], False), ([full], True)):
        engine = Engine("cpu")
        engine.expect(plan, diagnose=diagnose)
        assert "lora_snapshot" in engine.render(full).timings
        engine.close()


# Without room for a copy on the GPU: the untouched weights read back from the checkpoint -------------------------


@pytest.fixture
def own_checkpoint(tmp_path, write_case):
    """qwen_image_2512's tiny model copied into this test's folder (its files may be touched), and two cases on it,
    one LoRA at two scales."""
    from parity.models import get_model

    folder = tmp_path / "model"
    shutil.copytree(get_model("qwen_image_2512").ensure_tiny(), folder)
    items = ["{name: full, prompt: a hat}", "{name: half, prompt: a hat, network_multiplier: 0.5}"]
    extra = f"model: qwen_image_2512\nbase_model: {folder}\n"
    return folder, load_cases(write_case(small_suite(items, extra=extra)))


def _planned(engine: Engine, cases, no_room: bool = False) -> Engine:
    """The engine with the two cases planned and their model loaded; `no_room`: as on a GPU without room for the
    copy beside the largest case (the engine's rule on CUDA)."""
    engine.expect(cases)
    engine.facts(cases[0])
    if no_room:
        fused = engine._loaded.lora.fused
        fused.keep = dataclasses.replace(fused.keep, room=lambda: 0)
    return engine


def _renders(engine: Engine, cases) -> list:
    full, half = cases
    return [engine.render(case) for case in (full, half, full)]


def _with_a_copy(device: str, cases) -> list[torch.Tensor]:
    """The three renders' outputs from an engine that keeps a copy (room for it): what a read-back must equal."""
    engine = _planned(Engine(device), cases)
    decoded = [r.decoded for r in _renders(engine, cases)]
    engine.close()
    return decoded


def _loaded_weights(engine: Engine) -> dict[str, torch.Tensor]:
    return {name: t.detach().clone() for name, t in engine._loaded.pipe.transformer.state_dict().items()}


def test_without_room_for_a_copy_restores_read_the_checkpoint_back_with_the_same_bits(own_checkpoint, unpooled):
    folder, cases = own_checkpoint
    expected = _with_a_copy("cpu", cases)
    engine = _planned(Engine("cpu"), cases, no_room=True)
    loaded = _loaded_weights(engine)
    rendered = _renders(engine, cases)
    assert [torch.equal(r.decoded, e) for r, e in zip(rendered, expected)] == [True, True, True]
    lora = engine._loaded.lora
    assert lora.read_back_from() == str(folder / "transformer")
    assert not lora.fused.untouched.weights and lora.fused.untouched.fingerprints  # no copy: fingerprints only
    assert any("reads them back from the checkpoint" in note and str(folder) in note for note in rendered[0].notes)
    assert "lora_snapshot" in rendered[0].timings
    lora.apply(LoraMethod.NONE, None, None)  # back to the loaded weights: every one of them, bit for bit
    after = engine._loaded.pipe.transformer.state_dict()
    assert all(torch.equal(after[name], weight) for name, weight in loaded.items())
    engine.close()


def test_a_plan_with_many_restores_keeps_a_copy_even_without_room(own_checkpoint, unpooled, write_case):
    folder, _ = own_checkpoint
    scales = [f"{{name: s{i}, prompt: a hat, network_multiplier: 0.{i}}}" for i in range(1, READ_BACK_RESTORES + 3)]
    many = load_cases(write_case(small_suite(scales, extra=f"model: qwen_image_2512\nbase_model: {folder}\n"), "many.yaml"))
    engine = Engine("cpu")
    _planned(engine, many, no_room=True).render(many[0])
    assert engine._loaded.lora.read_back_from() is None and engine._loaded.lora.pristine_bytes > 0
    engine.close()


def _touched(folder):
    weights = folder / "transformer" / "diffusion_pytorch_model.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


def _one_weight_off(monkeypatch):
    real = CheckpointWeights.read

    def read(self, keys):
        for number, (key, tensor) in enumerate(real(self, keys)):
            yield key, (tensor + 1 if number == 3 else tensor)

    monkeypatch.setattr(CheckpointWeights, "read", read)


def _unreadable(monkeypatch):
    def read_into(self, targets):
        raise OSError(f"simulated: {self.folder} is gone")

    monkeypatch.setattr(CheckpointWeights, "read_into", read_into)


@pytest.mark.parametrize(
    ("spoil", "says"),
    [
        (lambda folder, monkeypatch: _touched(folder), "changed after it was loaded"),
        (lambda folder, monkeypatch: _one_weight_off(monkeypatch), "is not the weight the model loaded"),
        (lambda folder, monkeypatch: _unreadable(monkeypatch), "failed (simulated:"),
    ],
    ids=["file-changed", "bits-differ", "unreadable"],
)
def test_a_read_back_that_fails_loads_the_model_again(own_checkpoint, unpooled, monkeypatch, spoil, says):
    """The bits are the ones a fresh load renders; only a changed checkpoint is said to be another model."""
    folder, cases = own_checkpoint
    expected = _with_a_copy("cpu", cases)
    engine = _planned(Engine("cpu"), cases, no_room=True)
    first = engine.render(cases[0])
    assert torch.equal(first.decoded, expected[0]) and engine._loaded.lora.read_back_from() is not None
    spoil(folder, monkeypatch)
    second = engine.render(cases[1])
    again = "loaded again from the files as they are now" if "changed" in says else "loaded again (same bits)"
    assert any(says in note and again in note for note in second.notes)
    assert "model_load" in second.timings and torch.equal(second.decoded, expected[1])
    assert engine._loaded.lora.read_back_from() is None  # copies from now on: no second failed read-back
    assert torch.equal(engine.render(cases[0]).decoded, expected[2])
    engine.close()


def test_weights_behind_offload_hooks_are_never_read_back(own_checkpoint, unpooled, monkeypatch):
    """Under offload model or sequential the layers wait in host memory or hold placeholders: the copy is kept as
    before (diffusers refuses both modes on the CPU, so a hook stands in for them here)."""
    _, cases = own_checkpoint
    engine = _planned(Engine("cpu"), cases, no_room=True)
    monkeypatch.setattr(engine._loaded.pipe.transformer, "_hf_hook", object(), raising=False)
    engine.render(cases[0])
    assert engine._loaded.lora.read_back_from() is None and engine._loaded.lora.fused.untouched.weights
    engine.close()


def test_a_pooled_model_is_handed_back_read_back_or_dropped_if_that_is_cut_short(own_checkpoint, monkeypatch):
    """With a ModelPool the plan counts the hand-back as a restore; a hand-back that is interrupted part-way
    drops the model instead of keeping one with half-restored weights."""
    from parity.render.pool import ModelPool

    _, cases = own_checkpoint
    monkeypatch.setattr(pool_module, "POOL", ModelPool())
    engine = _planned(Engine("cpu"), cases, no_room=True)
    loaded = _loaded_weights(engine)
    engine.render(cases[1])
    assert engine._loaded.lora.read_back_from() is not None
    key = engine._loaded.key
    engine.close()  # handed back: read back from the checkpoint
    pooled = pool_module.POOL.take(key)
    assert pooled is not None and pooled.lora.key == (None, None, True, None)
    after = pooled.pipe.transformer.state_dict()
    assert all(torch.equal(after[name], weight) for name, weight in loaded.items())

    again = _planned(Engine("cpu"), cases, no_room=True)  # takes the pooled model
    assert again._loaded is pooled
    again.render(cases[1])

    def interrupted(self, targets):
        raise KeyboardInterrupt

    monkeypatch.setattr(CheckpointWeights, "read_into", interrupted)
    with pytest.raises(KeyboardInterrupt):
        again.close()
    assert pool_module.POOL.take(key) is None  # dropped, never handed on half-restored


@gpu_test
def test_on_the_gpu_without_room_restores_read_the_checkpoint_back_with_the_same_bits(own_checkpoint, unpooled):
    """bf16 on CUDA, from a float32 checkpoint: the read-back casts on the CPU, as from_pretrained does."""
    folder, cases = own_checkpoint
    expected = _with_a_copy("cuda", cases)
    engine = _planned(Engine("cuda"), cases, no_room=True)
    rendered = _renders(engine, cases)
    assert engine._loaded.lora.read_back_from() == str(folder / "transformer")
    assert [torch.equal(r.decoded, e) for r, e in zip(rendered, expected)] == [True, True, True]
    engine.close()
