"""A LoRA file read without torch: what kind of network it holds, which trainer setting wrote it, and whether the
reference server's loader can apply it.

`parity validate` and the loader both start here, so a file `run` would refuse for its own content is refused by
`validate` as well, with the same words. What only the model can tell (module names and shapes that do not fit its
layers, weights that change nothing) is checked against the loaded transformer (parity.render.lora).

The trainer's side is ai-toolkit's (27a03a9): `LoRASpecialNetwork` builds every Qwen network in PEFT format
(`is_transformer`), LoKr too unless `old_lokr_format: true`; `get_state_dict` renames lora_down/lora_up to
lora_A/lora_B, drops `.alpha` except for LoKr, and `QwenImageModel.convert_lora_weights_before_save` prefixes the
keys `diffusion_model.`. The server's side is diffusers 0.42.1's `QwenImageLoraLoaderMixin.lora_state_dict`
(`_convert_non_diffusers_qwen_lora_to_diffusers`), then PEFT: each claim below is checked against that path in
tests/cases/test_lora_formats.py.
"""

from __future__ import annotations

import enum
import json
import math
import os
import struct
from dataclasses import dataclass, field

from parity.core.errors import ModelLoadError

DOWN_SUFFIXES = (".lora_A.weight", ".lora_down.weight")
UP_SUFFIXES = (".lora_B.weight", ".lora_up.weight")
PREFIXES = ("diffusion_model.", "transformer.")
LOKR_SUFFIXES = (".lokr_w1", ".lokr_w1_a", ".lokr_w1_b", ".lokr_w2", ".lokr_w2_a", ".lokr_w2_b", ".lokr_t2")
DIFF_SUFFIXES = (".diff", ".diff_b")
DTYPES = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}


class LoraFormat(enum.Enum):
    """What kind of network a file holds, by its key names."""

    PEFT_LORA = "PEFT LoRA"
    DOWN_UP_LORA = "LoRA (lora_down/lora_up keys)"
    LOKR = "LoKr"
    LOKR_OLD = "LoKr (old lycoris_ keys)"
    DORA = "DoRA"
    FULL_RANK = "full-rank"
    FULL_WEIGHTS = "full weight differences"
    NOT_A_LORA = "not a LoRA"


@dataclass(frozen=True)
class FormatFacts:
    """Where a format comes from and what the reference server does with it."""

    trainer: str  # the ai-toolkit setting that writes it
    server: str  # what the reference server's loader does with such a file
    fix: str | None = None  # None: the server applies it


