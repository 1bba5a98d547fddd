"""Layer 5, judge: metrics and the metric table, the baseline rules, the status ladder, calibration files, the
`--diagnose` ablation."""
