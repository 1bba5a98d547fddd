"""Resolution of samples, checked against hand-worked examples of ai-toolkit's and the server's rules."""

import os

import pytest

from parity.cases.resolve import resolve_suite
from parity.cases.schema import load_suite
from parity.cases.trainer import inject_trigger
from parity.core.errors import CaseFileError
from parity.core.thresholds import BaselineKind
from parity.models.qwen.geometry import (
    server_condition_size,
    server_size,
    trainer_condition_size,
    trainer_size,
)


def resolve(write_case, text):
    return resolve_suite(load_suite(write_case(text)))


def test_condition_size_is_transposed_on_the_server_for_non_square_images():
    # 64 wide x 48 high: ratio 0.75; sqrt(147456*0.75)=332.6 -> 320, 443.4 -> 448.
    assert server_condition_size(64, 48) == (320, 448)  # 320 wide x 448 high: portrait for a landscape image
    assert trainer_condition_size(64, 48) == (448, 320)  # aspect kept
    assert server_condition_size(64, 64) == trainer_condition_size(64, 64) == (384, 384)


def test_sizes():
    assert server_size(1000, 32) == 992
    assert trainer_size(1000) == 992  # 1000 (multiple of 8) -> 992
    assert trainer_size(1020) == 992  # 1016 -> 992
    assert trainer_size(40) == 64  # at least 64 before the bucket floor
    assert server_size(40, 32) == 32


def test_trigger_replaces_trigger_and_name_tokens():
    assert inject_trigger("[trigger] and [name]", "sks") == "sks and sks"
    assert inject_trigger("[trigger] x", None) == "[trigger] x"
    assert inject_trigger("[trigger] x", "") == " x"


def test_walk_seed_and_per_item_seed(write_case):
    cases = resolve(
        write_case,
        """
        sample:
          seed: 42
          walk_seed: true
          samples:
            - {prompt: a, ctrl_img_1: inputs/hat.png}
            - {prompt: b, ctrl_img_1: inputs/hat.png, seed: 7}
            - {prompt: c, ctrl_img_1: inputs/hat.png}
        """,
    )
    assert [c.effective.seed for c in cases] == [42, 7, 44]


def test_without_walk_seed_an_item_seed_carries_over(write_case):
    cases = resolve(
        write_case,
        """
        sample:
          seed: 5
          samples:
            - {prompt: a, ctrl_img_1: inputs/hat.png}
            - {prompt: b, ctrl_img_1: inputs/hat.png, seed: 9}
            - {prompt: c, ctrl_img_1: inputs/hat.png}
        """,
    )
    assert [c.effective.seed for c in cases] == [5, 9, 9]
    assert any("carried over" in n for n in cases[2].notes)


def test_items_without_prompt_shift_settings(write_case):
    # prompts = [b, c]; image 0 draws prompt b with item 0's settings (width 256).
    cases = resolve(
        write_case,
        """
        sample:
          samples:
            - {width: 256, ctrl_img_1: inputs/hat.png}
            - {prompt: b, width: 320, ctrl_img_1: inputs/hat.png}
            - {prompt: c, width: 384, ctrl_img_1: inputs/hat.png}
        """,
    )
    assert [(c.effective.prompt, c.effective.width) for c in cases] == [("b", 256), ("c", 320)]
    assert "by position" in " ".join(cases[0].notes)


def test_legacy_prompts_list_uses_block_defaults(write_case):
    cases = resolve(
        write_case,
        """
        sample:
          prompts: ["one --ctrl_img inputs/hat.png", "two --ctrl_img inputs/person.png"]
        """,
    )
    assert [c.effective.prompt for c in cases] == ["one", "two"]
    c = cases[0].requested
    assert (c.width, c.height, c.steps, c.guidance_scale, c.seed, c.negative_prompt) == (512, 512, 20, 7.0, 0, False)
    assert cases[0].effective.negative_prompt == ""


def test_flags_trigger_and_size_snapping(write_case):
    (case,) = resolve(
        write_case,
        """
        trigger_word: sks
        sample:
          width: 1024
          height: 1024
          neg: "ugly"
          samples:
            - prompt: "[trigger] a hat --w 1000 --h 750 --n blurry [trigger] --seed 3 --steps 9 --cfg 2.5 --m 0.7"
              ctrl_img_1: inputs/hat.png
        """,
    )
    r, e = case.requested, case.effective
    assert r.prompt == e.prompt == "sks a hat"
    assert r.negative_prompt == "blurry sks"  # --n text gets the trigger too
    assert (r.width, r.height) == (1000, 750)
    assert (e.width, e.height) == (992, 736)
    assert (e.seed, e.steps, e.guidance_scale, r.lora_scale) == (3, 9, 2.5, 0.7)
    assert e.lora_scale is None  # no LoRA in this suite
    assert any("floors to a multiple of 32" in n for n in case.notes)


