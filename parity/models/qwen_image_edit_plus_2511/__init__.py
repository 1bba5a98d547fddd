"""Qwen-Image-Edit-2511 as ai-toolkit-inference serves it (`qwen_image_edit_plus_2511`, QwenImageEditPlus2511Pipeline:
LoRA fused) and ai-toolkit samples it (arch `qwen_image_edit_plus`). The default model."""

from parity.models.knobs import LoraMethod
from parity.models.qwen import QwenEditPlus

MODEL = QwenEditPlus(
    id="qwen_image_edit_plus_2511", checkpoint="Qwen/Qwen-Image-Edit-2511", server_class="QwenImageEditPlus2511Pipeline",
    pipeline="QwenImageEditPlusPipeline", lora_method=LoraMethod.DIFFUSERS_FUSE, size_divisor=32,
    trainer_arch="qwen_image_edit_plus", name_markers=("2511",), max_control_images=3,
    zero_cond_t=True, zero_cond_t_rule="the checkpoint's (on for 2511)", tiny_name="qwen-image-edit-2511", transformer_seed=1,
)
