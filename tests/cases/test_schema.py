"""The case-file loader: every problem names file, line, field, value and a fix."""

import pytest

from parity.cases.schema import SampleBlock, SuiteFile, load_suite
from parity.core.errors import CaseFileError


def problems_of(write_case, text):
    with pytest.raises(CaseFileError) as info:
        load_suite(write_case(text))
    return info.value.problems


def test_minimal_file_takes_ai_toolkit_defaults(write_case):
    loaded = load_suite(write_case("sample:\n  prompts: [a]\n"))
    assert loaded.spec.model == "qwen_image_edit_plus_2511"
    assert loaded.spec.base_model == "tiny"
    s = loaded.spec.sample
    assert (s.width, s.height, s.seed, s.walk_seed, s.guidance_scale, s.sample_steps, s.neg) == (512, 512, 0, False, 7.0, 20, False)
    assert (s.sampler, s.format, s.do_cfg_norm, s.network_multiplier) == ("ddpm", "jpg", False, 1.0)


def test_unknown_key_suggests_the_close_one(write_case):
    (p,) = problems_of(write_case, "sample:\n  sample_step: 4\n  prompts: [a]\n")
    assert p.field == "sample.sample_step"
    assert "did you mean 'sample_steps'" in p.message
    assert p.line == 2
    assert "sample_steps" in p.fix


def test_wrong_type_and_range(write_case):
    problems = problems_of(
        write_case,
        """
        sample:
          width: "wide"
          sample_steps: -3
          walk_seed: "yes"
          guidance_scale: .nan
          prompts: [a]
        """,
    )
    by_field = {p.field: p for p in problems}
    assert "expected a whole number" in by_field["sample.width"].message
    assert "less than 1" in by_field["sample.sample_steps"].message  # the trainer cannot draw 0 steps
    assert by_field["sample.sample_steps"].value == -3
    assert "true or false" in by_field["sample.walk_seed"].message
    assert "finite" in by_field["sample.guidance_scale"].message
    assert all(p.fix for p in problems)


def test_missing_required_block(write_case):
    (p,) = problems_of(write_case, "model: qwen_image_edit_plus_2511\n")
    assert p.field == "sample" and "missing" in p.message


def test_unknown_model_choice(write_case):
    (p,) = problems_of(write_case, "model: qwen_image_edit_plus_2512\nsample: {prompts: [a]}\n")
    assert "did you mean 'qwen_image_edit_plus_2511'" in p.message


def test_broken_yaml_gives_the_line(write_case):
    (p,) = problems_of(write_case, "sample:\n  prompts: [a\n  width: 3\n")
    assert p.field == "(yaml)" and p.line is not None and "not valid YAML" in p.message


def test_not_a_mapping(write_case):
    (p,) = problems_of(write_case, "- just\n- a list\n")
    assert "expected a mapping" in p.message


def test_numeric_text_multiplier_is_accepted_like_ai_toolkit(write_case):
    loaded = load_suite(write_case("sample:\n  network_multiplier: '0.75'\n  prompts: [a]\n"))
    assert loaded.spec.sample.network_multiplier == 0.75


def test_neg_accepts_text_or_false_only(write_case):
    (p,) = problems_of(write_case, "sample:\n  neg: true\n  prompts: [a]\n")
    assert p.field == "sample.neg"


def test_every_field_has_help():
    from dataclasses import fields

    for cls in (SuiteFile, SampleBlock):
        for f in fields(cls):
            assert len(f.metadata["help"]) > 10, f.name


def test_missing_file(tmp_path):
    with pytest.raises(CaseFileError, match="no such case file"):
        load_suite(tmp_path / "nope.yaml")


def test_the_training_block_and_its_resolved_facts_have_the_same_fields():
    """Case.training is a TrainingFacts (below the models, no YAML type) made field by field from TrainingEntry."""
    from dataclasses import fields

    from parity.cases.schema import TrainingEntry
    from parity.facts.case import TrainingFacts

    assert [f.name for f in fields(TrainingFacts)] == [f.name for f in fields(TrainingEntry)]
