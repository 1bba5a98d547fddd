"""The seam where a model plugs in: one typed `Model` per model id, listed by the registry (parity/models/__init__.py).

A model states the reference server's fixed rules for its id (what the resolver and `parity validate` read, without
torch), the trainer's arch and how a job names its checkpoint (what `parity import` reads), and provides the rest
through methods: size rules, both wirings knob by knob, the renderer, the tiny offline model. Methods that render
import their implementation when called, so reading the registry never imports torch.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path

from parity.facts.case import Case
from parity.models.knobs import Knob, LoraMethod, RuntimeFacts, Wiring


@dataclass(frozen=True)
class Model(abc.ABC):
    """One model id, as the reference server serves it and the trainer samples it."""

    id: str
    checkpoint: str  # the HF id of the base model the reference server loads (its CONFIG.base_model)
    server_class: str  # the reference server's pipeline class for this id
    pipeline: str  # the diffusers pipeline class the reference server loads the checkpoint with
    lora_method: LoraMethod  # how the reference server applies the LoRA (FUSE or SET_ADAPTERS)
    size_divisor: int  # the server floors width and height to a multiple of this
    trainer_arch: str  # the ai-toolkit arch that samples it (a job's `model.arch`, before any `:tag`)
    name_markers: tuple[str, ...] = ()  # words in a job's arch tag or name_or_path that name this checkpoint
    default_neg: str = ""  # the server's negative prompt when a request has none
    requires_control_image: bool = True
    max_control_images: int = 3
    max_loras: int = 1
    # ai-toolkit's `has_multiple_control_images` for the trainer's arch: True (Edit-Plus) hands its text encoder
    # every control image; False (Qwen-Image-Edit) the first one only, and its VAE only the sample's `ctrl_img`
    trainer_multiple_control_images: bool = True

    # sizes: pure functions of numbers
    @abc.abstractmethod
    def server_size(self, value: int) -> int:
        """The reference server's width or height for a requested one."""

    @abc.abstractmethod
    def trainer_size(self, value: int) -> int:
        """The trainer's sample width or height for a requested one."""

    @property
    @abc.abstractmethod
    def trainer_divisor(self) -> int:
        """The trainer's bucket divisor."""

    @abc.abstractmethod
    def activation_bytes(self, width: int, height: int, controls: int) -> int:
        """Estimated peak GPU bytes of a render of this size beyond the weights (offload: auto)."""

    # knobs: pure
    @abc.abstractmethod
    def knob_rules(self) -> dict[Knob, tuple[str, str, str]]:
        """(reference server, training preview, replayed by --diagnose) per knob: the README's table."""

    @abc.abstractmethod
    def reference_wiring(self, case: Case, facts: RuntimeFacts) -> Wiring:
        """The reference server's value of every knob for a case."""

    @abc.abstractmethod
    def preview_wiring(self, case: Case, facts: RuntimeFacts) -> Wiring:
        """The trainer's sampler's value of every knob for a case."""

    @abc.abstractmethod
    def scheduler_items(self, config: dict[str, object]) -> tuple[tuple[str, object], ...]:
        """The scheduler config's knob value."""

    # rendering: imports torch and diffusers when called
    @abc.abstractmethod
    def renderer(self, pipe):
        """A renderer of requests on a loaded pipeline of this model (with its exact caches)."""

    @abc.abstractmethod
    def request(self, **fields):
        """One prompt to render, for the renderer."""

    @abc.abstractmethod
    def render_knobs(self, wiring: Wiring, facts: RuntimeFacts):
        """The renderer's share of a wiring."""

    @abc.abstractmethod
    def renderer_knobs(self, **fields):
        """The renderer's knobs given directly (the reference server's where a field is not given)."""

    @abc.abstractmethod
    def ensure_tiny(self, root: Path | None = None) -> Path:
        """The tiny offline model's diffusers folder, built on first use."""

    @abc.abstractmethod
    def write_tiny_lora(self, path: str | Path) -> Path:
        """The tiny ai-toolkit-format LoRA for the tiny model, written to `path`."""
