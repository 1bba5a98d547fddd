"""Baseline policy: one set per environment class, the nearest set of the family as a fallback, nothing written
unless the rules say so."""

import numpy as np
import pytest

from parity.core.envclass import parse
from parity.core.errors import CaseRunError
from parity.core.thresholds import BaselineKind
from parity.judge.baselines import BaselineAction, choose, missing_set_message, set_path, settle

AVX2, AVX512, DEFAULT = parse("cpu-float32-avx2"), parse("cpu-float32-avx512"), parse("cpu-float32-default")
H200, L40S = parse("cuda-bfloat16-sm90"), parse("cuda-bfloat16-sm89")
OUT = np.zeros((8, 8, 3), dtype=np.uint8)


def case_with(tmp_path, kind=BaselineKind.PINNED, name="b.png", named=False):
    from parity.facts.case import Case, Settings

    settings = Settings("p", "", 64, 64, 1, 2, 4.0, None, ())
    return Case(
        id="s::0", suite="s", suite_file="s.yaml", index=0, name="0", model="m", base_model="tiny", base_dir=".",
        trigger_word=None, loras=(), requested=settings, effective=settings, notes=(), baseline=str(tmp_path / name),
        baseline_kind=kind, thresholds=None, do_cfg_norm=False, baseline_named=named,
        baseline_key="sample.samples[0].baseline" if named else "",
    )


def pin(tmp_path, env, name="b.png", content=b"png"):
    path = tmp_path / env.key / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_a_new_suite_gets_this_classs_set_written_and_fails(tmp_path):
    case = case_with(tmp_path)
    choice = choose(case, AVX2)
    assert choice.exact and not choice.missing_set and choice.path == str(tmp_path / "cpu-float32-avx2" / "b.png")
    decision = settle(case, choice, OUT, update=False, environment={"environment_class": "cpu-float32-avx2"})
    assert decision.action is BaselineAction.WRITTEN and (tmp_path / "cpu-float32-avx2" / "b.png").is_file()
    assert (tmp_path / "cpu-float32-avx2" / "b.png.env.json").is_file()
    assert not (tmp_path / "b.png").exists()


def test_the_own_set_wins_and_is_never_rewritten_unless_asked(tmp_path):
    own, other = pin(tmp_path, AVX2, content=b"old"), pin(tmp_path, DEFAULT)
    case = case_with(tmp_path)
    choice = choose(case, AVX2)
    assert choice.exact and choice.path == str(own) and set(choice.others) == {AVX2, DEFAULT}
    assert settle(case, choice, OUT, update=False).action is BaselineAction.COMPARED
    assert own.read_bytes() == b"old"
    assert settle(case, choice, OUT, update=True).action is BaselineAction.REWRITTEN
    assert own.read_bytes() != b"old" and other.read_bytes() == b"png"


def test_a_class_without_a_set_falls_back_to_the_nearest_of_its_family(tmp_path):
    pin(tmp_path, DEFAULT)
    avx2 = pin(tmp_path, AVX2)
    pin(tmp_path, H200)
    choice = choose(case_with(tmp_path), AVX512)
    assert choice.fallback and choice.set_class == AVX2 and choice.path == str(avx2)
    assert "nearest" in choice.describe() and "cpu-float32-avx512" in choice.describe()
    gpu = choose(case_with(tmp_path), L40S)
    assert gpu.fallback and gpu.set_class == H200


def test_no_set_in_the_family_writes_nothing_and_says_how_to_make_one(tmp_path):
    pin(tmp_path, AVX2)
    case = case_with(tmp_path)
    choice = choose(case, H200)
    assert choice.missing_set and choice.others == (AVX2,)
    assert settle(case, choice, OUT, update=False).action is BaselineAction.NO_SET
    assert not (tmp_path / H200.key).exists()
    message = missing_set_message(choice, str(tmp_path))
    assert "no baseline set for this environment (cuda-bfloat16-sm90)" in message and "cpu-float32-avx2" in message
    assert "--update" in message and "--parity-update" in message
    decision = settle(case, choice, OUT, update=True)  # asked for: this class's set is written under its key
    assert decision.action is BaselineAction.WRITTEN and decision.path == set_path(case.baseline, H200)


