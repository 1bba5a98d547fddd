"""The reference server's pass: what ai-toolkit-inference makes of a request carrying the trainer's settings.

Pure. It snaps the size to the model's divisor, fills the server's defaults, takes the LoRA scale the request
gives, and says which values its request schema refuses (the ranges live in the case-file schema's metadata,
`server=`, one source). A refused case still resolves: it becomes an error row that names the value, because
the trainer rendered that sample and the report must show the two sides apart.
"""

from __future__ import annotations

from dataclasses import fields

from parity.cases.schema import LoraEntry, SampleItemEntry, bounds, outside
from parity.facts.case import LoraRef, Settings
from parity.models.model import Model

_SERVER_RANGES = {f.name: f.metadata.get("server") for f in fields(SampleItemEntry) if f.metadata.get("server")}
_LORA_RANGE = next(f.metadata["server"] for f in fields(LoraEntry) if f.name == "network_multiplier")


def server_settings(
    requested: Settings, model: Model, loras: tuple[LoraRef, ...], multiplier: float
) -> tuple[Settings, list[str]]:
    """The settings the reference server renders with, and a note for every value it changes."""
    notes: list[str] = []
    width, height = model.server_size(requested.width), model.server_size(requested.height)
    drawn = f"{model.trainer_size(requested.width)}x{model.trainer_size(requested.height)}"
    if (width, height) != (requested.width, requested.height):
        notes.append(
            f"size {requested.width}x{requested.height} -> {width}x{height}: the reference server floors to a "
            f"multiple of {model.size_divisor} (the trainer draws {drawn})"
        )
    elif drawn != f"{width}x{height}":
        notes.append(f"the trainer draws {drawn} (rounded to 8, at least 64), the reference server {width}x{height}")
    neg = requested.negative_prompt
    if neg is False:
        notes.append(
            'neg is false (ai-toolkit default): the reference server sends "" — the trainer\'s Qwen edit path '
            "cannot encode false, so the training config must have set a string"
        )
        neg = model.default_neg
    lora_scale: float | None = None
    if loras:
        lora_scale = loras[0].network_multiplier if loras[0].network_multiplier is not None else multiplier
        if loras[0].network_multiplier is not None and loras[0].network_multiplier != multiplier:
            notes.append(f"LoRA scale {lora_scale:g} from loras[0].network_multiplier; the sample asked for {multiplier:g}")
    if requested.guidance_scale <= 1:
        notes.append(f"guidance {requested.guidance_scale:g} <= 1: no CFG pass on either side")
    effective = Settings(
        prompt=requested.prompt,
        negative_prompt=neg,
        width=width,
        height=height,
        seed=requested.seed,
        steps=requested.steps,
        guidance_scale=requested.guidance_scale,
        lora_scale=lora_scale,
        control_images=requested.control_images,
    )
    return effective, notes


def refusals(requested: Settings, effective: Settings) -> tuple[str, ...]:
    """Why the reference server would not render this request, one line per value ('' when it would)."""
    checks = (
        ("width", requested.width, _SERVER_RANGES["width"]),
        ("height", requested.height, _SERVER_RANGES["height"]),
        ("sample_steps", requested.steps, _SERVER_RANGES["sample_steps"]),
        ("guidance_scale", requested.guidance_scale, _SERVER_RANGES["guidance_scale"]),
        ("seed", requested.seed, _SERVER_RANGES["seed"]),
        ("LoRA scale", effective.lora_scale, _LORA_RANGE),
    )
    found = []
    for name, value, (low, high) in checks:
        if value is None:
            continue
        if outside(value, low, high):
            shown = f"{value:g}" if isinstance(value, float) else str(value)
            found.append(f"{name} {shown} is outside what its request schema accepts ({bounds(low, high)})")
    if requested.seed == -1:
        found.append("seed -1 makes it draw a random seed, so its image cannot be reproduced")
    return tuple(found)
