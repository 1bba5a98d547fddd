"""Layer 4, render: base-model loading, LoRA application, CFG-parallel, the engine that renders a case under a
wiring (through the model package), drawing previews. The only layer besides the model packages that runs torch."""