_TRAIN_LORA = (
    "train with `network: type: lora` (ai-toolkit's PEFT LoRA), which the reference server applies; parity compares "
    "what that server renders, so it cannot run this file"
)
FORMATS: dict[LoraFormat, FormatFacts] = {
    LoraFormat.PEFT_LORA: FormatFacts(
        "`network: type: lora` (ai-toolkit's Qwen networks: lora_A/lora_B keys, prefixed diffusion_model., no .alpha)",
        "loads it with load_lora_weights and applies it",
    ),
    LoraFormat.DOWN_UP_LORA: FormatFacts(
        "not written by ai-toolkit for Qwen (its Qwen networks save lora_A/lora_B); another tool's key names",
        "renames lora_down/lora_up to lora_A/lora_B and applies it",
    ),
    LoraFormat.LOKR: FormatFacts(
        "`network: type: lokr` (ai-toolkit's UI default: lokr_w1/lokr_w2 Kronecker factors and .alpha keys)",
        "refuses it: its loader reads only lora_A/lora_B (or lora_down/lora_up) pairs and raises `ValueError: "
        "state_dict should be empty at this point` on the lokr_ keys, so nothing renders",
        f"{_TRAIN_LORA}; to use the LoKr as it is, serve it with a runtime that applies LoKr (ComfyUI does)",
    ),
    LoraFormat.LOKR_OLD: FormatFacts(
        "`network: type: lokr` with `old_lokr_format: true` (lycoris_… key names, .alpha keys)",
        "refuses it: its loader raises `ValueError: state_dict should be empty at this point` on the lokr_ keys, so "
        "nothing renders",
        f"{_TRAIN_LORA}; to use the LoKr as it is, serve it with a runtime that applies LoKr (ComfyUI does)",
    ),
    LoraFormat.DORA: FormatFacts(
        "`network: type: dora` (lora_A/lora_B plus a .magnitude vector per layer)",
        "refuses it: its Qwen loader has no DoRA and raises `ValueError: state_dict should be empty at this point` "
        "on the .magnitude keys, so nothing renders",
        _TRAIN_LORA,
    ),
    LoraFormat.FULL_RANK: FormatFacts(
        "`network: type: fullrank` (one lora_A per layer holding the whole outputs x inputs delta, no lora_B)",
        "refuses it: its loader raises `ValueError: Missing lora_B weight for …`, so nothing renders",
        _TRAIN_LORA,
    ),
    LoraFormat.FULL_WEIGHTS: FormatFacts(
        "`network: full_if_contains: [...]` or `all_layers: true` (whole-weight differences as .diff/.diff_b keys)",
        "refuses it: its loader raises `ValueError: state_dict should be empty at this point` on the .diff keys, so "
        "nothing renders",
        "train without full_if_contains and all_layers (every targeted layer then gets a LoRA), which the reference "
        "server applies; parity compares what that server renders, so it cannot run this file",
    ),
    LoraFormat.NOT_A_LORA: FormatFacts(
        "none: no LoRA keys (a model checkpoint or another kind of file)",
        "refuses it (`ValueError` while converting its keys, or `Invalid LoRA checkpoint`)",
        "point `loras[].path` at a LoRA file (ai-toolkit or diffusers key format), not a model checkpoint",
    ),
}
FLOAT8 = FormatFacts(
    "`save: dtype: 8bit` (every tensor float8 e4m3)",
    "refuses it: its loader multiplies each weight by its alpha scale on the CPU while converting the keys, and torch "
    "has no float8 multiply there (`NotImplementedError: \"mul_cpu_reduced_float\" not implemented for "
    "'Float8_e4m3fn'`), so nothing renders",
    "save with `save: dtype: float16` (ai-toolkit's default) or bf16; an existing file converts exactly, since every "
    "float8 e4m3 value is a float16 value: load it with safetensors.torch and save each tensor `.to(torch.float16)`",
)


@dataclass(frozen=True)
class LoraLayer:
    """One targeted linear: down is [rank, in_features], up is [out_features, rank]."""

    down: tuple[int, ...]
    up: tuple[int, ...]

    @property
    def rank(self) -> int:
        return self.down[0]


