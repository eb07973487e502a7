"""Media in and out for the demo: frame sources (an image, a folder of images, a video file, a camera), a video
writer and the display check. Frames are BGR uint8 ``(H, W, 3)`` as OpenCV reads them.

    source = open_source("clip.mp4")          # or "photo.jpg", "folder/", "0" (camera index)
    for frame in source:                      # Frame(image, index, name)
        ...
    source.close()
    if source.ended_early: ...                # a video stopped decoding before the frame count its container gives

Images are read by :func:`keypoints.utils.io.read_image` (the project's one reader): EXIF orientation is ignored
unless the source is opened with ``exif=True`` (phone photos without boxes; never with boxes from a COCO file, whose
coordinates refer to the stored pixels). Errors are one-line ``ValueError`` / ``FileNotFoundError`` messages: a
camera that cannot be opened, an unreadable or unsupported file, a folder without images.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from .outputs import check_output
from .utils.io import read_image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


@dataclass
class Frame:
    image: np.ndarray  # BGR uint8 (H, W, 3)
    index: int  # position in the source, from 0
    name: str  # image file name, or frame_000123 for videos and cameras


class FrameSource:
    """Iterable of :class:`Frame`. ``kind`` is images | video | camera; ``fps`` the source rate (30 for images and
    cameras that do not report one); ``length`` the frame count when known (0 otherwise); ``exif`` applies images'
    EXIF orientation. After iterating a video, ``frames_read`` and ``ended_early`` (fewer frames decoded than the
    container announced) tell whether the file was cut short or corrupt."""

    def __init__(self, kind: str, spec: str, paths: list[Path] | None = None,
                 capture: cv2.VideoCapture | None = None, max_frames: int = 0, exif: bool = False) -> None:
        self.kind, self.spec, self.paths, self.capture, self.max_frames = kind, spec, paths, capture, max_frames
        self.exif, self.frames_read = exif, 0
        fps = capture.get(cv2.CAP_PROP_FPS) if capture is not None else 0.0
        self.fps = float(fps) if fps and 1.0 <= fps <= 240.0 else 30.0
        if kind == "camera":
            self.length = max_frames
        else:
            count = len(paths) if paths is not None else max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
            self.length = min(count, max_frames) if max_frames > 0 else count

    def __repr__(self) -> str:
        return f"FrameSource({self.kind}: {self.spec}, {self.length or 'unknown number of'} frames)"

    @property
    def ended_early(self) -> bool:
        return self.kind == "video" and 0 < self.frames_read < self.length

    def __iter__(self) -> Iterator[Frame]:
        if self.paths is not None:
            for i, path in enumerate(self.paths[: self.max_frames or None]):
                self.frames_read = i + 1
                yield Frame(read_image(path, exif=self.exif), i, path.name)
            return
        i = 0
        while not self.max_frames or i < self.max_frames:
            ok, image = self.capture.read()
            if not ok:
                if i == 0:
                    raise ValueError(f"no frame could be read from {self.spec} (unsupported codec or empty video)")
                return
            self.frames_read = i + 1
            yield Frame(image, i, f"frame_{i:06d}")
            i += 1

    def close(self) -> None:
        if self.capture is not None:
            self.capture.release()


def _quiet_capture(arg: str | int) -> cv2.VideoCapture:
    """VideoCapture without OpenCV's console warnings for sources that fail to open (we raise our own error)."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        return cv2.VideoCapture(arg)
    finally:
        cv2.utils.logging.setLogLevel(level)


def open_source(spec: str | int, max_frames: int = 0, exif: bool = False) -> FrameSource:
    """Frame source of ``spec``: a camera index ("0"), an image file, a folder of images or a video file;
    ``max_frames`` > 0 stops after that many frames (images of a folder are taken in name order); ``exif`` applies
    the EXIF orientation of images."""
    text = str(spec)
    if text.isdigit() and not Path(text).exists():
        capture = _quiet_capture(int(text))
        if not capture.isOpened():
            raise ValueError(f"camera {text} is not available (cv2.VideoCapture({text}) could not open it); check "
                             f"the index (0 is usually the built-in camera) or pass an image, folder or video")
        return FrameSource("camera", f"camera {text}", capture=capture, max_frames=max_frames)
    path = Path(text)
    if path.is_dir():
        paths = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not paths:
            raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in folder {path}")
        return FrameSource("images", str(path), paths=paths, max_frames=max_frames, exif=exif)
    if not path.is_file():
        raise FileNotFoundError(f"input not found: {path} (pass an image, a folder, a video or a camera index)")
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return FrameSource("images", str(path), paths=[path], max_frames=max_frames, exif=exif)
    if suffix in VIDEO_EXTENSIONS:
        capture = _quiet_capture(str(path))
        if not capture.isOpened():
            raise ValueError(f"cannot open video {path} (corrupt, or a codec this OpenCV build cannot decode)")
        return FrameSource("video", str(path), capture=capture, max_frames=max_frames)
    raise ValueError(f"unsupported input {path}: expected an image ({', '.join(IMAGE_EXTENSIONS)}), a video "
                     f"({', '.join(VIDEO_EXTENSIONS)}), a folder or a camera index")


def open_video_writer(path: str | Path, fps: float, size: tuple[int, int]) -> tuple[cv2.VideoWriter, Path]:
    """Writer of ``size`` (width, height) frames: mp4v into ``path`` (.mp4); if this OpenCV build cannot, MJPG into
    the same name with .avi. Returns the writer and the path actually written."""
    path = Path(path)
    check_output(path, flag="output video", kind="video", overwrite=True)  # the caller decided to replace it
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create the folder of {path} ({e.strerror})") from None
    for fourcc, suffix in (("mp4v", path.suffix or ".mp4"), ("MJPG", ".avi")):
        target = path.with_suffix(suffix)
        writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*fourcc), fps, size)
        if writer.isOpened():
            if target != path:
                print(f"warning: cannot write {fourcc} into {path}; writing {target} instead", file=sys.stderr)
            return writer, target
    raise ValueError(f"cannot write a video to {path}: this OpenCV build has neither an mp4v nor an MJPG encoder; "
                     f"write images instead (pass an output folder)")


def count_frames(path: str | Path) -> int:
    """Frames of a video file, by decoding them (container metadata can be wrong)."""
    capture = _quiet_capture(str(path))
    n = 0
    while capture.isOpened() and capture.read()[0]:
        n += 1
    capture.release()
    return n


def has_display() -> bool:
    """True when a window can be opened: on Linux (and other X11/Wayland systems) DISPLAY or WAYLAND_DISPLAY must
    be set; with OpenCV's GUI build and no display, ``cv2.imshow`` aborts the whole process."""
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
