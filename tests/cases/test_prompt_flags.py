from parity.cases.prompt_flags import parse_prompt


def test_plain_prompt_is_stripped():
    parsed = parse_prompt("  a cat on a mat  ")
    assert parsed.prompt == "a cat on a mat"
    assert parsed.overrides == {}
    assert parsed.flags == ()


def test_sd_scripts_flags_override_settings():
    parsed = parse_prompt("a cat --n blurry, ugly --w 1000 --h 768 --seed 7 --cfg 3.5 --steps 12 --m 0.8")
    assert parsed.prompt == "a cat"
    assert parsed.overrides == {
        "negative_prompt": "blurry, ugly",
        "width": 1000,
        "height": 768,
        "seed": 7,
        "guidance_scale": 3.5,
        "steps": 12,
        "network_multiplier": 0.8,
    }


def test_short_and_long_aliases_and_last_one_wins():
    parsed = parse_prompt("x --d 1 --l 2 --s 3 --network_multiplier 0.5 --seed 9")
    assert parsed.overrides == {"seed": 9, "guidance_scale": 2.0, "steps": 3, "network_multiplier": 0.5}


def test_every_double_dash_splits_even_inside_words():
    # ai-toolkit splits on every '--': "well--known" loses its tail, read as an unknown flag "known".
    parsed = parse_prompt("a well--known face --seed 3")
    assert parsed.prompt == "a well"
    assert parsed.unknown == ("known",)
    assert parsed.overrides == {"seed": 3}


def test_inert_flags_are_recognised_but_change_nothing():
    parsed = parse_prompt("x --gr 0.7 --p2 other --ctrl_idx 1")
    assert parsed.overrides == {}
    assert parsed.inert == ("gr", "p2", "ctrl_idx")


def test_bad_numbers_are_reported_not_raised():
    parsed = parse_prompt("x --seed seven --w 7.5 --gr nope")
    assert [(e.flag, e.content) for e in parsed.errors] == [("seed", "seven"), ("w", "7.5"), ("gr", "nope")]
    assert parsed.overrides == {}


def test_ctrl_img_flag():
    assert parse_prompt("x --ctrl_img inputs/a.png").overrides == {"ctrl_img": "inputs/a.png"}
