"""Run planning: each base model loads once and each LoRA scale fuses once; shards keep groups whole."""

import json

import pytest

from parity.cli import main
from parity.planner import group_key, parse_shard, plan, shard
from parity.suite import load_cases

SUITE = """
loras: [{path: loras/tiny.safetensors}]
sample:
  width: 64
  height: 64
  sample_steps: 2
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


def test_shards_cover_every_case_once_in_whole_groups(write_case):
    cases = load_cases(write_case(SUITE))
    parts = [shard(cases, i, 2) for i in (1, 2)]
    names = sorted(c.name for part in parts for c in part)
    assert names == sorted(c.name for c in cases)
    for part in parts:
        for other in parts:
            if other is not part:
                assert not {group_key(c) for c in part} & {group_key(c) for c in other}


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


def test_text_embeddings_are_cached_exactly(tiny_pipe):
    import torch
    from conftest import INPUTS

    from parity.images import open_rgb
    from parity.wiring import Renderer, Request

    imgs = (open_rgb(INPUTS / "square.png", "c"),)
    request = Request("a hat", "", 64, 64, 2, 4.0, 3, imgs)
    renderer = Renderer(tiny_pipe)
    first = renderer.render(request)
    second = renderer.render(request)
    assert len(renderer.text_cache) == 1 and second.timings["text_encode"] < first.timings["text_encode"]
    assert torch.equal(first.decoded, second.decoded)
    assert torch.equal(first.decoded, Renderer(tiny_pipe).render(request).decoded)
