"""Qwen-Image-Edit's fixed rules on the reference server (ai-toolkit-inference src/pipelines/qwen_image.py,
QwenImageEditPipeline: CONFIG base model Qwen/Qwen-Image-Edit, resolution divisor 32, 25 steps, guidance 4.0,
requires_control_image) and in the trainer (ai-toolkit qwen_image_edit.py: has_multiple_control_images unset).

The server's class reads one `control_image`: its executor fills that argument only when a request carries
exactly one image (src/tasks/executor.py _load_control_images), so two or three make it fail with "requires a
control image". LoRA application is the PipelineConfig default, SET_ADAPTERS (the adapter kept unfused).

Scheduler configs: the checkpoint's (Qwen/Qwen-Image-Edit scheduler/scheduler_config.json) could not be read
offline; the tiny model carries the 2511 checkpoint's values, and with a real checkpoint the knob compares the
config actually loaded with ai-toolkit's hard-coded one (the same for every Qwen arch, qwen_image.py).
"""

from __future__ import annotations

from parity.models.qwen_image_edit_plus_2511.spec import AITK_SCHEDULER_CONFIG, SCHEDULER_CONFIG
from parity.models.spec import ModelSpec

SPEC = ModelSpec(
    id="qwen_image_edit",
    package="parity.models.qwen_image_edit",
    pipeline="QwenImageEditPipeline",
    checkpoint="Qwen/Qwen-Image-Edit",
    server_class="QwenImageEditPipeline",
    size_divisor=32,
    default_neg="",
    requires_control_image=True,
    max_control_images=1,
    max_loras=1,
    trainer_multiple_control_images=False,
)

__all__ = ["AITK_SCHEDULER_CONFIG", "SCHEDULER_CONFIG", "SPEC"]
