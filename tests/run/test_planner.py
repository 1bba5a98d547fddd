"""Run planning: each base model loads once and each LoRA scale fuses once; shards keep groups whole."""

import json
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paths import REPO

from parity.cases.suite import load_cases
from parity.cli import main
from parity.run.planner import estimated_cost, group_key, parse_shard, plan, shard

SUITE = """
loras: [{path: loras/tiny.safetensors}]
sample:
  width: 64
  height: 64
  sample_steps: 2
  guidance_scale: 1  # one transformer pass per step: these tests are about planning, not CFG
  neg: ""
  samples:
    - {name: a1, prompt: a, ctrl_img_1: inputs/square.png, network_multiplier: 1.0}
    - {name: b1, prompt: b, ctrl_img_1: inputs/square.png, network_multiplier: 0.5}
    - {name: a2, prompt: c, ctrl_img_1: inputs/square.png, network_multiplier: 1.0}
    - {name: c1, prompt: d, ctrl_img_1: inputs/square.png, network_multiplier: 0.8}
    - {name: b2, prompt: e, ctrl_img_1: inputs/square.png, network_multiplier: 0.5}
"""


def test_plan_makes_each_scale_contiguous_and_keeps_order_inside(write_case):
    cases = load_cases(write_case(SUITE))
    planned = plan(cases)
    assert [c.name for c in planned] == ["a1", "a2", "b1", "b2", "c1"]
    keys = [group_key(c) for c in planned]
    assert len({k for k in keys}) == len([k for i, k in enumerate(keys) if i == 0 or keys[i - 1] != k])  # each group once


def test_shards_cover_every_case_once_and_keep_groups_whole_when_even(write_case):
    cases = load_cases(write_case(SUITE))
    parts = [shard(cases, i, 2) for i in (1, 2)]
    names = sorted(c.name for part in parts for c in part)
    assert names == sorted(c.name for c in cases)
    assert [[c.name for c in part] for part in parts] == [["a1", "a2"], ["b1", "b2", "c1"]]  # equal costs: 2 + 3


def _suite(write_case, controls: list[int], name: str = "costs.yaml"):
    samples = "".join(
        f"    - {{name: s{i}, prompt: p{i}, "
        + ", ".join(f"ctrl_img_{k + 1}: inputs/square.png" for k in range(n))
        + "}\n"
        for i, n in enumerate(controls)
    )
    text = "loras: [{path: loras/tiny.safetensors}]\nsample:\n  width: 64\n  height: 64\n  sample_steps: 2\n  neg: ''\n"
    return load_cases(write_case(text + "  samples:\n" + samples, name))


def test_one_lora_at_one_scale_is_split_evenly(write_case):
    """A training run's previews: one LoRA, one scale, one model; every shard gets its share (it used to go to
    shard 1 whole)."""
    cases = _suite(write_case, [1] * 6)
    assert [len(shard(cases, i, 3)) for i in (1, 2, 3)] == [2, 2, 2]


def test_shards_balance_estimated_work_not_case_counts(write_case):
    cases = _suite(write_case, [3, 1, 1, 1])
    assert estimated_cost(cases[0]) == 2 * 2 * (16 + 3 * 4096)  # steps x CFG passes x tokens (64x64 out + 3 controls)
    parts = [[c.name for c in shard(cases, i, 2)] for i in (1, 2)]
    assert parts == [["s0"], ["s1", "s2", "s3"]]


def test_base_models_stay_whole_when_there_are_enough_shards(write_case):
    cases = _suite(write_case, [1, 1, 1, 1, 2, 2])
    models = [replace(c, base_model=m) for c, m in zip(cases, ["a", "a", "b", "b", "c", "c"])]
    parts = [shard(models, i, 2) for i in (1, 2)]
    for part in parts:
        for other in parts:
            if other is not part:
                assert not {c.base_model for c in part} & {c.base_model for c in other}
    assert sorted(c.name for part in parts for c in part) == sorted(c.name for c in cases)
    assert {c.base_model for c in parts[0]} == {"c"}  # the costliest model first, alone: 2 x 2 controls vs 4 x 1


def test_fewer_models_than_shards_get_shards_by_cost(write_case):
    cases = _suite(write_case, [1] * 8)
    models = [replace(c, base_model="big" if i < 6 else "small") for i, c in enumerate(cases)]
    parts = [shard(models, i, 4) for i in (1, 2, 3, 4)]
    assert [sorted({c.base_model for c in part}) for part in parts] == [["big"], ["big"], ["big"], ["small"]]
    assert [len(part) for part in parts] == [2, 2, 2, 2]


