"""The trainer's qtypes as data (parity/facts/quant.py): how a qtype string reads, which the trainer knows, where an
accuracy recovery adapter is looked for."""

import pytest

from parity.facts import quant


@pytest.mark.parametrize(
    "text, name, adapter",
    [
        ("qfloat8", "qfloat8", None),
        ("uint3|ostris/accuracy_recovery_adapters/qwen_image_torchao_uint3.safetensors", "uint3",
         "ostris/accuracy_recovery_adapters/qwen_image_torchao_uint3.safetensors"),
        ("uint4|/data/ara.safetensors", "uint4", "/data/ara.safetensors"),
        ("uint4|", "uint4", ""),  # the trainer then looks for an adapter named "" and fails: `unknown` says so
        ("uint3 |x/y/z.safetensors", "uint3 ", "x/y/z.safetensors"),  # no stripping: an unknown qtype there too
    ],
)
def test_a_qtype_splits_its_adapter_at_the_bar_as_the_trainer_does(text, name, adapter):
    qtype = quant.QType.parse(text)
    assert (qtype.name, qtype.adapter) == (name, adapter)
    assert str(qtype) == (name if adapter is None else f"{name}|{adapter}")


def test_an_adapter_named_the_hub_way_is_a_repo_and_a_file():
    """ai-toolkit's quantize_model: a path that does not exist is `user/repo/file` (three parts), else an error."""
    assert quant.adapter_source("ostris/accuracy_recovery_adapters/qwen.safetensors") == (
        "ostris/accuracy_recovery_adapters", "qwen.safetensors")
    assert quant.adapter_source("/abs/ostris/qwen.safetensors") is None
    assert quant.adapter_source("ara/qwen.safetensors") is None  # two parts: a relative path
    assert quant.adapter_source("./a/b/c.safetensors") is None


def test_the_trainer_knows_every_replayed_qtype_and_refuses_others():
    assert set(quant.REPLAYED) <= set(quant.KNOWN)
    assert quant.unknown("qfloat8") is None and quant.unknown("uint3|x/y/z.safetensors") is None
    assert quant.unknown("fp8").startswith("ai-toolkit knows no qtype 'fp8'")
    assert "from model.qtype only" in quant.unknown("uint3|x/y/z.safetensors", adapter_allowed=False)
    for broken in ("uint4|", "uint3|a|b"):
        assert "ai-toolkit fails on" in quant.unknown(broken), broken
    assert quant.unknown("uint3 |x/y/z.safetensors").startswith("ai-toolkit knows no qtype 'uint3 '")
    here = {"torchao": "0.10.0"}
    assert quant.replay_problem("uint3|x/y/z.safetensors", here, {"x/y/z.safetensors": (None, None)}).startswith(
        "the accuracy recovery adapter x/y/z.safetensors is not in the local HF cache")
    assert quant.replay_problem("uint3|x/y/z.safetensors", here, {"x/y/z.safetensors": ("/c/z.safetensors", None)}) is None
    assert quant.replay_problem("uint3|x/y/z.safetensors", here, {"x/y/z.safetensors": ("/c/z.safetensors", "mixes ranks")}) == (
        "the accuracy recovery adapter x/y/z.safetensors: mixes ranks")