@dataclass(frozen=True)
class LoraFile:
    """What a LoRA file holds, read from its header and its `.alpha` scalars."""

    path: str
    format: LoraFormat
    layers: dict[str, LoraLayer]  # the linear LoRA pairs (PEFT or lora_down/up): transformer module name -> shapes
    modules: tuple[str, ...] = ()  # every module the file names, whatever its format
    dtypes: tuple[str, ...] = ()  # of its weight tensors
    alphas: dict[str, float | None] = field(default_factory=dict)  # module -> its `.alpha` (None: not readable)
    mixed: tuple[LoraFormat, ...] = ()  # other kinds found beside the main one (full_if_contains beside lora_A/B)
    tensors: int = 0
    strays: tuple[str, ...] = ()  # keys the server's loader knows nothing of
    dropped: tuple[str, ...] = ()  # kohya-style DoRA `dora_scale` keys: the server drops them and applies the plain LoRA
    unpaired: tuple[tuple[str, str], ...] = ()  # (module, the missing half) of an incomplete pair
    misfits: tuple[str, ...] = ()  # pairs whose down and up do not fit together
    wide_alphas: tuple[str, ...] = ()  # `.alpha` keys that hold more than one number

    @property
    def facts(self) -> FormatFacts:
        return FORMATS[self.format]

    @property
    def float8(self) -> bool:
        return any(d.startswith("float8") for d in self.dtypes)

    @property
    def ranks(self) -> tuple[int, ...]:
        return tuple(sorted({layer.rank for layer in self.layers.values()}))

    @property
    def trainer_setting(self) -> str:
        if self.format is LoraFormat.PEFT_LORA and self.alphas:
            return "another tool, or a converted file (ai-toolkit writes no .alpha keys for a Qwen LoRA)"
        settings = [FORMATS[k].trainer for k in (self.format, *self.mixed)]
        return "; ".join([*settings, FLOAT8.trainer] if self.float8 else settings)

    @property
    def dtype_text(self) -> str:
        return ", ".join(self.dtypes)

    @property
    def alpha_text(self) -> str:
        """The file's `.alpha` keys in words ("alpha 8 / rank 4"); "" when it has none."""
        if not self.alphas:
            return ""
        alphas = sorted({a for a in self.alphas.values() if a is not None})
        shown = ", ".join(f"{a:g}" for a in alphas[:4]) + (" …" if len(alphas) > 4 else "")
        alpha = f"alpha {shown}" if len(alphas) == 1 else f"alphas {shown}" if alphas else "alpha (not readable)"
        return f"{alpha} / rank {'/'.join(map(str, self.ranks))}" if self.ranks else alpha

    def alpha_scales(self) -> dict[str, float | None]:
        """Per module with an `.alpha` key: alpha / rank, the factor the server's loader multiplies into its weights."""
        return {
            name: (None if alpha is None or name not in self.layers else alpha / self.layers[name].rank)
            for name, alpha in self.alphas.items()
        }

    def alpha_scale(self) -> float | None:
        """The server's alpha factor when it is one number for the whole file (1.0: no `.alpha` keys); None: it
        differs between layers or cannot be read."""
        scales = set(self.alpha_scales().values())
        if not scales:
            return 1.0
        return scales.pop() if len(scales) == 1 else None

    def refusal(self) -> tuple[str, str] | None:
        """(what, fix) when the reference server's loader would refuse this file (nothing renders); None: it loads."""
        name = self.path
        if self.format is LoraFormat.NOT_A_LORA:
            return (
                (f"LoRA {name} holds no LoRA weights ({self.tensors} tensors, none named *.lora_A/lora_B or "
                f"*.lora_down/lora_up): the reference server {self.facts.server}"),
                self.facts.fix or "",
            )
        for kind in (self.format, *self.mixed):
            facts = FORMATS[kind]
            if facts.fix is not None:
                return (f"LoRA {name} {_kind_text(kind, self)}, as ai-toolkit writes with {facts.trainer}; the reference server {facts.server}", facts.fix)
        if self.float8:
            return (f"LoRA {name} is saved in float8, as ai-toolkit writes with {FLOAT8.trainer}; the reference server {FLOAT8.server}", FLOAT8.fix or "")
        if self.strays:
            return (
                (f"LoRA {name} holds {len(self.strays)} keys that are neither LoRA weights nor .alpha ({_shown(list(self.strays))}): "
                "the reference server's loader raises on them (`ValueError: state_dict should be empty at this point` "
                "or `Invalid LoRA checkpoint`), so nothing renders"),
                "remove those keys, or save the LoRA again from its trainer",
            )
        if self.unpaired:
            module, half = self.unpaired[0]
            return (
                (f"LoRA {name}: {module} has no {half} weight ({len(self.unpaired)} incomplete pairs): the reference "
                "server's loader raises on it (`ValueError: Missing lora_B weight` or a KeyError), so nothing renders"),
                "re-save the LoRA; the file is incomplete",
            )
        if self.wide_alphas:
            return (
                (f"LoRA {name}: {len(self.wide_alphas)} .alpha keys hold more than one number ({_shown(list(self.wide_alphas))}): "
                "the reference server's loader raises on them (`a Tensor with N elements cannot be converted to "
                "Scalar`), so nothing renders"),
                "re-save the LoRA with one alpha per layer, or without .alpha keys (alpha = rank)",
            )
        if self.misfits:
            return (
                (f"LoRA {name}: {self.misfits[0]} (down is [rank, inputs], up is [outputs, rank]): PEFT refuses such a "
                "pair when the server loads it"),
                "re-save the LoRA; the file is damaged or not a linear LoRA",
            )
        return None


def _kind_text(kind: LoraFormat, lora: LoraFile) -> str:
    if kind is LoraFormat.FULL_WEIGHTS:
        beside = " beside its LoRA pairs" if lora.layers else ""
        return f"holds full weight differences (.diff/.diff_b keys){beside}"
    return f"is a {kind.value} network"


