"""Shared fixtures: small case files in temporary folders, the tiny pipeline loaded once per session.

MKL's reproducible mode is set at configure time, before any test computes: the exactness tests compare two code paths whose
weights can sit at different addresses (a copy for CFG-parallel, a merge written back, a second load), and MKL
otherwise picks its branch by alignment (parity/core/environment.py). Both sides of every comparison then run the same
kernels, on any CPU.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from paths import case_folder

pytest_plugins = ["pytester", "worker_deaths"]


def pytest_configure(config):
    os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")
    # One tiny-model build per session: pytester points HOME at each inner project, which would move the default
    # cache (~/.cache/parity) and build the model again there; subprocesses inherit the variable too.
    os.environ.setdefault("PARITY_CACHE", str(Path.home() / ".cache" / "parity"))
    _keep_big_blocks_in_the_heap()
    _split_the_cores(config)


def _keep_big_blocks_in_the_heap() -> None:
    """The edit pipelines encode every control picture at ~1 MP, so the tiny VAE's activations are ~100 MB each.
    glibc gives blocks that big their own mmap and unmaps them on free, and the kernel zero-fills every page of
    the next one again: a sixth of the suite's CPU time went to system time. These two limits keep such blocks
    in the heap for reuse (no effect on any result: MKL_CBWR above makes the kernels independent of addresses).
    glibc reads them when a process starts, so they reach the xdist workers and every subprocess of the suite,
    not the process that sets them."""
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        os.environ.setdefault(name, str(4 << 30))


def _split_the_cores(config) -> None:
    """Under pytest-xdist (`-n N`, the README's command) the workers share the cores: each computes with its share
    of them (and so do the processes it starts), and the controller builds each model's tiny model once before they start.
    The tiny model's ops are too small to keep two threads busy, so two one-thread workers on two cores finish the
    suite in about 0.7 of one two-thread session. Every comparison in the suite is between renders of one process
    or of processes with the same thread count (and MKL_CBWR makes MKL's results independent of it)."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        if getattr(config.option, "numprocesses", None):
            from parity.models import MODELS, get_model

            for model_id in MODELS:
                get_model(model_id).ensure_tiny()
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cores // int(workerinput["workercount"]))
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder with cases/inputs (the example control images) and cases/loras/tiny.safetensors."""
    case_folder(tmp_path / "cases")
    return tmp_path


@pytest.fixture
def write_case(workdir: Path):
    """Write a case file under workdir/cases from an indented YAML string; returns its path."""

    def write(text: str, name: str = "suite.yaml") -> Path:
        path = workdir / "cases" / name
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session", autouse=True)
def shared_models():
    """Every engine of the test session borrows the tiny model from one pool (parity.render.pool.share_models): it is
    loaded once, and its exact caches (text embeddings, control-image latents) serve every later session. Each
    engine still gets it with no LoRA applied, as from disk; tests that need a fresh load call load_pipeline."""
    from parity.render.pool import share_models

    share_models(True)
    yield
    share_models(False)


@pytest.fixture(scope="session")
def cpu_set() -> str:
    """The key of this machine's CPU environment class: pinned baselines written here go to <folder>/<key>/."""
    import torch

    from parity.core.envclass import from_device_info

    info = {"device": "cpu", "dtype": "float32", "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    return from_device_info(info).key


@pytest.fixture(scope="session")
def tiny_latents(shared_models) -> dict:
    """The control-image latents of the session's shared tiny model, for the tests that drive a tiny pipeline
    directly (`latent_cache=`): every load of the tiny model has the same VAE, and the cache is exact
    (tests/models/test_wiring.py checks it against a fresh encode), so each picture is encoded at ~1 MP once per session."""
    from parity.render.engine import Engine

    return Engine("cpu").model().renderer.latent_cache


@pytest.fixture(scope="session")
def tiny_pipe():
    from parity.render.loading import load_pipeline

    return load_pipeline("tiny", ".", "cpu")
