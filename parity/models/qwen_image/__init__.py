"""Qwen-Image as ai-toolkit-inference serves it (`qwen_image`, QwenImagePipeline: divisor 16, no control image, the
LoRA as an unfused PEFT adapter) and ai-toolkit samples it (arch `qwen_image`): text to image on both sides."""

from parity.models.knobs import LoraMethod
from parity.models.qwen import QwenImage

MODEL = QwenImage(
    id="qwen_image", checkpoint="Qwen/Qwen-Image", server_class="QwenImagePipeline", pipeline="QwenImagePipeline",
    lora_method=LoraMethod.DIFFUSERS_ADAPTER, size_divisor=16, trainer_arch="qwen_image",
    name_markers=("qwen-image", "qwen_image"), requires_control_image=False, max_control_images=0,
    zero_cond_t=False, tiny_name="qwen-image", transformer_seed=1,
)
