"""parity: proves (or disproves) that reference inference reproduces the training previews of a LoRA."""

__version__ = "0.1.0"
