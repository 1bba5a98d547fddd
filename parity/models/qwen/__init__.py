"""The Qwen-Image family: what its models share, and its three pipelines as Model classes.

Each model id is an instance of one of these with its own config (parity/models/<id>/__init__.py):
- QwenEditPlus: diffusers' QwenImageEditPlusPipeline on both sides, 1-3 control images (Qwen-Image-Edit-2511 and
  -2509). The base of the family: knobs.py, wiring.py, denoise.py, geometry.py, tiny.py.
- QwenEdit: diffusers' QwenImageEditPipeline, one control image (Qwen-Image-Edit): edit_knobs.py, edit_wiring.py,
  edit_geometry.py, edit_tiny.py over the base.
- QwenImage: text to image, diffusers' QwenImagePipeline (Qwen-Image, -2512): image_knobs.py, image_wiring.py,
  image_tiny.py over the base.
The server is runcomfy-com/ai-toolkit-inference src/pipelines/qwen_image.py; the trainer is ostris/ai-toolkit
extensions_built_in/diffusion_models/qwen_image/. Importing this package imports no torch: the rendering modules are
imported by the methods that render.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import ClassVar

from parity.facts.case import Case
from parity.models.knobs import Knob, RuntimeFacts, Wiring
from parity.models.model import Model
from parity.models.qwen import edit_knobs, geometry, image_knobs, knobs


@dataclass(frozen=True)
class Qwen(Model):
    """What every Qwen model shares: the size rules, the scheduler knob, the tiny LoRA, and the way to its pipeline's
    rooms: `rules` (its knob module, pure) and `_wiring` / `_tiny` (its renderer and tiny builder, torch)."""

    zero_cond_t: bool = True  # the checkpoint's transformer config (its tiny model's too)
    zero_cond_t_rule: str = ""  # the reference server's zero_cond_t in the knob table, e.g. "the checkpoint's (on for 2511)"
    tiny_name: str = ""  # the tiny model's cache folder
    transformer_seed: int = 1  # the tiny transformer's seed
    rules: ClassVar[ModuleType] = knobs

    def server_size(self, value: int) -> int:
        return geometry.server_size(value, self.size_divisor)

    def trainer_size(self, value: int) -> int:
        return geometry.trainer_size(value)

    @property
    def trainer_divisor(self) -> int:
        return geometry.TRAINER_DIVISOR

    def activation_bytes(self, width: int, height: int, controls: int) -> int:
        return geometry.activation_bytes(width, height, controls)

    def scheduler_items(self, config: dict[str, object]) -> tuple[tuple[str, object], ...]:
        return knobs.scheduler_items(config)

    def knob_rules(self) -> dict[Knob, tuple[str, str, str]]:
        return self.rules.knob_rules(self.lora_method, self.zero_cond_t_rule)

    def reference_wiring(self, case: Case, facts: RuntimeFacts) -> Wiring:
        return self.rules.reference_wiring(case, facts, lora_method=self.lora_method)

    def preview_wiring(self, case: Case, facts: RuntimeFacts) -> Wiring:
        return self.rules.preview_wiring(case, facts)

    def _wiring(self) -> ModuleType:
        from parity.models.qwen import wiring

        return wiring

    def _tiny(self) -> ModuleType:
        from parity.models.qwen import tiny

        return tiny

    def renderer(self, pipe):
        return self._wiring().Renderer(pipe)

    def request(self, **fields):
        return self._wiring().Request(**fields)

    def render_knobs(self, wiring: Wiring, facts: RuntimeFacts):
        return self._wiring().render_knobs(wiring, facts)

    def renderer_knobs(self, **fields):
        return self._wiring().RenderKnobs(**fields)

    def ensure_tiny(self, root: Path | None = None) -> Path:
        return self._tiny().ensure_tiny(root, name=self.tiny_name, zero_cond_t=self.zero_cond_t, transformer_seed=self.transformer_seed)

    def write_tiny_lora(self, path: str | Path) -> Path:
        from parity.models.qwen.tiny import write_tiny_lora

        return write_tiny_lora(path)


@dataclass(frozen=True)
class QwenEditPlus(Qwen):
    """QwenImageEditPlusPipeline on both sides (ai-toolkit arch qwen_image_edit_plus): the family's base rooms."""


@dataclass(frozen=True)
class QwenEdit(Qwen):
    """QwenImageEditPipeline on both sides, one control image (ai-toolkit arch qwen_image_edit)."""

    rules: ClassVar[ModuleType] = edit_knobs

    def _wiring(self) -> ModuleType:
        from parity.models.qwen import edit_wiring

        return edit_wiring

    def _tiny(self) -> ModuleType:
        from parity.models.qwen import edit_tiny

        return edit_tiny


@dataclass(frozen=True)
class QwenImage(Qwen):
    """QwenImagePipeline on both sides, text to image (ai-toolkit arch qwen_image)."""

    rules: ClassVar[ModuleType] = image_knobs

    def _wiring(self) -> ModuleType:
        from parity.models.qwen import image_wiring

        return image_wiring

    def _tiny(self) -> ModuleType:
        from parity.models.qwen import image_tiny

        return image_tiny


__all__ = ["Qwen", "QwenEdit", "QwenEditPlus", "QwenImage"]
