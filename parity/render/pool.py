"""A loaded base model, and the pool that keeps base models loaded between the sessions of one process."""

from __future__ import annotations

from dataclasses import dataclass, field

from parity.core import offload as offloading
from parity.models.knobs import LoraMethod
from parity.render.checkpoint import CheckpointWeights
from parity.render.lora import LoraState
from parity.render.pristine import Keep, PristineMissing
from parity.render.quantize import Quantization


@dataclass
class LoadedModel:
    """A loaded base model with its LoRA state and its exact caches (text embeddings, control-image latents)."""

    key: tuple[str, ...]  # (model id, where it was loaded from, device, dtype, offload mode asked for)
    pipe: object
    lora: LoraState
    renderer: object  # the model's Renderer on this pipeline
    offload: offloading.Choice = field(default_factory=lambda: offloading.Choice(offloading.DEFAULT, "asked for"))
    checkpoint: CheckpointWeights | None = None  # the transformer's files, stamped at the load (None: built in memory)
    quant: Quantization | None = None  # the trainer's quantized parts, swapped in where a wiring replays them


class ModelPool:
    """Base models a process keeps loaded between its sessions (a test suite, a notebook), off by default.

    An engine that closes hands its model back with the LoRA removed and the loaded modules in place of quantized ones
    (the weights restored to the loaded ones);
    the next engine that asks for the same folder on the same device takes it as it would come from disk, with
    the caches it has gathered: those hold embeddings and latents of the text encoder and the VAE, which no LoRA
    touches. A model that failed (out of memory) is dropped, never handed on.
    """

    def __init__(self) -> None:
        self._models: dict[tuple[str, ...], LoadedModel] = {}

    def take(self, key: tuple[str, ...]) -> LoadedModel | None:
        return self._models.get(key)

    def add(self, model: LoadedModel) -> None:
        """A model just loaded: later engines share it (one process renders one case at a time)."""
        self._models[model.key] = model

    def keep(self, model: LoadedModel) -> bool:
        """A model an engine is done with: its LoRA removed, as a later engine expects it. One whose LoRA cannot
        be removed exactly (fused without a kept copy, a read-back that failed) or whose removal was cut short
        is dropped instead, never handed on half-restored. Returns whether it was kept."""
        try:
            model.lora.apply(LoraMethod.NONE, None, None)
            if model.quant is not None:
                model.quant.apply("none", "none", before=lambda: None)  # the loaded modules back in place
        except PristineMissing:
            self.drop(model.key)
            return False
        except BaseException:
            self.drop(model.key)
            raise
        model.lora.fused.keep = Keep()  # the next engine's plan decides again
        self._models[model.key] = model
        return True

    def drop(self, key: tuple[str, ...]) -> None:
        self._models.pop(key, None)


POOL: ModelPool | None = None


def share_models(enabled: bool = True) -> None:
    """Keep loaded base models between the sessions of this process (see ModelPool); `False` drops them."""
    global POOL
    POOL = ModelPool() if enabled else None
