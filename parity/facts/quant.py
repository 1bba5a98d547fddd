"""The trainer's quantization settings, as data: which `qtype` strings ai-toolkit accepts, which parity replays, and
with which library at which version. Pure; what is installed arrives from the engine.

Read from ai-toolkit's code (ostris/ai-toolkit 27a03a9): `toolkit/config_modules.py` ModelConfig parses `qtype`
(`"<qtype>|<accuracy recovery adapter>"` splits at the bar) and `toolkit/util/quantize.py` `get_qtype` resolves it:
torchao's `int8`/`float8`, then the trainer's own backends (uint2..uint8, orbit, orbitvq, convrot, nvfp4), else one
of optimum-quanto's qtypes. Its requirements pin optimum-quanto 0.2.4 and torchao 0.10.0.
"""

from __future__ import annotations

from dataclasses import dataclass

INSTALL = "pip install 'parity[trainer]'"
TAG = "parity_qtype"  # the attribute a quantized model part carries: its qtype (text-embedding caches key on it)
PINS = {"optimum-quanto": "0.2.4", "torchao": "0.10.0"}  # ai-toolkit requirements_base.txt

# optimum-quanto 0.2.4's weight qtypes (optimum/quanto/tensor/qtype.py), each replayed with quanto itself
QUANTO = ("qfloat8", "qfloat8_e4m3fn", "qfloat8_e5m2", "qint8", "qint4", "qint2")
TORCHAO = ("int8", "float8")
OSTRIS = (
    *(f"uint{bits}" for bits in range(2, 9)),
    "orbit2", "orbit3", "orbit4", "orbitvq2", "orbitvq3", "orbitvq4",
    "convrot4", "convrot8", "convrotbitnet", "convrotcomfyw4a4", *(f"convrotint{bits}" for bits in range(2, 9)),
    "nvfp4",
)  # fmt: skip
KNOWN = (*QUANTO, *TORCHAO, *OSTRIS)

# what parity replays, and with which library (the trainer's own, at its pin)
REPLAYED = {
    **{name: "optimum-quanto" for name in QUANTO},
    "int8": "torchao",
    "float8": "torchao",
    # ai-toolkit's own uintx backend, which reproduces torchao 0.10.0's UIntXWeightOnlyConfig: torchao's primitives
    **{f"uint{bits}": "torchao" for bits in range(2, 9)},
}
# the qtypes whose quantization runs torchao's quantize_, which (0.10.0, set_inductor_config) leaves the float32
# matmul precision at "high" for the rest of the trainer's process
SETS_HIGH_PRECISION = ("int8", "float8")


@dataclass(frozen=True)
class QType:
    """A `qtype` as the trainer reads it: the quantization, and an accuracy recovery adapter after a bar."""

    name: str
    adapter: str | None = None

    @classmethod
    def parse(cls, text: str) -> QType:
        """As ModelConfig reads it: `qtype.split('|')` when a bar is in it (no stripping; `unknown` refuses what
        the trainer's split or adapter lookup would fail on)."""
        name, bar, adapter = str(text).partition("|")
        return cls(name, adapter if bar else None)

    def __str__(self) -> str:
        return self.name if self.adapter is None else f"{self.name}|{self.adapter}"


def replayed_text() -> str:
    """'qfloat8, qfloat8_e4m3fn, … (optimum-quanto 0.2.4)', for messages and the README."""
    by_library: dict[str, list[str]] = {}
    for name, library in REPLAYED.items():
        by_library.setdefault(library, []).append(name)
    return "; ".join(f"{', '.join(names)} ({library} {PINS[library]})" for library, names in by_library.items())


ADAPTER_BASES = tuple(f"uint{bits}" for bits in range(2, 8))  # what parity replays an accuracy recovery adapter over


def unknown(text: str, adapter_allowed: bool = True) -> str | None:
    """Why the trainer would not take this qtype (None: it would). Only `qtype` splits an adapter off at a bar
    (ModelConfig); a bar in `qtype_te` reaches get_qtype whole and fails there."""
    qtype = QType.parse(text)
    if qtype.adapter is not None and not adapter_allowed:
        return f"ai-toolkit reads an accuracy recovery adapter from model.qtype only, and fails on {str(qtype)!r}"
    if qtype.adapter is not None and (not qtype.adapter or "|" in qtype.adapter):
        return f"ai-toolkit fails on {str(qtype)!r}: one bar, then the adapter's path or user/repo/file"
    if qtype.name in KNOWN:
        return None
    return f"ai-toolkit knows no qtype {qtype.name!r} (its qtypes: {', '.join(KNOWN)})"


def adapter_source(adapter: str) -> tuple[str, str] | None:
    """(repo id, file name) of an adapter named the trainer's hub way, `user/repo/file.safetensors` (None: a path)."""
    parts = adapter.split("/")
    if len(parts) == 3 and all(parts) and not adapter.startswith(("/", ".", "~")):
        return f"{parts[0]}/{parts[1]}", parts[2]
    return None


def adapter_problem(adapter: str, located: str | None) -> str | None:
    """Why the adapter file is not here (None: it is). parity never downloads."""
    if located:
        return None
    source = adapter_source(adapter)
    if source is None:
        return f"the accuracy recovery adapter {adapter} is not on this machine (give the job's file at that path)"
    repo, name = source
    return (
        f"the accuracy recovery adapter {adapter} is not in the local HF cache (parity never downloads: "
        f"`huggingface-cli download {repo} {name}` on a machine that reaches the hub, or the file's local path in qtype)"
    )


def replay_problem(
    text: str, installed: dict[str, str | None], adapters: dict[str, tuple[str | None, str | None]] | None = None
) -> str | None:
    """Why parity cannot replay this qtype here (None: it can). `installed`: library name -> version (None: absent);
    `adapters`: adapter as written -> (the file found for it or None, why that file cannot be used or None)."""
    qtype = QType.parse(text)
    library = REPLAYED.get(qtype.name)
    if library is None:
        return f"parity does not replay {qtype.name} (it replays {replayed_text()})"
    if qtype.adapter is not None and qtype.name not in ADAPTER_BASES:
        return f"parity replays an accuracy recovery adapter over {', '.join(ADAPTER_BASES)}, not over {qtype.name}"
    version = installed.get(library)
    if version is None:
        return f"{library} {PINS[library]} is not installed ({INSTALL})"
    if version != PINS[library]:
        return f"{library} {version} is installed, the trainer pins {PINS[library]}, and other versions give other bits ({INSTALL})"
    if qtype.adapter is not None:
        located, unusable = (adapters or {}).get(qtype.adapter, (None, None))
        if unusable:
            return f"the accuracy recovery adapter {qtype.adapter}: {unusable}"
        return adapter_problem(qtype.adapter, located)
    return None
