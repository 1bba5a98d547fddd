"""Plan a run: cases grouped by model (id, base model, offload mode), LoRA and scale, so each model loads once and
each scale is applied once;
and cost-balanced shards of that plan for CI matrices (`--parity-shard i/n`). Pure."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from parity.facts.case import Case

T = TypeVar("T")


def model_key(case: Case) -> tuple:
    """What one model load serves: the model id (its pipeline and wiring), the base model and the offload mode."""
    return (case.model, case.base_model, case.base_dir, case.offload)


def group_key(case: Case) -> tuple:
    lora = case.loras[0].path if case.loras else ""
    scale = case.effective.lora_scale if case.effective.lora_scale is not None else float("-inf")
    return (*model_key(case), lora, scale)


def plan(items: Sequence[T], case_of: Callable[[T], Case] = lambda c: c) -> list[T]:
    """Items ordered so equal groups are contiguous; groups keep the order they first appear in, and items keep
    their order inside a group (a stable grouping, not a sort by value)."""
    first: dict[tuple, int] = {}
    for i, item in enumerate(items):
        first.setdefault(group_key(case_of(item)), i)
    return sorted(items, key=lambda item: first[group_key(case_of(item))])


def schedule(
    items: Sequence[T], this_shard: tuple[int, int] | None = None, case_of: Callable[[T], Case] = lambda c: c
) -> tuple[list[T], list[T]]:
    """What a run renders and in which order: the items planned (each model, LoRA and scale contiguous), then cut
    to `this_shard` (i, n) when given. Returns (kept, dropped); the CLI and the pytest plugin both call this."""
    planned = plan(items, case_of)
    if this_shard is None:
        return planned, []
    keep = set(map(id, shard(planned, *this_shard, case_of=case_of)))
    return [item for item in planned if id(item) in keep], [item for item in planned if id(item) not in keep]


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' (1-based) -> (i, n); ValueError with the accepted form otherwise."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"shard must look like i/n (e.g. 1/4), not {text!r}") from None
    if not 1 <= index <= count:
        raise ValueError(f"shard {text!r}: i must be between 1 and n")
    return index, count


CONTROL_TOKENS = (1024 // 16) ** 2  # the pipeline resizes every control image to ~1 MP for the VAE: ~4096 tokens


def estimated_cost(case: Case) -> float:
    """Relative denoising work of a case: transformer tokens (output + ~4096 per control image) x steps x passes
    per step (2 with CFG). Needs no model and no image: the pipeline fixes the control images' token count."""
    eff = case.effective
    tokens = (eff.width // 16) * (eff.height // 16) + CONTROL_TOKENS * len(eff.control_images)
    return float(tokens * eff.steps * (2 if eff.guidance_scale > 1 else 1))


def shard(
    items: Sequence[T],
    index: int,
    count: int,
    case_of: Callable[[T], Case] = lambda c: c,
    cost_of: Callable[[Case], float] = estimated_cost,
) -> list[T]:
    """The items of shard `index` of `count`, balanced by estimated cost; deterministic, so every CI job computes
    the same split.

    A base model is the expensive thing to repeat (a load per shard), so with at least as many base models as
    shards each model's cases stay in one shard (whole models dealt largest first to the least-loaded shard).
    With fewer models than shards, each model gets shards in proportion to its cost and its planned order
    (LoRA/scale groups contiguous) is cut into runs of about equal cost, one per shard, so a group is split only
    where a run ends; a suite of one LoRA at one scale (a training run's previews) is split evenly, at the price
    of one fuse per shard.
    """
    models: dict[tuple, list[T]] = {}
    for item in plan(items, case_of):
        case = case_of(item)
        models.setdefault(model_key(case), []).append(item)
    cost = {id(item): cost_of(case_of(item)) for members in models.values() for item in members}
    bins: list[list[T]] = [[] for _ in range(count)]
    if len(models) >= count:
        loads = [0.0] * count
        for members in sorted(models.values(), key=lambda m: -sum(cost[id(i)] for i in m)):
            target = loads.index(min(loads))
            loads[target] += sum(cost[id(i)] for i in members)
            bins[target].extend(members)
    else:
        first = 0
        shares = _shares([sum(cost[id(i)] for i in members) for members in models.values()], count)
        for members, share in zip(models.values(), shares):
            _deal(members, bins[first : first + share], cost, case_of)
            first += share
    return plan(bins[index - 1], case_of)


def _shares(costs: list[float], count: int) -> list[int]:
    """Shards per model: at least one each, the rest by largest remainder of cost share (len(costs) <= count)."""
    total = sum(costs) or 1.0
    exact = [count * c / total for c in costs]
    shares = [max(1, int(e)) for e in exact]
    while sum(shares) > count:  # only when models were raised to one shard; take back from those above one
        shares[max((i for i in range(len(shares)) if shares[i] > 1), key=lambda i: shares[i] - exact[i])] -= 1
    while sum(shares) < count:
        shares[max(range(len(shares)), key=lambda i: exact[i] - shares[i])] += 1
    return shares


def _deal(members: list[T], bins: list[list[T]], cost: dict[int, float], case_of: Callable[[T], Case]) -> None:
    """Cut the planned order into consecutive runs of about equal cost, one per bin (each bin gets at least one
    case while cases last): groups stay contiguous, so a group is split at most where a run ends."""
    remaining = sum(cost[id(i)] for i in members)
    position = 0
    for number, bin_ in enumerate(bins):
        left = len(bins) - number
        target = remaining / left
        load = 0.0
        while position < len(members):
            item = members[position]
            if bin_:
                over = load + cost[id(item)] / 2 - target  # > 0: this case fits the next run better
                at_group_edge = group_key(case_of(item)) != group_key(case_of(bin_[-1]))
                if len(members) - position < left or (left > 1 and (over > 0 or (over == 0 and at_group_edge))):
                    break  # leave a case for each later bin; or end the run (on an exact tie, where a group ends)
            bin_.append(members[position])
            load += cost[id(item)]
            position += 1
        remaining -= load
