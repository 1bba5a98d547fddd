"""The devices an exactness test runs on: the CPU always, a CUDA device (bf16, as the reference server runs there)
where torch sees one; every CUDA test carries the `gpu` marker (`pytest -m gpu` on a GPU machine) and is skipped
without a device."""

import pytest
import torch

GPU_MARKS = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
CUDA = pytest.param("cuda", marks=GPU_MARKS)
DEVICES = ["cpu", CUDA]


def gpu_test(function):
    """A test that needs a CUDA device (the `gpu` marker, skipped without one)."""
    for mark in GPU_MARKS:
        function = mark(function)
    return function
