"""ai-toolkit's `--` prompt flags (GenerateImageConfig._process_prompt_string), parsed the same way.

The trainer strips the prompt, splits it on *every* `--`, keeps the first piece as the prompt and reads each
later piece as `flag content`. Unknown flags are ignored; a bad number stops the trainer (here: an error).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# flag -> (setting it overrides, converter). Names are GenerateImageConfig's.
FLAGS: dict[str, tuple[str, type]] = {
    "n": ("negative_prompt", str),
    "w": ("width", int),
    "h": ("height", int),
    "d": ("seed", int),
    "seed": ("seed", int),
    "l": ("guidance_scale", float),
    "cfg": ("guidance_scale", float),
    "s": ("steps", int),
    "steps": ("steps", int),
    "m": ("network_multiplier", float),
    "network_multiplier": ("network_multiplier", float),
    "ctrl_img": ("ctrl_img", str),
}

# Flags the trainer reads but that change nothing for a Qwen edit model.
INERT_FLAGS: dict[str, type] = {
    "p2": str,
    "n2": str,
    "gr": float,
    "a": float,
    "ref": float,
    "ev": str,
    "extra_values": str,
    "frames": int,
    "num_frames": int,
    "fps": int,
    "ctrl_idx": int,
}


@dataclass(frozen=True)
class FlagError:
    flag: str
    content: str
    expected: str


@dataclass(frozen=True)
class ParsedPrompt:
    """The prompt text the text encoder sees, and the settings its flags override (last one wins)."""

    prompt: str
    overrides: dict[str, object] = field(default_factory=dict)
    flags: tuple[tuple[str, str], ...] = ()
    inert: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()
    errors: tuple[FlagError, ...] = ()


def parse_prompt(raw: str) -> ParsedPrompt:
    """Split `raw` into prompt and flag overrides exactly as ai-toolkit does."""
    pieces = raw.strip().split("--")
    overrides: dict[str, object] = {}
    flags: list[tuple[str, str]] = []
    inert: list[str] = []
    unknown: list[str] = []
    errors: list[FlagError] = []
    for piece in pieces[1:]:
        flag = piece.split(" ")[0].strip()
        content = piece[len(flag):].strip()
        flags.append((flag, content))
        if flag in FLAGS:
            setting, convert = FLAGS[flag]
            try:
                overrides[setting] = _convert(convert, content)
            except ValueError:
                errors.append(FlagError(flag, content, _expected(convert)))
        elif flag in INERT_FLAGS:
            inert.append(flag)
            convert = INERT_FLAGS[flag]
            if convert is not str:
                try:
                    _convert(convert, content)
                except ValueError:
                    errors.append(FlagError(flag, content, _expected(convert)))
        else:
            unknown.append(flag)
    return ParsedPrompt(
        prompt=pieces[0].strip(),
        overrides=overrides,
        flags=tuple(flags),
        inert=tuple(inert),
        unknown=tuple(unknown),
        errors=tuple(errors),
    )


def _convert(convert: type, content: str) -> object:
    """The flag's value; ValueError also for `nan`/`inf`, which Python's float() accepts: the trainer would
    sample with them, but no case can be rendered or reported with them."""
    value = convert(content)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(content)
    return value


def _expected(convert: type) -> str:
    return "a whole number" if convert is int else "a finite number"
