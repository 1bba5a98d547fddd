"""The scheduler configs of the Qwen family: the checkpoints' and ai-toolkit's hard-coded one.

The server is runcomfy-com/ai-toolkit-inference src/pipelines/qwen_image.py; the trainer is ostris/ai-toolkit
extensions_built_in/diffusion_models/qwen_image/. The checkpoints' configs of Qwen-Image and Qwen-Image-Edit could not
be read offline: the tiny models carry 2511's values, and with a real checkpoint the knob compares the config actually
loaded with ai-toolkit's (the same for every Qwen arch, qwen_image.py).
"""

from __future__ import annotations

# The scheduler config of Qwen/Qwen-Image-Edit-2511 (the checkpoint's scheduler_config.json).
SCHEDULER_CONFIG = {
    "base_image_seq_len": 256,
    "base_shift": 0.5,
    "invert_sigmas": False,
    "max_image_seq_len": 8192,
    "max_shift": 0.9,
    "num_train_timesteps": 1000,
    "shift": 1.0,
    "shift_terminal": 0.02,
    "stochastic_sampling": False,
    "time_shift_type": "exponential",
    "use_beta_sigmas": False,
    "use_dynamic_shifting": True,
    "use_exponential_sigmas": False,
    "use_karras_sigmas": False,
}

# ai-toolkit's hard-coded scheduler config for Qwen-Image models (qwen_image.py). The trainer never reads the
# checkpoint's; today its numbers are those of the checkpoint's config above, so the scheduler knob differs
# only in the class. It stays its own name: the knob compares it with the config of the checkpoint actually loaded.
AITK_SCHEDULER_CONFIG: dict[str, object] = dict(SCHEDULER_CONFIG)
