import dataclasses

import numpy as np
import pytest

from parity.baselines import settle
from parity.errors import CaseRunError
from parity.results import BaselineAction
from parity.thresholds import BaselineKind


def case_with(tmp_path, kind=BaselineKind.PINNED, name="b.png"):
    from parity.resolve import Case, Settings

    settings = Settings("p", "", 64, 64, 1, 2, 4.0, None, ())
    return Case(
        id="s::0", suite="s", suite_file="s.yaml", index=0, name="0", model="m", base_model="tiny", base_dir=".",
        trigger_word=None, loras=(), requested=settings, effective=settings, notes=(), baseline=str(tmp_path / name),
        baseline_kind=kind, thresholds=None, do_cfg_norm=False,
    )


OUT = np.zeros((8, 8, 3), dtype=np.uint8)


def test_missing_pinned_baseline_is_written(tmp_path):
    decision = settle(case_with(tmp_path), OUT, update=False)
    assert decision.action is BaselineAction.WRITTEN and (tmp_path / "b.png").is_file()


def test_existing_baseline_is_never_rewritten_unless_asked(tmp_path):
    path = tmp_path / "b.png"
    path.write_bytes(b"old")
    assert settle(case_with(tmp_path), OUT, update=False).action is BaselineAction.COMPARED
    assert path.read_bytes() == b"old"
    assert settle(case_with(tmp_path), OUT, update=True).action is BaselineAction.REWRITTEN
    assert path.read_bytes() != b"old"


def test_previews_are_never_written(tmp_path):
    case = case_with(tmp_path, BaselineKind.PREVIEW, "p.jpg")
    with pytest.raises(CaseRunError, match="training preview not found"):
        settle(case, OUT, update=True)
    assert not (tmp_path / "p.jpg").exists()
    (tmp_path / "p.jpg").write_bytes(b"jpeg")
    assert settle(case, OUT, update=True).action is BaselineAction.COMPARED
    assert (tmp_path / "p.jpg").read_bytes() == b"jpeg"


def test_pinned_baseline_must_be_png(tmp_path):
    with pytest.raises(CaseRunError, match="written as PNG"):
        settle(case_with(tmp_path, name="b.jpg"), OUT, update=False)


def test_no_temporary_files_are_left(tmp_path):
    settle(case_with(tmp_path), OUT, update=False)
    assert [p.name for p in tmp_path.iterdir()] == ["b.png"]
    assert dataclasses.is_dataclass(case_with(tmp_path))