def module_name(key: str, suffix: str) -> str:
    name = key[: -len(suffix)]
    for prefix in PREFIXES:
        name = name.removeprefix(prefix)
    return name


def inspect(path: str) -> LoraFile:
    """The file's kind, targeted modules, shapes, dtypes and alphas; ModelLoadError only when it cannot be read at
    all (what a readable file holds is judged by `LoraFile.refusal`)."""
    if not path.endswith(".safetensors"):
        raise ModelLoadError(
            f"LoRA is not a .safetensors file: {path} (pickled checkpoints are never loaded)",
            "use the .safetensors file ai-toolkit saved",
        )
    if not os.path.isfile(path):
        raise ModelLoadError(f"LoRA file not found: {path}", "check `loras[].path` (relative to the case file)")
    from safetensors import safe_open

    try:
        with safe_open(path, framework="numpy") as fh:
            header = {key: (tuple(fh.get_slice(key).get_shape()), str(fh.get_slice(key).get_dtype())) for key in fh.keys()}  # noqa: SIM118
    except Exception as exc:  # noqa: BLE001 (safetensors raises its own SafetensorError and OSError; both mean the same)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        size = os.path.getsize(path)
        raise ModelLoadError(
            f"LoRA {path} ({size:,} bytes) is not a readable safetensors file: {reason}",
            "the file is empty, truncated or damaged: copy it again from the training output folder",
        ) from None
    return classify(path, header, lambda keys: _scalars(path, keys))


def classify(path: str, header: dict[str, tuple[tuple[int, ...], str]], read_scalars) -> LoraFile:
    """A LoraFile from a header (key -> (shape, safetensors dtype)); `read_scalars(keys)` gives `.alpha` values."""
    halves: dict[str, dict[str, tuple[int, ...]]] = {}
    kinds: dict[LoraFormat, list[str]] = {}
    strays: list[str] = []
    dropped: list[str] = []
    alpha_keys: dict[str, str] = {}
    wide_alphas: list[str] = []
    for key, (shape, _) in header.items():
        if key.endswith(".alpha"):
            alpha_keys[module_name(key, ".alpha").removeprefix("lycoris_")] = key
            if math.prod(shape) != 1:
                wide_alphas.append(key)
            continue
        role = _pair_role(key)
        if role is not None:
            halves.setdefault(module_name(key, role[1]), {})[role[0]] = shape
            continue
        kind = _other_kind(key)
        if kind is None and ".dora_scale" in key:
            dropped.append(key)  # the server's loader drops these with a warning and applies the plain LoRA
        elif kind is None:
            strays.append(key)
        else:
            kinds.setdefault(kind, []).append(key)
    named = {*halves, *(module_name(k, _suffix(k)).removeprefix("lycoris_") for keys in kinds.values() for k in keys)}
    has_up = any("up" in pair for pair in halves.values())
    if halves and not has_up:  # lora_A alone, everywhere: ai-toolkit's full-rank network
        kinds.setdefault(LoraFormat.FULL_RANK, []).extend(halves)
        halves = {}
    pairs = {n: p for n, p in halves.items() if set(p) == {"down", "up"}}
    main = _main_format(kinds, header, pairs)
    unpaired = tuple((n, "up" if "down" in p else "down") for n, p in sorted(halves.items()) if n not in pairs)
    layers, misfits = {}, []
    for name, pair in sorted(pairs.items()):
        down, up = pair["down"], pair["up"]
        if len(down) != 2 or len(up) != 2 or down[0] != up[1]:
            misfits.append(f"{name}: down {list(down)} and up {list(up)} do not fit together")
        else:
            layers[name] = LoraLayer(down, up)
    values = read_scalars(list(alpha_keys.values())) if alpha_keys else {}
    return LoraFile(
        path=path,
        format=main,
        layers=layers,
        modules=tuple(sorted(named)),
        dtypes=tuple(sorted({DTYPES.get(d, d.lower()) for k, (_, d) in header.items() if not k.endswith(".alpha")})),
        alphas={name: values.get(key) for name, key in alpha_keys.items()},
        mixed=tuple(k for k in kinds if k is not main),
        tensors=len(header),
        strays=tuple(strays),
        dropped=tuple(dropped),
        unpaired=unpaired,
        misfits=tuple(misfits),
        wide_alphas=tuple(wide_alphas),
    )


