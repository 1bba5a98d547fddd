"""Device assignment for one process (parity/options.py): main GPU, CFG-parallel GPU, xdist workers."""

from __future__ import annotations

import pytest

from parity.options import assign_devices


@pytest.mark.parametrize(
    ("device", "cfg", "worker", "expected"),
    [
        ("cpu", None, None, ("cpu", None)),
        ("cpu", "cpu", 3, ("cpu", "cpu")),
        ("cuda", None, None, ("cuda", None)),  # unchanged when there is nothing to assign
        ("cuda", None, 0, ("cuda:0", None)),
        ("cuda", None, 3, ("cuda:3", None)),  # one xdist worker per GPU
        ("cuda", "cuda", None, ("cuda:0", "cuda:1")),
        ("cuda", "cuda", 0, ("cuda:0", "cuda:1")),
        ("cuda", "cuda", 2, ("cuda:4", "cuda:5")),  # one GPU pair per worker
        ("cuda:2", "cuda", None, ("cuda:2", "cuda:3")),
        ("cuda:1", "cuda:0", None, ("cuda:1", "cuda:0")),
        ("cuda:5", None, 1, ("cuda:5", None)),  # an explicit index wins over the worker's
    ],
)
def test_assign_devices(device, cfg, worker, expected):
    assert assign_devices(device, cfg, worker) == expected


@pytest.mark.parametrize(
    ("device", "cfg", "message"),
    [
        ("cuda:1", "cuda:1", "is the main device cuda:1"),
        ("cpu", "cuda:1", "must both be GPUs"),
        ("cuda", "cpu", "must both be GPUs"),
        ("gpu", None, "device must be cpu, cuda or cuda:N"),
        ("cuda", "cuda:x", "device must be cpu, cuda or cuda:N"),
    ],
)
def test_bad_pairs_say_what_to_do(device, cfg, message):
    with pytest.raises(ValueError, match=message):
        assign_devices(device, cfg)
