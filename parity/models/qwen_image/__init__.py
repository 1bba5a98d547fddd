"""Qwen-Image as ai-toolkit-inference serves it (`qwen_image`) and ai-toolkit trains it (arch `qwen_image`).

Text to image: no control image on either side. The server renders with diffusers' QwenImagePipeline from the
prompt strings (`true_cfg_scale` with the negative prompt, "" when none, so CFG always runs above 1), floors
sizes to 16 and keeps the LoRA as an unfused PEFT adapter (SET_ADAPTERS); the trainer samples with the same
pipeline class from precomputed embeddings, its hard-coded scheduler config, sizes floored to 32 and its own
LoRA. CFG is renormalised on both sides (the stock pipeline has no switch). The denoising loop is the edit
models' (parity/models/qwen_image_edit_plus_2511/denoise.py) without control latents, proven equal to the stock
call. Qwen-Image-2512 (`qwen_image_2512`) is this package with the LoRA fused (parity/models/qwen_image_2512).
This file imports nothing: the registry reads spec.py without torch.
"""
