"""The devices an exactness test runs on: the CPU always, a CUDA device (bf16, as the reference server runs there)
where torch sees one; the CUDA run carries the `gpu` marker (`pytest -m gpu` on a GPU machine)."""

import pytest
import torch

CUDA = pytest.param(
    "cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
)
DEVICES = ["cpu", CUDA]
