"""Qwen-Image-Edit-2509 renders with the 2511 renderer: the same QwenImageEditPlusPipeline call and server code."""

from __future__ import annotations

from parity.models.qwen_image_edit_plus_2511.wiring import Rendered, Renderer, RenderKnobs, Request, render_knobs

__all__ = ["RenderKnobs", "Rendered", "Renderer", "Request", "render_knobs"]
