"""Qwen-Image-Edit-2509 as ai-toolkit-inference serves it (model id `qwen_image_edit_plus`, the trainer's arch name;
QwenImageEditPlus2509Pipeline): 2511's class with another base model and the LoRA kept as an unfused PEFT adapter
(SET_ADAPTERS); the trainer samples both with one code path. The checkpoint's zero_cond_t is off. Its tiny
transformer is drawn from seed 31: with 2511's seed 1 and zero_cond_t off, a CFG scale change (4 -> 2.5) moved the
output 0.94 levels, under the sensitivity test's floor of 1 (tests/models/test_contract.py); seed 31 moves every input
of that test by at least 1.04."""

from parity.models.knobs import LoraMethod
from parity.models.qwen import QwenEditPlus

MODEL = QwenEditPlus(
    id="qwen_image_edit_plus", checkpoint="Qwen/Qwen-Image-Edit-2509", server_class="QwenImageEditPlus2509Pipeline",
    pipeline="QwenImageEditPlusPipeline", lora_method=LoraMethod.DIFFUSERS_ADAPTER, size_divisor=32,
    trainer_arch="qwen_image_edit_plus", name_markers=("2509",), max_control_images=3,
    zero_cond_t=False, zero_cond_t_rule="the checkpoint's (off for 2509)", tiny_name="qwen-image-edit-2509", transformer_seed=31,
)
