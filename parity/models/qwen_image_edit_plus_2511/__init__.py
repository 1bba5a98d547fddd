"""Qwen-Image-Edit-2511 as ai-toolkit-inference serves it (`qwen_image_edit_plus_2511`) and ai-toolkit trains it.

What a model package provides, reached through the registry (`parity.models.get_model`, `parity.models.part`):
spec.py (SPEC and both scheduler configs), geometry.py (size rules of both sides), knobs.py (both wirings, knob
by knob), wiring.py (Request, Renderer, render_knobs), denoise.py (the stock call in timed stages), tiny.py (the
offline tiny model and LoRA). This file imports nothing: the registry reads spec.py without torch.
"""
