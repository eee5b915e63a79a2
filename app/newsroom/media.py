"""Uploaded images: checked by decoding them, stored under the media folder, served as files.

The type is what Pillow finds in the bytes, never the name or the browser's word for it, and
only raster formats mail clients show are kept (no SVG: it can carry script). A file is named
by the hash of its bytes, so the same image uploaded twice is stored once and a name cannot
be chosen by the uploader.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from app.errors import AppError, Invalid
from app.media_links import MEDIA_NAME as NAME
from app.media_links import media_dir

MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_PIXELS = 40_000_000
FORMATS = {"PNG": "png", "JPEG": "jpg", "GIF": "gif", "WEBP": "webp"}
CONTENT_TYPES = {"png": "image/png", "jpg": "image/jpeg", "gif": "image/gif",
                 "webp": "image/webp"}


def _format_of(data: bytes) -> str:
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind = image.format or ""
            width, height = image.size
            if kind not in FORMATS:
                raise Invalid("Please upload a PNG, JPEG, GIF or WebP image (SVG is not "
                              "accepted).")
            if width * height > MAX_PIXELS:
                raise Invalid("The image has too many pixels; scale it down first.")
            image.verify()  # a truncated or corrupt file fails here
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise Invalid("This file is not an image we can use: upload a PNG, JPEG, GIF or "
                      "WebP.") from exc
    return FORMATS[kind]


def store_image(data: bytes) -> str:
    """Check an uploaded image and store it; its file name (hash and extension) is returned."""
    if len(data) > MAX_IMAGE_BYTES:
        raise AppError(f"The image is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MB.", 413)
    if not data:
        raise Invalid("The file is empty.")
    extension = _format_of(data)
    name = f"{hashlib.sha256(data).hexdigest()[:32]}.{extension}"
    folder = media_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    if not target.exists():
        partial = folder / f".{name}.part"
        partial.write_bytes(data)
        partial.replace(target)
    return name


def image_path(name: str) -> Path | None:
    """The stored file for a media name, or None when the name is not one we give out."""
    if not NAME.fullmatch(name):
        return None
    path = media_dir() / name
    return path if path.is_file() else None