def test_neg_in_the_item_is_not_trigger_replaced(write_case):
    (case,) = resolve(
        write_case,
        """
        trigger_word: sks
        sample:
          samples:
            - {prompt: "[trigger]", neg: "no [trigger]", ctrl_img_1: inputs/hat.png}
        """,
    )
    assert case.effective.negative_prompt == "no [trigger]"


def test_control_image_order_and_legacy_ctrl_img(write_case, workdir):
    cases = resolve(
        write_case,
        """
        sample:
          samples:
            - {prompt: a, ctrl_img_2: inputs/hat.png}
            - {prompt: b, ctrl_img: inputs/person.png, ctrl_img_2: inputs/hat.png}
            - {prompt: c, ctrl_img_3: inputs/square.png, ctrl_img_1: inputs/person.png}
        """,
    )
    names = [[os.path.basename(p) for p in c.effective.control_images] for c in cases]
    assert names == [["hat.png"], ["person.png", "hat.png"], ["person.png", "square.png"]]
    assert "Picture 1" in " ".join(cases[0].notes)
    assert "legacy ctrl_img" in " ".join(cases[1].notes)
    assert cases[1].control_keys == ("sample.samples[1].ctrl_img", "sample.samples[1].ctrl_img_2")
    # paths are relative to the case file's folder, made absolute: the run may start from any working directory
    assert cases[0].effective.control_images == (os.path.join(str(workdir / "cases"), "inputs/hat.png"),)


def test_lora_scale_from_lora_entry_overrides_the_sample(write_case):
    cases = resolve(
        write_case,
        """
        loras: [{path: loras/tiny.safetensors, network_multiplier: 0.8}]
        sample:
          network_multiplier: 0.5
          samples:
            - {prompt: a, ctrl_img_1: inputs/hat.png}
        """,
    )
    assert cases[0].requested.lora_scale == 0.5
    assert cases[0].effective.lora_scale == 0.8


def test_thresholds_per_sample_over_suite_over_default(write_case):
    cases = resolve(
        write_case,
        """
        thresholds: {ssim_min: 0.9, mean_abs_diff_max: 3}
        sample:
          samples:
            - {prompt: a, ctrl_img_1: inputs/hat.png, ssim_min: 0.99}
            - {prompt: b, ctrl_img_1: inputs/hat.png}
        """,
    )
    a, b = cases[0].thresholds, cases[1].thresholds
    assert (a.ssim_min, a.mean_abs_diff_max, a.psnr_min) == (0.99, 3, 40.0)
    assert (b.ssim_min, b.mean_abs_diff_max) == (0.9, 3)


def test_pinned_baselines_default_to_the_baselines_folder(write_case, workdir):
    cases = resolve(
        write_case,
        """
        sample:
          samples:
            - {prompt: a, name: first, ctrl_img_1: inputs/hat.png}
            - {prompt: b, ctrl_img_1: inputs/hat.png, baseline: ../elsewhere/b.png}
        """,
    )
    assert cases[0].baseline == str(workdir / "baselines" / "suite" / "first.png")
    assert cases[1].baseline == str(workdir / "elsewhere" / "b.png")
    assert cases[0].id == "suite::first" and cases[1].id == "suite::1"
    assert cases[0].baseline_kind is BaselineKind.PINNED


@pytest.mark.parametrize(
    "item, field, message",
    [
        ("{prompt: 'a --seed x', ctrl_img_1: inputs/hat.png}", "sample.samples[0].prompt", "--seed needs a whole number"),
        ("{prompt: 'a --steps 0', ctrl_img_1: inputs/hat.png}", "sample.samples[0].prompt", "sample_steps 0 is outside what the trainer accepts"),
        ("{prompt: a}", "sample.samples[0]", "needs at least one control image"),
    ],
)
def test_resolution_problems_name_field_and_fix(write_case, item, field, message):
    with pytest.raises(CaseFileError) as info:
        resolve(write_case, f"sample:\n  samples:\n    - {item}\n")
    (problem,) = info.value.problems
    assert problem.field == field
    assert message in problem.message
    assert problem.fix and problem.file.endswith("suite.yaml") and problem.line == 3


