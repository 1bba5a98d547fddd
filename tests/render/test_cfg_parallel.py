"""CFG-parallel (parity/render/cfg_parallel.py) on the CPU: the unconditional passes run on a copy of the transformer in
a second thread; every output must equal the one-device output bit for bit (torch.equal).

On the CPU both "devices" are the CPU, so this checks the machinery (copy, weight following, threads,
combination). The claim holds here only because parity runs MKL in its reproducible mode: the copy's weights sit
at other addresses than the loaded ones, and MKL otherwise picks its matrix-vector branch by alignment (one
last bit apart). Across two GPUs of one model no such mode is needed: tests/render/test_gpu.py and
benchmarks/full_size.py check that run."""

from __future__ import annotations

import pytest
import torch
from paths import case_folder

from parity.cases.suite import load_cases
from parity.models.knobs import Knob, LoraMethod, Setting
from parity.render.engine import Engine

SUITE = """
trigger_word: sks
loras: [{path: loras/tiny.safetensors}]
training: {rank: 4, alpha: 2}
sample:
  width: 64
  height: 64
  seed: 3
  walk_seed: true
  guidance_scale: 4
  sample_steps: 2
  neg: ""
  samples:
    - {name: one, prompt: "[trigger] a hat", ctrl_img_1: inputs/person.png}
    - {name: half, prompt: "[trigger] a hat", ctrl_img_1: inputs/person.png, network_multiplier: 0.5}
    - {name: two, prompt: "a drawing", ctrl_img_1: inputs/person.png, ctrl_img_2: inputs/hat.png}
    - {name: odd-size, prompt: "a cat", width: 100, height: 70, ctrl_img_1: inputs/square.png}
    - {name: legacy, prompt: "b", ctrl_img: inputs/landscape.png}
"""


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    """Two LoRA scales (so the trainer's wiring runs the LoRA unmerged), 1 and 2 control images, an odd size."""
    root = tmp_path_factory.mktemp("cfg")
    case_folder(root)
    (root / "suite.yaml").write_text(SUITE)
    return {c.name: c for c in load_cases(root / "suite.yaml")}


@pytest.fixture(scope="module")
def engines():
    return Engine("cpu"), Engine("cpu", cfg_device="cpu")


def _count_passes(engine: Engine) -> list[int]:
    calls = [0]
    engine.cfg.replica.model.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_outputs_equal_one_device_across_scales_and_controls(cases, engines):
    one, two = engines
    # scale 1.0 -> 0.5 -> 1.0 (the copy must follow every re-fuse), 1 and 3 control images, odd size
    order = ["one", "half", "two", "odd-size", "one"]
    two.facts(cases[order[0]])  # loads the model (and makes the copy)
    passes = _count_passes(two)
    for name in order:
        expected = one.render(cases[name])
        got = two.render(cases[name])
        assert torch.equal(expected.decoded, got.decoded), name
        assert (expected.image == got.image).all(), name
    steps = sum(cases[n].effective.steps for n in order)
    assert passes[0] == steps  # every unconditional pass of every step ran on the copy


def test_copy_follows_lora_changes_only(cases, monkeypatch):
    """The copy takes the main transformer's weights on its first render and again whenever the LoRA state changes
    (another scale re-fuses the weights), and only then. Its own engine: no other test's loads or copies count."""
    from parity.render import cfg_parallel

    made, walked = [], []  # the copies made; every model whose tensors follow() walks (a copy's: to overwrite them)
    make, base_tensors = cfg_parallel.UncondReplica.__init__, cfg_parallel._base_tensors

    def making(replica, *args, **kwargs):
        made.append(replica)
        make(replica, *args, **kwargs)

    def walking(model):
        walked.append(model)
        return base_tensors(model)

    monkeypatch.setattr(cfg_parallel.UncondReplica, "__init__", making)
    monkeypatch.setattr(cfg_parallel, "_base_tensors", walking)

    def to_q(model):  # a LoRA-targeted linear; the main one is a PEFT wrapper once the LoRA is fused
        layer = model.transformer_blocks[0].attn.to_q
        return (layer.get_base_layer() if hasattr(layer, "get_base_layer") else layer).weight

    two = Engine("cpu", cfg_device="cpu")
    try:
        two.facts(cases["one"])  # loads the model and makes the copy's module tree, not yet filled
        [replica] = made

        def copies() -> int:
            return sum(model is replica.model for model in walked)

        def copy_holds_the_main_weights() -> bool:
            main = two._loaded
            return replica.state == main.lora.key and torch.equal(to_q(replica.model), to_q(main.pipe.transformer))

        assert copies() == 0 and replica.state != two._loaded.lora.key

        first = two.render(cases["one"])  # the LoRA fused at scale 1: the copy takes those weights
        assert copies() == 1 and "cfg_copy" in first.timings
        assert copy_holds_the_main_weights()
        at_one = to_q(replica.model).clone()

        again = two.render(cases["two"])  # same LoRA, same scale: nothing to copy
        assert copies() == 1 and "cfg_copy" not in again.timings
        assert copy_holds_the_main_weights()

        switched = two.render(cases["half"])  # scale 0.5: the main weights are re-fused, the copy follows
        assert copies() == 2 and "cfg_copy" in switched.timings
        assert not torch.equal(to_q(two._loaded.pipe.transformer), at_one)  # the main weights did change
        assert copy_holds_the_main_weights()
        assert made == [replica]  # followed in place, never made anew
    finally:
        two.close()


