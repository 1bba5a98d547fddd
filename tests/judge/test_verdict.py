"""The status ladder (parity/judge/verdict.py), rung by rung, on plain values."""

import pytest

from parity.core.envclass import parse
from parity.judge.baselines import BaselineAction, BaselineChoice, BaselineDecision
from parity.judge.compare import Comparison, Metrics, Violation
from parity.judge.verdict import case_status
from parity.results.record import JpegCheck, Status

AVX2, AVX512 = parse("cpu-float32-avx2"), parse("cpu-float32-avx512")
OWN = BaselineChoice("b/cpu-float32-avx2/c.png", AVX2, AVX2, exact=True)
NEAREST = BaselineChoice("b/cpu-float32-avx2/c.png", AVX512, AVX2, exact=False)
METRICS = Metrics(ssim=0.9, psnr=30.0, max_abs_diff=9, mean_abs_diff=2.0, changed_pixels=0.1, pixel_tolerance=0.0)
MISSED = (Violation("SSIM", 0.9, 0.999, "min"),)
PASSED = Comparison(METRICS, (), (64, 64), (64, 64))
FAILED = Comparison(METRICS, MISSED, (64, 64), (64, 64))
COMPARED = BaselineDecision(BaselineAction.COMPARED, OWN.path)


@pytest.mark.parametrize("action, words", [(BaselineAction.WRITTEN, "baseline was missing"), (BaselineAction.REWRITTEN, "rewritten on request")])
def test_a_baseline_written_now_fails_for_review_whatever_the_comparison(action, words):
    status, reason = case_status(BaselineDecision(action, OWN.path), OWN, PASSED, None)
    assert status is Status.FAIL and words in reason and "(set cpu-float32-avx2)" in reason and "review it" in reason


def test_within_thresholds_passes_with_the_comparison_summary():
    assert case_status(COMPARED, OWN, PASSED, None) == (Status.PASS, "within thresholds")


def test_a_jpeg_baseline_passes_once_encoded_as_the_trainer_saves_it():
    floor = Metrics(ssim=0.95, psnr=35.0, max_abs_diff=5, mean_abs_diff=1.25, changed_pixels=0.1, pixel_tolerance=0.0)
    status, reason = case_status(COMPARED, OWN, FAILED, JpegCheck(METRICS, (), floor))
    assert status is Status.PASS and "passes once encoded" in reason and "SSIM 0.9 < 0.999" in reason and "1.25" in reason
    assert case_status(COMPARED, OWN, FAILED, JpegCheck(METRICS, MISSED, floor))[0] is Status.FAIL


def test_a_miss_fails_and_names_the_nearest_set_when_it_was_another_classes():
    assert case_status(COMPARED, OWN, FAILED, None) == (Status.FAIL, "SSIM 0.9 < 0.999")
    status, reason = case_status(COMPARED, NEAREST, FAILED, None)
    assert status is Status.FAIL and reason.startswith("SSIM 0.9 < 0.999 — compared with set cpu-float32-avx2, the nearest")
