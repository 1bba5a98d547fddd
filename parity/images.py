"""Image files in and out (PIL): RGB loading with clear errors, atomic PNG writes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .atomic import atomic_open
from .errors import CaseRunError
from .knobs import OutputEncoding


def open_rgb(path: str | Path, role: str) -> Image.Image:
    """Open an image and convert it to RGB the way both pipelines do (`Image.open(p).convert("RGB")`)."""
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except FileNotFoundError:
        raise CaseRunError(f"{role} not found: {path}", "check the path in the case file") from None
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise CaseRunError(f"{role} cannot be read: {path} ({exc})", "replace it with a valid PNG/JPEG/WebP file") from None


def load_array(path: str | Path, role: str) -> np.ndarray:
    """An image file as a uint8 HxWx3 array."""
    return np.asarray(open_rgb(path, role), dtype=np.uint8)


def save_png(array: np.ndarray, path: str | Path) -> None:
    """Write a uint8 HxWx3 array as PNG via a temporary file and a rename, so no reader sees half a file."""
    save_image_atomic(Image.fromarray(array), path, "PNG")


def save_image_atomic(image: Image.Image, path: str | Path, fmt: str, **params: object) -> None:
    with atomic_open(path, "wb") as fh:
        image.save(fh, format=fmt, **params)


def encode_output(image: np.ndarray, encoding: OutputEncoding) -> np.ndarray:
    """The image as the wiring saves it: lossless, or through PIL's JPEG/WebP encoder and back."""
    params = {
        OutputEncoding.PNG: None,
        OutputEncoding.JPEG_75: ("JPEG", {}),
        OutputEncoding.JPEG_95: ("JPEG", {"quality": 95}),
        OutputEncoding.WEBP_80: ("WEBP", {}),
    }[encoding]
    if params is None:
        return image
    fmt, options = params
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt, **options)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=np.uint8)
