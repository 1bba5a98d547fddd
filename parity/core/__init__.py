"""Layer 0: what every later layer uses: errors that name file, field, value and fix; atomic writes; image IO and
output encodings; thresholds; the environment fingerprint and its classes; visible text. Imports no other layer."""
