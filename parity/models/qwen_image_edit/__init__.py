"""Qwen-Image-Edit (the first edit checkpoint) as ai-toolkit-inference serves it (`qwen_image_edit`,
QwenImageEditPipeline: resolution divisor 32, requires one control image, SET_ADAPTERS) and ai-toolkit samples it
(arch `qwen_image_edit`, `has_multiple_control_images` unset). The server's class reads one `control_image`: its
executor fills it only when a request carries exactly one image (src/tasks/executor.py _load_control_images). Its
tiny transformer is drawn from 2509's seed 31 (2511's seed 1 moved the output too little under CFG changes)."""

from parity.models.knobs import LoraMethod
from parity.models.qwen import QwenEdit

MODEL = QwenEdit(
    id="qwen_image_edit", checkpoint="Qwen/Qwen-Image-Edit", server_class="QwenImageEditPipeline",
    pipeline="QwenImageEditPipeline", lora_method=LoraMethod.DIFFUSERS_ADAPTER, size_divisor=32,
    trainer_arch="qwen_image_edit", max_control_images=1, trainer_multiple_control_images=False,
    zero_cond_t=False, zero_cond_t_rule="the checkpoint's (off for Qwen-Image-Edit)", tiny_name="qwen-image-edit",
    transformer_seed=31,
)
