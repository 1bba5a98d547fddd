"""Image files in and out (PIL): RGB loading with clear errors, atomic PNG writes."""

from __future__ import annotations

import enum
import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from parity.core.atomic import atomic_open
from parity.core.errors import CaseRunError

# Images are read the way both pipelines read them, `Image.open(path).convert("RGB")`, so that parity sees what
# they saw: alpha is dropped (not composited), a palette is expanded, 16-bit values above 255 clip to white, and
# EXIF orientation is ignored. `mode_notes` says so for each input where that changes something.
MAX_PIXELS = 64 * 1024 * 1024  # refuse larger images: a decompression bomb, or nothing a preview is made of


class OutputEncoding(enum.Enum):
    """How a wiring saves its output: the reference server's JPEG q95, the trainer's preview formats, or PNG."""

    PNG = "PNG (lossless)"
    JPEG_75 = "JPEG, PIL's default quality 75"
    JPEG_95 = "JPEG quality 95"
    WEBP_80 = "WebP, PIL's default quality 80"


def open_rgb(path: str | Path, role: str) -> Image.Image:
    """Open an image and convert it to RGB the way both pipelines do (`Image.open(p).convert("RGB")`)."""
    return _open(path, role)[0]


def open_with_notes(path: str | Path, role: str) -> tuple[Image.Image, list[str]]:
    """The RGB image and a note for each way the file's own mode or orientation was not kept."""
    return _open(path, role)


def _open(path: str | Path, role: str) -> tuple[Image.Image, list[str]]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                if width * height > MAX_PIXELS:
                    raise CaseRunError(
                        f"{role} is {width}x{height} pixels, more than parity reads ({MAX_PIXELS // (1024 * 1024)} MP): {path}",
                        "use the image the training used (previews and control images are a few megapixels)",
                    )
                img.load()
                return img.convert("RGB"), mode_notes(img, role)
    except FileNotFoundError:
        raise CaseRunError(f"{role} not found: {path}", "check the path in the case file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise CaseRunError(f"{role} looks like a decompression bomb: {path} ({exc})", "replace the file") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise CaseRunError(
            f"{role} cannot be read: {path} ({exc})", "replace it with a valid PNG/JPEG/WebP file (not truncated or empty)"
        ) from None


def mode_notes(img: Image.Image, role: str) -> list[str]:
    notes = []
    name = getattr(img, "filename", "") or role
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        notes.append(f"{role} {Path(name).name} has alpha: dropped, as both pipelines do (not composited)")
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        notes.append(f"{role} {Path(name).name} is {img.mode}: values above 255 clip to white, as in both pipelines")
    orientation = img.getexif().get(0x0112, 1) if hasattr(img, "getexif") else 1
    if orientation not in (1, None):
        notes.append(f"{role} {Path(name).name} has EXIF orientation {orientation}: ignored, as both pipelines ignore it")
    return notes


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


class OpenedImages:
    """Control images opened once (as open_with_notes opens them), with the notes opening each gave."""

    def __init__(self) -> None:
        self._images: dict[str, Image.Image] = {}
        self._notes: dict[str, list[str]] = {}

    def __call__(self, path: str) -> Image.Image:
        if path not in self._images:
            self._images[path], self._notes[path] = open_with_notes(path, "control image")
        return self._images[path]

    def notes(self, paths) -> list[str]:
        """The notes of the images at `paths` (each once, in order)."""
        return [note for path in dict.fromkeys(paths) for note in self._notes.get(path, [])]

    def clear(self) -> None:
        self._images.clear()
        self._notes.clear()

