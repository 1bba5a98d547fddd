"""Qwen-Image-2512 renders with the Qwen-Image renderer: the same QwenImagePipeline call on both sides."""

from __future__ import annotations

from parity.models.qwen_image.wiring import Rendered, Renderer, RenderKnobs, Request, render_knobs

__all__ = ["RenderKnobs", "Rendered", "Renderer", "Request", "render_knobs"]
