"""Layer 6, results: the typed records of a run and `results.json` (explicit key mapping, JSON Schema)."""
