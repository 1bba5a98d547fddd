"""Environment classes: keys, the class of a run, and which class a run without a set of its own borrows from."""

import pytest

from parity.core.envclass import EnvClass, distance, from_device_info, nearest, parse


def test_keys_round_trip_and_anything_else_is_not_a_class():
    for key in ("cpu-float32-avx2", "cpu-float32-default", "cuda-bfloat16-sm90", "cuda-float16-sm75"):
        assert parse(key).key == key
    for other in ("samples", "cpu-float32", "tpu-float32-x", "CPU-float32-avx2", ".git", "cuda-bf16-sm90"):
        assert parse(other) is None


def test_the_class_of_a_run_comes_from_the_engine_facts():
    assert from_device_info({"device": "cpu", "dtype": "float32", "cpu_capability": "AVX512"}).key == "cpu-float32-avx512"
    cuda = {"device": "cuda:1", "dtype": "bfloat16", "compute_capability": "9.0", "device_name": "NVIDIA H200"}
    assert from_device_info(cuda) == EnvClass("cuda", "bfloat16", "sm90")
    assert from_device_info({"device": "cpu"}).key == "cpu-float32-unknown"  # an old fingerprint without kernels


@pytest.mark.parametrize(
    "run, available, expected",
    [
        ("cpu-float32-avx512", ["cpu-float32-default", "cpu-float32-avx2"], "cpu-float32-avx2"),
        ("cpu-float32-default", ["cpu-float32-avx512", "cpu-float32-avx2"], "cpu-float32-avx2"),
        ("cpu-float32-avx2", ["cpu-float32-avx2", "cpu-float32-default"], "cpu-float32-avx2"),
        ("cuda-bfloat16-sm89", ["cuda-bfloat16-sm90", "cpu-float32-avx2"], "cuda-bfloat16-sm90"),
        ("cuda-bfloat16-sm89", ["cuda-bfloat16-sm90", "cuda-bfloat16-sm80"], "cuda-bfloat16-sm80"),  # same major first
        ("cuda-bfloat16-sm100", ["cuda-bfloat16-sm90", "cuda-bfloat16-sm80"], "cuda-bfloat16-sm90"),
        ("cuda-bfloat16-sm90", ["cpu-float32-avx2", "cuda-float16-sm90"], None),  # never across device or dtype
    ],
)
def test_nearest_stays_in_the_family(run, available, expected):
    found = nearest(parse(run), [parse(k) for k in available])
    assert (found.key if found else None) == expected


def test_distance_is_symmetric_and_infinite_across_families():
    a, b = parse("cuda-bfloat16-sm90"), parse("cuda-bfloat16-sm80")
    assert distance(a, b) == distance(b, a) > 0 and distance(a, a) == 0
    assert distance(a, parse("cpu-float32-avx2")) == float("inf")
