"""Qwen-Image-2512 as ai-toolkit-inference serves it (`qwen_image_2512`): the server's QwenImage2512Pipeline is its
Qwen-Image class with another base model and the LoRA fused (FUSE) instead of kept as an adapter; the trainer
samples it as arch `qwen_image` (the UI's `qwen_image:2512` only names the checkpoint). So this package is the
Qwen-Image package with those two differences: the reference wiring's LoRA application, and a tiny model whose
transformer is drawn from its own seed. This file imports nothing: the registry reads spec.py without torch.
"""
