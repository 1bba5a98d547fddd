"""Qwen-Image-Edit (the first edit checkpoint) as ai-toolkit-inference serves it (`qwen_image_edit`) and ai-toolkit
trains it (arch `qwen_image_edit`).

One control image on both sides, and a pipeline of its own: diffusers' QwenImageEditPipeline, which resizes its
image to ~1 MP at the *output's* aspect for the VAE. Both sides first resize the control image to the output
size themselves (the server with Lanczos, the trainer with bilinear) and encode the prompt with it at ~1 MP (the
server's size transposed for non-square images, as in its Edit-Plus classes). The rest is the Edit-Plus
machinery: the same transformer, text encoder and VAE classes, the stock denoising loop, the server's
SET_ADAPTERS LoRA application (as for 2509) and ai-toolkit's LoRA network. Modules as in
qwen_image_edit_plus_2511/, whose parts they reuse where the two pipelines agree; this file imports nothing.
"""
