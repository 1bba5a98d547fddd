"""Draw samples the way ai-toolkit's trainer draws its previews, and save them where the case's baseline points.

For building preview suites from the tiny model (the bundled example) and for testing parity itself: the
preview wiring renders each sample, and the image is saved as the trainer saves it (`image.save(path)`, so
PIL's defaults for the file's extension: JPEG quality 75, WebP quality 80).
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from parity.core.errors import CaseRunError
from parity.core.images import OutputEncoding
from parity.facts.case import Case
from parity.models.knobs import Knob, Setting


def unreplayed(wiring) -> list[str]:
    """The preview wiring's settings parity cannot replay, as 'knob: shown' (drawn without them)."""
    return [f"{knob.value}: {setting.shown}" for knob, setting in wiring.settings if not setting.replayable]


def draw_previews(cases: list[Case], engine, force: bool = False, said=None) -> list[Path]:
    """Render every case with its preview wiring and write the baseline file; refuses to overwrite unless forced.
    `said(text)`: told, per case, the trainer's settings the drawing could not replay."""
    written = []
    for case in cases:
        if case.baseline is None:
            raise CaseRunError(f"{case.id} has no baseline path", "add `baseline:` to the sample")
        path = Path(case.baseline)
        if path.exists() and not force:
            raise CaseRunError(f"{path} exists; previews are never overwritten", "pass --force to redraw them")
        _, preview = engine.wirings(case)
        missing = unreplayed(preview)
        if missing and said is not None:
            said(f"{path}: drawn without what parity does not replay here: " + "; ".join(missing))
        raw = engine.render(case, preview.with_setting(Knob.OUTPUT, Setting(OutputEncoding.PNG, "PNG"))).image
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
        Image.fromarray(raw).save(tmp)  # the trainer's own call: format and quality from PIL's defaults
        os.replace(tmp, path)
        written.append(path)
    return written
