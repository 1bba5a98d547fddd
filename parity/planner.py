"""Plan a run: cases grouped by base model, LoRA and scale, so each model loads once and each scale fuses once;
and shards of that plan for CI matrices (`--parity-shard i/n`). Pure."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from .resolve import Case

T = TypeVar("T")


def group_key(case: Case) -> tuple:
    lora = case.loras[0].path if case.loras else ""
    scale = case.effective.lora_scale if case.effective.lora_scale is not None else float("-inf")
    return (case.base_model, case.base_dir, lora, scale)


def plan(items: Sequence[T], case_of: Callable[[T], Case] = lambda c: c) -> list[T]:
    """Items ordered so equal groups are contiguous; groups keep the order they first appear in, and items keep
    their order inside a group (a stable grouping, not a sort by value)."""
    first: dict[tuple, int] = {}
    for i, item in enumerate(items):
        first.setdefault(group_key(case_of(item)), i)
    return sorted(items, key=lambda item: first[group_key(case_of(item))])


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' (1-based) -> (i, n); ValueError with the accepted form otherwise."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"shard must look like i/n (e.g. 1/4), not {text!r}") from None
    if not 1 <= index <= count:
        raise ValueError(f"shard {text!r}: i must be between 1 and n")
    return index, count


def shard(items: Sequence[T], index: int, count: int, case_of: Callable[[T], Case] = lambda c: c) -> list[T]:
    """The items of shard `index` of `count`: whole groups, dealt to the least-loaded shard, so no model or scale
    is split across CI jobs unless a group is all there is."""
    groups: dict[tuple, list[T]] = {}
    for item in plan(items, case_of):
        groups.setdefault(group_key(case_of(item)), []).append(item)
    loads = [0] * count
    mine: list[T] = []
    for members in sorted(groups.values(), key=len, reverse=True):
        target = loads.index(min(loads))
        loads[target] += len(members)
        if target == index - 1:
            mine.extend(members)
    return plan(mine, case_of)
