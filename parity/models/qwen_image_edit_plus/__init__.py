"""Qwen-Image-Edit-2509 as the reference server serves it (model id `qwen_image_edit_plus`, the trainer's arch name).

The server's QwenImageEditPlus2509Pipeline is its 2511 class with another base model and the LoRA kept as an
unfused PEFT adapter (SET_ADAPTERS) instead of fused; the trainer samples both with one code path (arch
`qwen_image_edit_plus`). So this package is the 2511 package with those two differences: the reference wiring's
LoRA application and the checkpoint's `zero_cond_t` (off, as in the 2509 transformer config), which its tiny model
has (with its transformer drawn from its own seed: tiny.py says why).
"""