def test_a_new_case_in_an_existing_set_is_written_not_borrowed(tmp_path):
    pin(tmp_path, AVX2, name="other.png")
    pin(tmp_path, DEFAULT)  # the neighbour has this case, but this class has a set of its own
    choice = choose(case_with(tmp_path), AVX2)
    assert choice.exact and choice.path == str(tmp_path / AVX2.key / "b.png")


def test_the_unkeyed_layout_is_still_read_within_its_family(tmp_path):
    (tmp_path / "b.png").write_bytes(b"png")
    (tmp_path / "b.png.env.json").write_text('{"device": "cpu", "dtype": "float32"}')
    choice = choose(case_with(tmp_path), AVX2)
    assert choice.fallback and choice.path == str(tmp_path / "b.png") and choice.set_class == parse("cpu-float32-unknown")
    assert choose(case_with(tmp_path), H200).missing_set


def test_previews_are_never_written(tmp_path):
    case = case_with(tmp_path, BaselineKind.PREVIEW, "p.jpg")
    with pytest.raises(CaseRunError, match="training preview not found"):
        settle(case, choose(case, AVX2), OUT, update=True)
    assert not (tmp_path / "p.jpg").exists()
    (tmp_path / "p.jpg").write_bytes(b"jpeg")
    choice = choose(case, H200)
    assert choice.exact and choice.set_class is None and choice.path == str(tmp_path / "p.jpg")
    assert settle(case, choice, OUT, update=True).action is BaselineAction.COMPARED
    assert (tmp_path / "p.jpg").read_bytes() == b"jpeg"


def test_pinned_baseline_must_be_png(tmp_path):
    case = case_with(tmp_path, name="b.jpg")
    with pytest.raises(CaseRunError, match="written as PNG"):
        settle(case, choose(case, AVX2), OUT, update=False)


def test_a_baseline_path_that_is_a_folder_is_refused_not_written(tmp_path):
    (tmp_path / AVX2.key / "b.png").mkdir(parents=True)
    case = case_with(tmp_path)
    with pytest.raises(CaseRunError, match="is a folder"):
        settle(case, choose(case, AVX2), OUT, update=False)


def test_no_temporary_files_are_left(tmp_path):
    case = case_with(tmp_path)
    settle(case, choose(case, AVX2), OUT, update=False)
    assert sorted(p.name for p in (tmp_path / AVX2.key).iterdir()) == ["b.png"]


# A sample's own `baseline:` is the file the user named: compared as it is, written only with --update, and a
# folder, a missing file or an unreadable one is the case's error naming that path, never a redirection into the
# class sets (issue: a folder named by `baseline:` got a new set file written beside it, "baseline was missing").
def test_a_named_baseline_that_is_a_folder_is_an_error_naming_it_and_nothing_is_written(tmp_path):
    (tmp_path / "ref").mkdir()
    case = case_with(tmp_path, name="ref", named=True)
    for update in (False, True):
        with pytest.raises(CaseRunError, match=f"the baseline path {tmp_path / 'ref'} of s::0 is a folder"):
            settle(case, choose(case, AVX2), OUT, update=update)
    assert [p.name for p in tmp_path.iterdir()] == ["ref"] and not list((tmp_path / "ref").iterdir())


def test_a_named_baseline_that_is_missing_is_an_error_and_update_writes_it_there(tmp_path):
    case = case_with(tmp_path, name="ref.png", named=True)
    with pytest.raises(CaseRunError, match=r"ref.png that s::0 names \(sample.samples\[0\].baseline\) does not exist"):
        settle(case, choose(case, AVX2), OUT, update=False)
    assert not list(tmp_path.iterdir())
    decision = settle(case, choose(case, AVX2), OUT, update=True)
    assert decision.action is BaselineAction.WRITTEN and decision.path == str(tmp_path / "ref.png")
    assert [p.name for p in tmp_path.iterdir()] == ["ref.png"]  # there, not in a class set


def test_a_named_baseline_is_compared_as_it_is_even_beside_class_sets(tmp_path):
    (tmp_path / "ref.png").write_bytes(b"the user's")
    pin(tmp_path, AVX2, "ref.png", b"a set's")
    case = case_with(tmp_path, name="ref.png", named=True)
    choice = choose(case, AVX2)
    assert choice.named and choice.path == str(tmp_path / "ref.png") and "the file the case names" in choice.describe()
    assert settle(case, choice, OUT, update=False).action is BaselineAction.COMPARED
    assert (tmp_path / "ref.png").read_bytes() == b"the user's"
