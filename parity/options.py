"""Run options shared by the CLI (`--out`) and the pytest plugin (`--parity-out`, ini `parity_out`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

DEVICE_PATTERN = re.compile(r"^(cpu|cuda(:\d+)?)$")


@dataclass(frozen=True)
class Option:
    name: str
    help: str
    default: object
    flag: bool = False
    metavar: str | None = None


OPTIONS: tuple[Option, ...] = (
    Option("out", "folder for results.json, index.html and the case images", "reports/latest", metavar="DIR"),
    Option(
        "device",
        "cpu (float32) or cuda[:N] (bf16, as the reference server runs)",
        "cpu",
        metavar="DEVICE",
    ),
    Option(
        "cfg-device",
        "a second GPU for CFG-parallel: each step's unconditional transformer pass runs there at the same time as "
        "the conditional one, on a copy of the transformer; same output bits, about half the denoising time "
        "(cuda = the GPU after --device's; with xdist -n N and --device cuda, worker i takes GPUs 2i and 2i+1)",
        None,
        metavar="DEVICE",
    ),
    Option(
        "offload",
        "the reference server's offload mode for every case, over the case files' `offload:`: none, model, "
        "sequential or auto (none when the model fits in the GPU's memory, else model, else sequential); the "
        "pixels follow the mode, as the server's do",
        None,
        metavar="MODE",
    ),
    Option(
        "base-model",
        "run every case on this base model instead of the case file's: tiny, a local diffusers folder, or an HF id "
        "already in the local cache",
        None,
        metavar="X",
    ),
    Option(
        "diagnose",
        "for each failing case, re-render with one knob at a time switched to the trainer's value and name the "
        "knobs that explain the mismatch",
        False,
        flag=True,
    ),
    Option(
        "self-contained",
        "write index.html as one file with every image embedded (to attach or mail it)",
        False,
        flag=True,
    ),
    Option(
        "shard",
        "run only shard i of n (1-based) for CI matrices, balanced by estimated denoising work; a base model is "
        "split across shards only when there are fewer models than shards; join the shards' results with "
        "`parity report merge`",
        None,
        metavar="i/n",
    ),
    Option(
        "update",
        "rewrite pinned baselines from this run's outputs; the cases fail so that a person reviews the new images",
        False,
        flag=True,
    ),
)


def check_device(value: str) -> str:
    if not DEVICE_PATTERN.match(value):
        raise ValueError(f"device must be cpu, cuda or cuda:N, not {value!r}")
    return value


def check_offload(value: str | None) -> str | None:
    from parity.core.offload import check

    return None if value is None else check(value)


def assign_devices(device: str, cfg_device: str | None, worker: int | None = None) -> tuple[str, str | None]:
    """The main and the CFG-parallel device of one process (ValueError with the fix on a bad pair).

    A plain `cuda` main device is GPU 0, or GPU i for xdist worker gw<i> (GPUs 2i and 2i+1 when a CFG device is
    asked for too); a plain `cuda` CFG device is the GPU after the main one. A CPU run may only name `cpu` (it
    runs the same machinery on the CPU).
    """
    check_device(device)
    if cfg_device is not None:
        check_device(cfg_device)
        if (device == "cpu") != (cfg_device == "cpu"):
            raise ValueError(f"device {device!r} and CFG device {cfg_device!r} must both be GPUs (or both cpu)")
    if device == "cpu" or (cfg_device is None and worker is None):
        return device, cfg_device
    stride = 2 if cfg_device == "cuda" else 1
    main = int(device.partition(":")[2] or (stride * worker if worker is not None else 0))
    if cfg_device is None:
        return f"cuda:{main}", None
    other = main + 1 if cfg_device == "cuda" else int(cfg_device.partition(":")[2] or 0)
    if other == main:
        raise ValueError(f"CFG device {cfg_device!r} is the main device cuda:{main}: name a second GPU")
    return f"cuda:{main}", f"cuda:{other}"


def add_cli_options(parser, exclude: tuple[str, ...] = ()) -> None:
    """argparse: --out, --device, --base-model, --diagnose, --update (minus `exclude`)."""
    for opt in OPTIONS:
        if opt.name in exclude:
            continue
        if opt.flag:
            parser.add_argument(f"--{opt.name}", action="store_true", help=opt.help)
        else:
            parser.add_argument(f"--{opt.name}", default=opt.default, metavar=opt.metavar, help=opt.help)


def add_pytest_options(parser) -> None:
    """pytest: --parity-<name> with an ini twin parity_<name>, plus --parity-cases / parity_cases."""
    group = parser.getgroup("parity", "parity: compare reference inference with stored images")
    group.addoption(
        "--parity-cases",
        action="append",
        default=None,
        metavar="PATH",
        help="case file or folder whose YAML files are parity cases (repeatable; ini: parity_cases). Without one, "
        "parity collects nothing",
    )
    parser.addini(
        "parity_cases", "folders or files holding parity case files (none: parity stays out of the run)", type="args", default=[]
    )
    for opt in OPTIONS:
        ini = "parity_" + opt.name.replace("-", "_")
        if opt.flag:
            group.addoption(f"--parity-{opt.name}", action="store_true", default=None, help=f"{opt.help} (ini: {ini})")
            parser.addini(ini, opt.help, type="bool", default=bool(opt.default))
        else:
            group.addoption(f"--parity-{opt.name}", default=None, metavar=opt.metavar, help=f"{opt.help} (ini: {ini})")
            parser.addini(ini, opt.help, default=opt.default)


def option_value(config, name: str) -> object:
    """A plugin option: the command line wins over the ini file, which wins over the default."""
    dest = "parity_" + name.replace("-", "_")
    value = config.getoption(dest)
    if value is not None:
        return value
    return config.getini(dest)
