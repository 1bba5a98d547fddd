from parity.core.thresholds import DEFAULTS, BaselineKind, Thresholds, combine


def test_defaults_by_kind():
    assert combine(BaselineKind.PINNED, None, None) == DEFAULTS[BaselineKind.PINNED]
    assert combine(BaselineKind.PREVIEW, None, None).ssim_min < DEFAULTS[BaselineKind.PINNED].ssim_min


def test_field_by_field_precedence():
    suite = Thresholds(ssim_min=0.9, psnr_min=20, pixel_tolerance=2)
    sample = Thresholds(psnr_min=35)
    got = combine(BaselineKind.PINNED, suite, sample)
    assert (got.ssim_min, got.psnr_min, got.pixel_tolerance) == (0.9, 35, 2)
