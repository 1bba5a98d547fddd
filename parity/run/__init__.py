"""Layer 8, run: planning and shards, the report folder's lock, the session (one run, end to end), `parity calibrate`."""