@pytest.mark.parametrize(
    "training, field, message",
    [
        ("{quantize: true, qtype: 'uint4|'}", "training.qtype", "ai-toolkit fails on 'uint4|'"),
        ("{quantize: true, qtype: qfloat4}", "training.qtype", "ai-toolkit knows no qtype 'qfloat4'"),
        ("{quantize_te: true, qtype_te: 'uint3|ara/x.safetensors'}", "training.qtype_te", "from model.qtype only"),
    ],
)
def test_a_qtype_the_trainer_would_fail_on_is_a_case_file_problem(write_case, training, field, message):
    """A hand-written `training:` block is held to what `parity import` holds a job to: the trainer's own parse."""
    with pytest.raises(CaseFileError) as info:
        resolve(write_case, f"training: {training}\nsample:\n  samples:\n    - {{prompt: a, ctrl_img_1: inputs/hat.png}}\n")
    (problem,) = info.value.problems
    assert problem.field == field and message in problem.message
    assert "parity replays qfloat8" in problem.fix and problem.line == 1


@pytest.mark.parametrize(
    "item, requested, refusal",
    [
        ("{prompt: 'a --w 8000'}", ("width", 8000), "width 8000 is outside what its request schema accepts (64..4096)"),
        ("{prompt: a, width: 32}", ("width", 32), "width 32 is outside what its request schema accepts (64..4096)"),
        ("{prompt: a, sample_steps: 200}", ("steps", 200), "sample_steps 200 is outside what its request schema accepts (1..150)"),
        ("{prompt: a, guidance_scale: 25}", ("guidance_scale", 25.0), "guidance_scale 25 is outside what its request schema accepts (0..20)"),
        ("{prompt: a, guidance_scale: -1}", ("guidance_scale", -1.0), "guidance_scale -1 is outside what its request schema accepts (0..20)"),
        ("{prompt: a, seed: -5}", ("seed", -5), "seed -5 is outside what its request schema accepts (at least -1)"),
        ("{prompt: a, seed: -1}", ("seed", -1), "seed -1 makes it draw a random seed, so its image cannot be reproduced"),
        ("{prompt: a, network_multiplier: 2.5}", ("lora_scale", 2.5), "LoRA scale 2.5 is outside what its request schema accepts (-2..2)"),
    ],
)
def test_values_the_trainer_renders_but_the_server_refuses_resolve_as_refused_cases(write_case, item, requested, refusal):
    """ai-toolkit renders these samples (sizes are clamped to at least 64 and rounded; steps, guidance, seeds and
    multipliers are taken as they are); the reference server's request schema refuses them. The case resolves,
    with the trainer's settings, and carries why the server refuses it."""
    head = "loras: [{path: loras/tiny.safetensors}]\nsample:\n  samples:\n"
    (case,) = resolve(write_case, head + "    - " + item.replace("}", ", ctrl_img_1: inputs/hat.png}") + "\n")
    assert getattr(case.requested, requested[0]) == requested[1]
    assert case.refused == (refusal,)
    if requested[0] == "width":
        assert case.preview.width == max(64, requested[1] // 32 * 32)  # the trainer's clamp and rounding


def test_values_inside_the_server_ranges_are_not_refused(write_case):
    text = "loras: [{path: loras/tiny.safetensors}]\nsample:\n  width: 4096\n  height: 64\n  seed: 0\n  samples:\n"
    text += "    - {prompt: a, sample_steps: 150, guidance_scale: 20, network_multiplier: -2, ctrl_img_1: inputs/hat.png}\n"
    (case,) = resolve(write_case, text)
    assert case.refused == ()


def test_preview_suites_need_a_baseline_per_sample(write_case):
    with pytest.raises(CaseFileError, match="preview suite needs the training preview"):
        resolve(write_case, "baseline_kind: preview\nsample:\n  samples:\n    - {prompt: a, ctrl_img_1: inputs/hat.png}\n")


def test_more_than_one_lora_is_refused(write_case):
    with pytest.raises(CaseFileError, match="fuses only the first"):
        resolve(
            write_case,
            "loras: [{path: a.safetensors}, {path: b.safetensors}]\nsample:\n  samples:\n    - {prompt: a, ctrl_img_1: inputs/hat.png}\n",
        )
