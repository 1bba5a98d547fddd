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


def draw_previews(cases: list[Case], engine, force: bool = False) -> list[Path]:
    """Render every case with its preview wiring and write the baseline file; refuses to overwrite unless forced."""
    written = []
    for case in cases:
        if case.baseline is None:
            raise CaseRunError(f"{case.id} has no baseline path", "add `baseline:` to the sample")
        path = Path(case.baseline)
        if path.exists() and not force:
            raise CaseRunError(f"{path} exists; previews are never overwritten", "pass --force to redraw them")
        _, preview = engine.wirings(case)
        raw = engine.render(case, preview.with_setting(Knob.OUTPUT, Setting(OutputEncoding.PNG, "PNG"))).image
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
        Image.fromarray(raw).save(tmp)  # the trainer's own call: format and quality from PIL's defaults
        os.replace(tmp, path)
        written.append(path)
    return written
