"""The README's case-file reference is generated from the schema and must match it."""

from paths import REPO

from parity.docs import readme_knobs_section, readme_options_section, readme_section, replace_section


def test_readme_tables_match_the_schema_and_the_options():
    readme = (REPO / "README.md").read_text()
    assert readme_section() in readme, "README is stale: run `python -m parity.docs` to regenerate it"
    assert readme_options_section() in readme, "README is stale: run `python -m parity.docs` to regenerate it"
    assert readme_knobs_section() in readme, "README is stale: run `python -m parity.docs` to regenerate it"
    assert replace_section(readme) == readme, "README is stale (the models table): run `python -m parity.docs`"


def test_every_knob_is_documented():
    """The default model's table holds every knob; every model documents its LoRA application."""
    from parity.models import MODELS, get_model
    from parity.models.knobs import Knob
    from parity.models.qwen.knobs import KNOB_RULES

    assert set(KNOB_RULES) == set(Knob)
    for model in MODELS:  # the README's models table reads each one's LoRA application
        assert Knob.LORA_METHOD in get_model(model).knob_rules(), model


def test_replace_section_is_idempotent():
    readme = (REPO / "README.md").read_text()
    assert replace_section(readme) == replace_section(replace_section(readme))
