"""Reading user-supplied JSON files with one-line errors."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_json(path: str | Path, what: str, hint: str = "") -> Any:
    """Parsed JSON of ``path``; ``what`` names the file in the errors (e.g. "detections file")."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}" + (f" ({hint})" if hint else ""))
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{what} {path} is not valid JSON: {e}") from None


class BadImageError(ValueError):
    """An image file that is missing, truncated or cannot be decoded (carries the path and the problem)."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"cannot read image ({problem}): {path}")
        self.path, self.problem = str(path), problem


def read_image(path: str | Path, exif: bool = False):
    """The one image reader: BGR uint8 ``(H, W, 3)`` of ``path``.

    EXIF policy: ``exif=False`` (datasets, COCO files, anything whose coordinates refer to the stored pixels)
    ignores the orientation tag; ``exif=True`` rotates the picture as a phone gallery shows it (the demo's
    ``--exif`` for photos without boxes). A JPEG without its end-of-image marker is reported as truncated instead of
    being decoded into a grey-filled picture. Raises :class:`BadImageError` (a ``ValueError``).
    """
    import cv2
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise BadImageError(path, "image file not found")
    data = np.fromfile(str(path), dtype=np.uint8)
    if data[:2].tobytes() == b"\xff\xd8" and b"\xff\xd9" not in data[-1024:].tobytes():
        raise BadImageError(path, "truncated JPEG: no end-of-image marker")
    flags = cv2.IMREAD_COLOR if exif else cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    image = cv2.imdecode(data, flags) if data.size else None
    if image is None:
        raise BadImageError(path, "cannot decode image: corrupt, or not an image OpenCV can decode")
    return image
