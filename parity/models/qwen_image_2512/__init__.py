"""Qwen-Image-2512 as ai-toolkit-inference serves it (`qwen_image_2512`, QwenImage2512Pipeline: Qwen-Image's class
with another base model and the LoRA fused) and ai-toolkit samples it (arch `qwen_image`; the UI's
`qwen_image:2512` names the checkpoint). A retrained Qwen-Image: its tiny transformer has its own seed."""

from parity.models.knobs import LoraMethod
from parity.models.qwen import QwenImage

MODEL = QwenImage(
    id="qwen_image_2512", checkpoint="Qwen/Qwen-Image-2512", server_class="QwenImage2512Pipeline",
    pipeline="QwenImagePipeline", lora_method=LoraMethod.DIFFUSERS_FUSE, size_divisor=16, trainer_arch="qwen_image",
    name_markers=("2512",), requires_control_image=False, max_control_images=0,
    zero_cond_t=False, tiny_name="qwen-image-2512", transformer_seed=2,
)
