import math

import numpy as np

from parity.core.thresholds import Thresholds
from parity.judge.compare import METRIC_TABLE, Metrics, compare, describe, heatmap, measure, metric_lines

LIMITS = Thresholds(ssim_min=0.99, psnr_min=40.0, pixel_tolerance=4.0)


def image(seed=0, shape=(32, 48, 3)):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_identical_images():
    a = image()
    result = compare(a, a.copy(), LIMITS)
    assert result.passed
    m = result.metrics
    assert m.ssim == 1.0 and math.isinf(m.psnr) and m.max_abs_diff == 0 and m.changed_pixels == 0.0


def test_known_differences():
    a = np.full((10, 10, 3), 100, dtype=np.uint8)
    b = a.copy()
    b[0, 0, 0] = 110  # one pixel off by 10 in one channel
    b[1, 1, :] = 102  # one pixel off by 2 (within the tolerance of 4)
    m = measure(b, a, pixel_tolerance=4)
    assert m.max_abs_diff == 10
    assert m.mean_abs_diff == (10 + 2 * 3) / 300
    assert m.changed_pixels == 1 / 100
    mse = (10**2 + 3 * 2**2) / 300
    assert abs(m.psnr - 10 * math.log10(255**2 / mse)) < 1e-9


def test_threshold_violations_are_listed():
    a = image(1)
    b = np.clip(a.astype(int) + 20, 0, 255).astype(np.uint8)
    result = compare(b, a, Thresholds(ssim_min=0.999, psnr_min=50, mean_abs_diff_max=1, changed_pixels_max=0.1, pixel_tolerance=4))
    assert not result.passed
    assert [v.metric for v in result.violations] == ["SSIM", "PSNR", "mean |diff|", "changed pixels"]
    assert "PSNR" in result.summary()


def test_size_mismatch_is_a_finding():
    result = compare(image(shape=(32, 48, 3)), image(shape=(30, 48, 3)), LIMITS)
    assert not result.passed and result.metrics is None
    assert result.summary() == "size mismatch: output 48x32, baseline 48x30"


def test_heatmap_is_black_where_equal_and_bright_where_different():
    a = np.zeros((4, 4, 3), dtype=np.uint8)
    b = a.copy()
    b[0, 0] = 200
    heat = heatmap(b, a, scale=200)
    assert heat.shape == (4, 4, 3) and heat.dtype == np.uint8
    assert heat[1, 1].tolist() == [0, 0, 0] and heat[0, 0].tolist() == [255, 255, 255]


def test_one_metric_table_serves_the_verdict_and_the_text():
    """compare.METRIC_TABLE is the only list of metrics: check (verdicts), describe (terminal, pytest) and the
    report's table (metric_lines) all come from it, in its order."""
    metrics = Metrics(ssim=0.5, psnr=math.inf, max_abs_diff=70, mean_abs_diff=10.78, changed_pixels=0.25, pixel_tolerance=1.0)
    limits = Thresholds(ssim_min=0.9995, psnr_min=None, mean_abs_diff_max=0.05, max_abs_diff_max=255, changed_pixels_max=0.5)
    lines = metric_lines(metrics, limits)
    assert [line.field for line in lines] == [row[2] for row in METRIC_TABLE]
    assert [line.ok for line in lines] == [False, True, False, True, True]
    assert describe(metrics, limits) == (
        "SSIM 0.5 (≥ 0.9995), PSNR (dB) inf, mean |diff| (levels) 10.78 (≤ 0.05), max |diff| (levels) 70 (≤ 255), "
        "changed pixels (> 1 levels) 0.25 (≤ 0.5)"
    )
