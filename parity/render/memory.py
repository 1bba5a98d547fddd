"""The run's memory policy, from its plan: how the untouched LoRA-targeted weights are kept on each model (a copy on
the GPU, in pinned host memory, read back from the checkpoint, or nothing), and which offload mode `auto` picks.

Pure bookkeeping over the planned cases and the device's budget; the engine asks, the LoRA state is handed the
answer (parity/render/pristine.Keep).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from parity.core import offload as offloading
from parity.facts.case import Case
from parity.models import get_model
from parity.render.checkpoint import CheckpointWeights
from parity.render.loading import device_budget, weight_bytes
from parity.render.pristine import Keep, PristineMissing

UNKEPT = (
    "no copy of the LoRA-targeted weights is kept: every case of this run on this model applies the same LoRA at the "
    "same scale, so nothing is ever restored"
)

# At most this many planned restores read the LoRA-targeted weights back from the checkpoint when a copy does not
# fit on the GPU; more keep the copy in pinned host memory. A judgement between two measured costs at full size on
# the H200 (40.8 GB of targeted weights): the pinned copy costs 36.8 s once and ~0.95 s per restore
# (h200-2026-12-01b); a read-back 1.6 s per restore with the checkpoint in the page cache (benchmarks/read_back.py,
# h200-2026-12-01e), so ~57 restores before the copy pays; from a cold disk (1.4 GB/s, benchmarks/disk_load.py)
# ~29 s each, so the copy pays from the second. This process cannot tell which it will get, and the first read
# leaves the files in the page cache where memory allows: 4 cost ~7 s warm, at most ~2 minutes cold.
READ_BACK_RESTORES = 4


class MemoryPlan:
    """The planned cases, and what they decide about memory on each (model id, base) the run loads."""

    def __init__(self, device: str, base_of: Callable[[Case], tuple[str, str]], pooled: Callable[[], bool]):
        self.device = device
        self._base_of = base_of  # a case's (base model, folder), as the engine resolves it
        self._pooled = pooled  # whether models are handed back to a pool when the engine closes (one more restore)
        self.cases: list[Case] = []
        self.states: list[tuple] | None = None  # (model id, base, fused LoRA state) per planned case; None: unknown
        self.asking: Case | None = None  # the case whose facts or render loads the model now
        self.read_back_ok = True  # False once reading weights back from a checkpoint failed in this run

    def expect(self, cases: list[Case], diagnose: bool = False) -> None:
        """The run's plan, in order. A model on which every planned case fuses the same LoRA at the same scale
        never needs its untouched weights back, so nothing is kept; `--diagnose` switches LoRA states, so its
        restores are unknown."""
        self.cases = list(cases)
        self.states = None if diagnose else [
            (c.model, self._base_of(c), (c.loras[0].path, c.served_scale) if c.loras else None) for c in cases
        ]

    def missed(self, missing: PristineMissing) -> str:
        """A restore found no untouched weights (the engine loads the model again): what to keep from now on, and
        the note that says so."""
        if missing.reason:  # reading the weights back from the checkpoint failed: copies from now on
            self.read_back_ok = False
            again = "the model was loaded again (same bits)" if missing.same_bits else (
                "the model was loaded again from the files as they are now: this case and the later ones render "
                "that checkpoint, the earlier ones the one loaded before"
            )
            return f"{missing.reason}: {again}"
        self.states = None  # raised before any weight changed: the plan was not this run's, copies from now on
        return (
            "this case needs another LoRA state than the plan foresaw, and no copy of the untouched weights was kept: "
            "the model was loaded again (same bits)"
        )

    def restores(self, model_id: str, base: tuple[str, str]) -> int | None:
        """How often the plan restores the untouched weights on this model (its cases come grouped by LoRA state:
        one restore per state after the first, and one when a pooled model is handed back); None: unknown."""
        if self.states is None:
            return None
        states = len({state for m, b, state in self.states if (m, b) == (model_id, base)})
        return max(0, states - 1) + (1 if self._pooled() else 0)

    def keep(self, model_id: str, base: tuple[str, str], checkpoint: CheckpointWeights | None) -> Keep:
        """How the untouched weights are kept on this model for its restores."""
        restores = self.restores(model_id, base)
        allowed = self.read_back_ok and restores is not None and restores <= READ_BACK_RESTORES
        return Keep(
            copy=restores is None or restores > 0,
            room=self.copy_room(model_id, base),
            read_back=checkpoint if allowed else None,
            restores=restores if allowed else 0,
        )

    def cases_on(self, model_id: str, base: tuple[str, str]) -> list[Case]:
        """The planned cases on this model that will render (a refused one never does), and the case asking now
        (calibrate and draw-previews plan nothing)."""
        asking = [self.asking] if self.asking is not None else []
        return [c for c in (*self.cases, *asking) if (c.model, self._base_of(c)) == (model_id, base) and not c.refused]

    def largest_case(self, model_id: str, cases: list[Case]) -> tuple[int, str]:
        """Of `cases`, the one with the most activations: (estimated bytes, the case in words)."""
        activations = get_model(model_id).activation_bytes
        sized = [(activations(c.effective.width, c.effective.height, len(c.effective.control_images)), c) for c in cases]
        most, largest = max(sized, key=lambda item: item[0], default=(0, None))
        if largest is None:
            return 0, "none planned"
        eff = largest.effective
        return most, f"{largest.name}, {eff.width}x{eff.height}, {len(eff.control_images)} control image(s)"

    def copy_room(self, model_id: str, base: tuple[str, str]) -> Callable[[], int] | None:
        """What the weight copy may take on the GPU: the room left after twice the largest planned case's estimated
        activations (offload.reserve_for). Measured at full size under an 80 GB cap: with a copy split onto the GPU
        that left ~1 GB free at peak, the first case rendered other bits than the server's (three later cases at the
        same headroom did not); with the copy in host memory, or 36 GB left free, every case matched
        (benchmarks/results/h200-2026-12-01b). The working explanation is that libraries pick kernels by the
        workspace they can get."""
        if not self.device.startswith("cuda"):
            return None

        def room() -> int:
            activations = self.largest_case(model_id, self.cases_on(model_id, base))[0]
            return max(0, device_budget(self.device) - offloading.reserve_for(activations))

        return room

    def offload(self, asked: str, pipe, model_id: str, base: tuple[str, str], cfg_parallel: bool) -> offloading.Choice:
        """The offload mode to run in; `auto` sizes the model and the largest planned case on it against the
        GPU's room."""
        if asked != "auto" or not self.device.startswith("cuda"):
            return offloading.choose(asked, self.device)
        if cfg_parallel:
            return offloading.Choice("none", "auto with CFG-parallel, which runs with offload none only")
        cases = self.cases_on(model_id, base)
        most, named = self.largest_case(model_id, cases)
        weights = weight_bytes(pipe)
        loras = [os.path.getsize(lora.path) for c in cases for lora in c.loras if os.path.isfile(lora.path)]
        weights["transformer"] = weights.get("transformer", 0) + max(loras, default=0)  # the adapter rides with it
        need = offloading.Need(weights, most, named)
        return offloading.choose(asked, self.device, need, device_budget(self.device))