@pytest.mark.parametrize("text", ["0/2", "3/2", "x", "1-2"])
def test_bad_shard_specs(text):
    with pytest.raises(ValueError, match="shard"):
        parse_shard(text)


def test_shards_then_merge_give_one_report(write_case, workdir):
    path = write_case(SUITE)
    for i in (1, 2):
        main(["run", str(path), "--shard", f"{i}/2", "--out", str(workdir / f"s{i}")])
    assert main(["report", "merge", str(workdir / "s1"), str(workdir / "s2"), "--out", str(workdir / "all")]) == 0
    data = json.loads((workdir / "all" / "results.json").read_text())
    assert sorted(c["name"] for c in data["cases"]) == ["a1", "a2", "b1", "b2", "c1"]
    assert all((workdir / "all" / c["paths"]["output"]).is_file() for c in data["cases"])
    assert (workdir / "all" / "index.html").is_file() and data["run"]["complete"] is True
    assert main(["run", str(path), "--shard", "3/2", "--out", str(workdir / "x")]) == 2


def test_text_embeddings_are_cached_exactly(tiny_pipe, tiny_latents, monkeypatch):
    import torch
    from paths import INPUTS

    from parity.core.images import open_rgb
    from parity.models.qwen.wiring import Renderer, Request

    calls = []
    real = tiny_pipe.encode_prompt
    monkeypatch.setattr(tiny_pipe, "encode_prompt", lambda *a, **k: calls.append(k.get("prompt", a[0] if a else None)) or real(*a, **k))
    imgs = (open_rgb(INPUTS / "square.png", "c"),)
    request = Request("a hat", "", 64, 64, 2, 4.0, 3, imgs)
    renderer, fresh = Renderer(tiny_pipe), Renderer(tiny_pipe)
    renderer.latent_cache = fresh.latent_cache = tiny_latents  # this test is about the text cache
    first = renderer.render(request)
    encoded = [p for p in calls if p is not None]
    second = renderer.render(request)
    assert len(renderer.text_cache) == 1 and encoded == ["a hat", ""]  # prompt and negative prompt, once each
    assert [p for p in calls if p is not None] == encoded  # the second render encoded nothing
    assert torch.equal(first.decoded, second.decoded)
    assert torch.equal(first.decoded, fresh.render(request).decoded)


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(st.integers(1, 60), min_size=1, max_size=30), count=st.integers(1, 6))
def test_shards_partition_the_suite_and_stay_near_the_ideal_split(steps, count):
    """Every case in exactly one shard, the same split every time, and (one model) no shard far above its share:
    at most the ideal share plus 1.5 of the costliest case."""
    base = load_cases(REPO / "cases" / "example.yaml")[0]
    cases = [replace(base, name=f"c{i}", effective=replace(base.effective, steps=n)) for i, n in enumerate(steps)]
    parts = [shard(cases, i, count) for i in range(1, count + 1)]
    assert sorted(c.name for part in parts for c in part) == sorted(c.name for c in cases)
    assert parts == [shard(cases, i, count) for i in range(1, count + 1)]
    costs = [estimated_cost(c) for c in cases]
    loads = [sum(estimated_cost(c) for c in part) for part in parts]
    assert max(loads) <= sum(costs) / count + 1.5 * max(costs)


def test_schedule_plans_then_cuts_to_the_shard_and_says_what_it_dropped(write_case):
    """The one schedule both doors use: planned order, then the shard; kept + dropped is the whole plan."""
    from parity.run.planner import schedule

    cases = load_cases(write_case(SUITE))
    assert schedule(cases) == (plan(cases), [])
    kept, dropped = schedule(cases, (1, 2))
    assert kept == shard(plan(cases), 1, 2) and sorted(c.name for c in kept + dropped) == sorted(c.name for c in cases)
    assert [c for c in plan(cases) if c in kept] == kept  # the planned order survives the cut


def test_two_models_or_offload_modes_on_one_base_each_load_once():
    """The 2511 and 2509 example suites share base model, folder, LoRA and scales: still one load per model id,
    and per offload mode (the engine loads the model again for another one)."""
    cases = load_cases(REPO / "cases" / "example.yaml") + load_cases(REPO / "cases" / "example-qwen_image_edit_plus.yaml")
    cases += [replace(c, name=c.name + "-model", offload="model") for c in cases[:2]]
    loads = [(c.model, c.offload) for c in plan(cases)]
    runs = [key for i, key in enumerate(loads) if i == 0 or loads[i - 1] != key]
    assert runs == [("qwen_image_edit_plus_2511", "none"), ("qwen_image_edit_plus", "none"), ("qwen_image_edit_plus_2511", "model")]