def _pair_role(key: str) -> tuple[str, str] | None:
    for role, suffixes in (("down", DOWN_SUFFIXES), ("up", UP_SUFFIXES)):
        for suffix in suffixes:
            if key.endswith(suffix):
                return role, suffix
    return None


def _other_kind(key: str) -> LoraFormat | None:
    if key.endswith(LOKR_SUFFIXES):
        return LoraFormat.LOKR_OLD if key.startswith("lycoris_") else LoraFormat.LOKR
    if key.endswith(".magnitude"):
        return LoraFormat.DORA
    if key.endswith(DIFF_SUFFIXES):
        return LoraFormat.FULL_WEIGHTS
    return None


def _suffix(key: str) -> str:
    return next((s for s in (*LOKR_SUFFIXES, ".magnitude", *DIFF_SUFFIXES) if key.endswith(s)), "")


def _main_format(kinds: dict[LoraFormat, list[str]], header: dict, pairs: dict) -> LoraFormat:
    for kind in (LoraFormat.LOKR, LoraFormat.LOKR_OLD, LoraFormat.DORA, LoraFormat.FULL_RANK):
        if kind in kinds:
            return kind
    if pairs or any(_pair_role(k) for k in header):
        return LoraFormat.PEFT_LORA if any(k.endswith(".lora_A.weight") for k in header) else LoraFormat.DOWN_UP_LORA
    return LoraFormat.FULL_WEIGHTS if LoraFormat.FULL_WEIGHTS in kinds else LoraFormat.NOT_A_LORA


def _scalars(path: str, keys: list[str]) -> dict[str, float | None]:
    """The one-element tensors `keys` as floats, read where the header puts them (a `.alpha` is one number; numpy has
    no bfloat16, so its bits are widened to float32 by hand). None for a dtype not read here."""
    values: dict[str, float | None] = {}
    with open(path, "rb") as fh:
        size = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(size))
        for key in keys:
            entry = header.get(key, {})
            start, end = entry.get("data_offsets", (0, 0))
            fh.seek(8 + size + start)
            values[key] = _scalar(entry.get("dtype", ""), fh.read(end - start))
    return values


def _scalar(dtype: str, raw: bytes) -> float | None:
    formats = {"F64": "<d", "F32": "<f", "F16": "<e", "I64": "<q", "I32": "<i"}
    if dtype in formats and len(raw) == struct.calcsize(formats[dtype]):
        return float(struct.unpack(formats[dtype], raw)[0])
    if dtype == "BF16" and len(raw) == 2:
        return float(struct.unpack("<f", b"\x00\x00" + raw)[0])
    return None


def knob_facts(path: str) -> dict[str, object]:
    """What a LoRA file tells the knob tables (models.knobs.RuntimeFacts): its weights' dtype and the alpha the
    server's loader applies; nothing for a file that cannot be read (the case's own LoRA check says why)."""
    try:
        lora = inspect(path)
    except ModelLoadError:
        return {}
    return {"lora_file_dtype": lora.dtype_text or None, "lora_alpha_scale": lora.alpha_scale(), "lora_alpha_text": lora.alpha_text}


def check(path: str) -> LoraFile:
    """`inspect`, and ModelLoadError with the server's behaviour and the fix for a file its loader would refuse."""
    lora = inspect(path)
    refusal = lora.refusal()
    if refusal is not None:
        raise ModelLoadError(*refusal)
    return lora


def shape_problems(lora: LoraFile, linears: dict[str, tuple[int, int]]) -> list[str]:
    """Targeted layers whose shapes do not fit the model's linears ({name: (in_features, out_features)})."""
    problems = []
    for name, layer in lora.layers.items():
        if name not in linears:
            continue
        inputs, outputs = linears[name]
        if layer.down[1] != inputs or layer.up[0] != outputs:
            problems.append(
                f"{name}: the LoRA maps {layer.down[1]} -> {layer.up[0]} features, the model's layer {inputs} -> {outputs}"
            )
    return problems


def _shown(names: list[str]) -> str:
    return ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
