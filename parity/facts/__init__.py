"""What a case is, below every model: its settings, its preview facts, its LoRA and its training facts, and the LoRA
strength as each side applies it. Plain frozen data; the resolver (parity.cases) builds it from a case file."""
