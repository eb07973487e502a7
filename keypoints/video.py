"""Frame sources (an image, a folder, a video file, a camera), a video writer, the demo overlay, the display check
and a synthetic test video. Frames are BGR uint8 ``(H, W, 3)`` as OpenCV reads them.

    source = open_source("clip.mp4")          # or "photo.jpg", "folder/", "0" (camera index)
    for frame in source:                      # Frame(image, index, name)
        ...
    source.close()

Errors are one-line ``ValueError`` / ``FileNotFoundError`` messages: a camera that cannot be opened, an
unreadable or unsupported file, a folder without images.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from .visualize import draw_pose, draw_text

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


@dataclass
class Frame:
    image: np.ndarray  # BGR uint8 (H, W, 3)
    index: int  # position in the source, from 0
    name: str  # image file name, or frame_000123 for videos and cameras


def read_image(path: str | Path) -> np.ndarray:
    """BGR uint8 image of ``path``; ``ValueError`` when OpenCV cannot decode it."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot read image {path} (corrupt, or not an image OpenCV can decode)")
    return image


class FrameSource:
    """Iterable of :class:`Frame`. ``kind`` is images | video | camera; ``fps`` the source rate (30 for images and
    cameras that do not report one); ``length`` the frame count when known (0 otherwise)."""

    def __init__(self, kind: str, spec: str, paths: list[Path] | None = None,
                 capture: cv2.VideoCapture | None = None, max_frames: int = 0) -> None:
        self.kind, self.spec, self.paths, self.capture, self.max_frames = kind, spec, paths, capture, max_frames
        fps = capture.get(cv2.CAP_PROP_FPS) if capture is not None else 0.0
        self.fps = float(fps) if fps and 1.0 <= fps <= 240.0 else 30.0
        if kind == "camera":
            self.length = max_frames
        else:
            count = len(paths) if paths is not None else max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
            self.length = min(count, max_frames) if max_frames > 0 else count

    def __repr__(self) -> str:
        return f"FrameSource({self.kind}: {self.spec}, {self.length or 'unknown number of'} frames)"

    def __iter__(self) -> Iterator[Frame]:
        if self.paths is not None:
            for i, path in enumerate(self.paths[: self.max_frames or None]):
                yield Frame(read_image(path), i, path.name)
            return
        i = 0
        while not self.max_frames or i < self.max_frames:
            ok, image = self.capture.read()
            if not ok:
                if i == 0:
                    raise ValueError(f"no frame could be read from {self.spec} (unsupported codec or empty video)")
                return
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


def open_source(spec: str | int, max_frames: int = 0) -> FrameSource:
    """Frame source of ``spec``: a camera index ("0"), an image file, a folder of images or a video file;
    ``max_frames`` > 0 stops after that many frames (images of a folder are taken in name order)."""
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
        return FrameSource("images", str(path), paths=paths, max_frames=max_frames)
    if not path.is_file():
        raise FileNotFoundError(f"input not found: {path} (pass an image, a folder, a video or a camera index)")
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return FrameSource("images", str(path), paths=[path], max_frames=max_frames)
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
    path.parent.mkdir(parents=True, exist_ok=True)
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


def draw_prediction(image: np.ndarray, prediction, kpt_thr: float = 0.3, fps: float | None = None,
                    show_boxes: bool = True) -> np.ndarray:
    """Skeletons (COCO colours) of a :class:`~keypoints.predictor.Prediction` on ``image`` in place, and a line
    with the FPS, the box mode and the number of people."""
    for person in prediction.people:
        draw_pose(image, person.keypoints, kpt_thr=kpt_thr, box=person.box if show_boxes else None,
                  label=f"{person.score:.2f}" if show_boxes else None)
    parts = [f"{fps:.1f} FPS"] if fps is not None else []
    parts += [f"boxes: {prediction.box_mode}", f"{len(prediction.people)} people"]
    return draw_text(image, " | ".join(parts))


def synthetic_video_frames(num_frames: int = 8, size: tuple[int, int] = (640, 480), seed: int = 0,
                           max_people: int = 3) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A smooth clip of one synthetic scene (:func:`keypoints.data.synthetic.render_image`) with 1..``max_people``
    people: the camera pans and zooms slowly across it. Returns BGR frames ``(H, W, 3)`` and each frame's true
    person boxes ``(N, 4)`` xywh (people with keypoints only)."""
    from .data.synthetic import render_image

    w, h = size
    for attempt in range(100):  # the renderer draws 1-4 people; take the first scene with 1..max_people
        rng = np.random.default_rng([seed, attempt])
        scene, anns = render_image(rng, (w, h), crowd_prob=0.0)
        people = [a for a in anns if not a["iscrowd"] and a["num_keypoints"] > 0]
        if 1 <= len(people) <= max_people:
            break
    boxes = np.array([a["bbox"] for a in people], dtype=np.float64).reshape(-1, 4)
    frames, frame_boxes = [], []
    for i in range(num_frames):
        t = i / max(1, num_frames - 1)
        zoom, dx, dy = 1.0 + 0.08 * np.sin(np.pi * t), 20.0 * np.sin(2 * np.pi * t), 10.0 * t
        m = np.array([[zoom, 0, (1 - zoom) * w / 2 + dx], [0, zoom, (1 - zoom) * h / 2 + dy]])
        frames.append(cv2.warpAffine(scene, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
        frame_boxes.append(np.concatenate([boxes[:, :2] * zoom + m[:, 2], boxes[:, 2:] * zoom], axis=1))
    return frames, frame_boxes


def write_synthetic_video(path: str | Path, num_frames: int = 8, size: tuple[int, int] = (640, 480), fps: float = 30.0,
                          seed: int = 0, max_people: int = 3) -> tuple[Path, list[np.ndarray]]:
    """Write :func:`synthetic_video_frames` to a video file; returns the path written and the per-frame boxes."""
    frames, boxes = synthetic_video_frames(num_frames, size, seed, max_people)
    writer, target = open_video_writer(path, fps, size)
    for frame in frames:
        writer.write(frame)
    writer.release()
    return target, boxes
