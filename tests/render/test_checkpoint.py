"""Which files a model was loaded from, and reading its weights back from them (parity/render/checkpoint.py)."""

import json
import os
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

from parity.render.checkpoint import CheckpointWeights

WEIGHTS = {"a.weight": torch.arange(6.0).reshape(2, 3), "b.weight": torch.full((3, 2), 0.1), "b.bias": torch.ones(3)}


def _model(folder) -> SimpleNamespace:
    """What CheckpointWeights.of reads of a diffusers model: its config's _name_or_path."""
    return SimpleNamespace(config=SimpleNamespace(_name_or_path=str(folder)))


def test_a_single_file_is_found_and_a_change_of_it_is_seen(tmp_path):
    save_file(WEIGHTS, str(tmp_path / "diffusion_pytorch_model.safetensors"))
    checkpoint = CheckpointWeights.of(_model(tmp_path))
    assert checkpoint is not None and checkpoint.holds(list(WEIGHTS)) and not checkpoint.holds(["c.weight"])
    assert checkpoint.unchanged()
    path = tmp_path / "diffusion_pytorch_model.safetensors"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert not checkpoint.unchanged()


def test_a_sharded_checkpoint_is_read_through_its_index(tmp_path):
    save_file({"a.weight": WEIGHTS["a.weight"]}, str(tmp_path / "part-1.safetensors"))
    save_file({"b.weight": WEIGHTS["b.weight"]}, str(tmp_path / "part-2.safetensors"))
    weight_map = {"a.weight": "part-1.safetensors", "b.weight": "part-2.safetensors"}
    (tmp_path / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    checkpoint = CheckpointWeights.of(_model(tmp_path))
    assert checkpoint is not None and checkpoint.files["b.weight"] == str(tmp_path / "part-2.safetensors")
    targets = {"a.weight": torch.zeros(2, 3, dtype=torch.bfloat16), "b.weight": torch.zeros(3, 2, dtype=torch.bfloat16)}
    checkpoint.read_into(targets)  # cast on the CPU, as from_pretrained casts
    assert all(torch.equal(targets[k], WEIGHTS[k].to(torch.bfloat16)) for k in targets)


@pytest.mark.parametrize(
    "layout",
    ["variant only", "no weights", "not a folder", "built in memory"],
)
def test_weights_that_were_not_loaded_from_diffusers_files_are_not_claimed(tmp_path, layout):
    if layout == "variant only":  # parity loads without `variant`: these files were never read
        save_file(WEIGHTS, str(tmp_path / "diffusion_pytorch_model.fp16.safetensors"))
    model = _model(tmp_path / "nowhere" if layout == "not a folder" else tmp_path)
    if layout == "built in memory":
        model = SimpleNamespace(config=SimpleNamespace(_name_or_path=""))
    assert CheckpointWeights.of(model) is None


def test_a_weight_of_another_shape_is_refused_by_name(tmp_path):
    save_file(WEIGHTS, str(tmp_path / "diffusion_pytorch_model.safetensors"))
    checkpoint = CheckpointWeights.of(_model(tmp_path))
    with pytest.raises(ValueError, match=r"a.weight is \(2, 3\) in the checkpoint, \(3, 2\) in the model"):
        checkpoint.read_into({"a.weight": torch.zeros(3, 2)})