def test_the_unconditional_pass_comes_from_the_copy(cases):
    """Sensitivity: corrupt one weight of the copy only; the output must change (else the test above would pass
    with the copy unused)."""
    one, two = Engine("cpu"), Engine("cpu", cfg_device="cpu")
    case = cases["one"]
    expected = one.render(case).decoded
    assert torch.equal(two.render(case).decoded, expected)
    weight = two.cfg.replica.model.transformer_blocks[0].attn.to_q.weight
    weight.data.mul_(1.5)
    assert not torch.equal(two.render(case).decoded, expected)


def test_a_copy_made_while_the_unmerged_branch_is_hooked_in_runs_without_it(cases):
    """deepcopy copies forward hooks: a copy made from a model that still holds ai-toolkit's unmerged LoRA branch
    (a pooled model, last used for a preview wiring) must not add that branch to its passes."""
    one = Engine("cpu")
    case = cases["one"]
    reference, preview = one.wirings(case)
    one.render(case, preview)  # leaves the branch hooked into the pooled model
    assert any(m._forward_hooks for m in one._loaded.pipe.transformer.modules())
    two = Engine("cpu", cfg_device="cpu")
    two.facts(case)  # takes the pooled model as it is, and copies it
    assert not any(m._forward_hooks for m in two.cfg.replica.model.modules())
    assert torch.equal(two.render(case, reference).decoded, one.render(case, reference).decoded)


def test_copy_is_plain_and_has_its_own_storage(cases, engines):
    from peft.tuners.tuners_utils import BaseTunerLayer

    _, two = engines
    two.render(cases["one"])  # the LoRA is loaded and fused: the source holds PEFT wrappers
    source = two._loaded.pipe.transformer
    replica = two.cfg.replica.model
    assert any(isinstance(m, BaseTunerLayer) for m in source.modules())
    assert not any(isinstance(m, BaseTunerLayer) for m in replica.modules())
    source_ptrs = {p.data_ptr() for p in source.parameters()}
    assert not source_ptrs & {p.data_ptr() for p in replica.parameters()}
    q = source.transformer_blocks[0].attn.to_q.get_base_layer().weight
    assert torch.equal(replica.transformer_blocks[0].attn.to_q.weight, q)  # the fused weights


def test_knobs_flipped_by_diagnosis_reach_the_copy(cases, engines):
    """zero_cond_t is a per-module flag the renderer flips; merged ai-toolkit LoRA changes weights in place."""
    one, two = engines
    case = cases["one"]
    reference, _ = two.wirings(case)
    flipped = reference.with_setting(Knob.ZERO_COND_T, Setting(False, "off"))
    merged = reference.with_setting(Knob.LORA_METHOD, Setting(LoraMethod.AITK_MERGE, "ai-toolkit merge"))
    for wiring in (flipped, merged, reference):
        assert torch.equal(one.render(case, wiring).decoded, two.render(case, wiring).decoded), wiring.name


def test_unmerged_branch_renders_on_one_device_with_a_note(cases, engines):
    one, two = engines
    case = cases["legacy"]
    _, preview = two.wirings(case)
    assert preview.value(Knob.LORA_METHOD) is LoraMethod.AITK_UNMERGED
    got = two.render(case, preview)
    assert torch.equal(one.render(case, preview).decoded, got.decoded)
    assert any("CFG-parallel not used" in note for note in got.notes)


def test_same_gpu_twice_is_refused():
    from parity.core.errors import ModelLoadError

    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="no CUDA device"):
            Engine("cpu", cfg_device="cuda:1")
    else:
        with pytest.raises(ModelLoadError, match="is the main device"):
            Engine("cuda:0", cfg_device="cuda:0")
