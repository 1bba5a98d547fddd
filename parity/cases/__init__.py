"""Layer 2, case file -> resolved case: the schema and its checked loader, the trainer's pass, the server's pass,
the resolver that joins them, suite discovery, LoRA headers, `parity import`. Pure: no torch."""
