"""Drawing poses on BGR images (OpenCV) and plotting training curves (matplotlib, headless).

Skeleton edges and colours are the dataset's (:class:`keypoints.metadata.DatasetMeta`: the COCO person by default);
colours come from the flip pairs unless the metadata gives others: left member of a pair green, right orange,
unpaired keypoints and edges joining different colours blue. Keypoints without training labels are not drawn.
Images are BGR uint8 arrays ``(H, W, 3)``, keypoints ``(K, 3)`` = x, y, score in image pixels.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from .metadata import CENTRE_COLOUR as CENTRE, LEFT_COLOUR as LEFT, RIGHT_COLOUR as RIGHT, DatasetMeta
from .outputs import atomic_path

__all__ = ["draw_pose", "draw_text", "draw_prediction", "plot_training_curves", "LEFT", "RIGHT", "CENTRE"]


def draw_pose(image: np.ndarray, keypoints: np.ndarray, kpt_thr: float = 0.3, box: Sequence[float] | None = None,
              label: str | None = None, thickness: int | None = None,
              metadata: DatasetMeta | None = None, draw_unlabelled: bool = False) -> np.ndarray:
    """Draw one instance's skeleton (``metadata``'s edges and colours, default COCO person) and optional xywh
    box/label on ``image`` in place; returns it. Keypoints the model never saw labelled in training
    (``metadata.unlabelled``) and their edges are left out unless ``draw_unlabelled``: their scores mean nothing."""
    meta = metadata if metadata is not None else DatasetMeta.coco_person()
    if len(keypoints) != meta.num_keypoints:
        raise ValueError(f"draw_pose got {len(keypoints)} keypoints but the metadata has {meta.num_keypoints}; pass "
                         f"the model's metadata (PoseEstimator.metadata)")
    h, w = image.shape[:2]
    t = thickness or max(1, round(min(h, w) / 240))
    kp = np.asarray(keypoints, dtype=np.float32)
    if box is not None:
        x, y, bw, bh = (int(round(v)) for v in box)
        cv2.rectangle(image, (x, y), (x + bw, y + bh), (200, 200, 200), max(1, t // 2))
        if label:
            cv2.putText(image, label, (x, max(10, y - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * t, (200, 200, 200), 1,
                        cv2.LINE_AA)
    shown = kp[:, 2] > kpt_thr
    if not draw_unlabelled and meta.unlabelled:
        shown[list(meta.unlabelled)] = False
    for a, b in meta.skeleton:
        if shown[a] and shown[b]:
            pa, pb = (int(round(kp[a, 0])), int(round(kp[a, 1]))), (int(round(kp[b, 0])), int(round(kp[b, 1])))
            cv2.line(image, pa, pb, meta.limb_colour(a, b), t + 1, cv2.LINE_AA)
    for i, (x, y, s) in enumerate(kp):
        if shown[i]:
            cv2.circle(image, (int(round(x)), int(round(y))), t + 2, meta.colours[i], -1, cv2.LINE_AA)
    return image


def draw_text(image: np.ndarray, text: str, origin: tuple[int, int] = (8, 20)) -> np.ndarray:
    """White text on a dark band (FPS and mode overlays), sized to the image."""
    scale = max(0.35, min(image.shape[:2]) / 960)
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x, y = origin
    band = image[max(0, y - h - 4):y + base + 2, max(0, x - 4):x + w + 4]
    band[:] = (band * 0.4).astype(image.dtype)
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return image


def draw_prediction(image: np.ndarray, prediction, kpt_thr: float = 0.3, fps: float | None = None,
                    show_boxes: bool = True, metadata: DatasetMeta | None = None,
                    draw_unlabelled: bool = False) -> np.ndarray:
    """Skeletons (``metadata``'s edges and colours, default COCO person) of a
    :class:`~keypoints.predictor.Prediction` on ``image`` in place, and a line with the FPS, the box mode and the
    number of instances; ``draw_unlabelled`` as in :func:`draw_pose`. A person with a track id is labelled
    ``#id score`` above its box."""
    meta = metadata if metadata is not None else DatasetMeta.coco_person()
    for person in prediction.people:
        track = getattr(person, "track_id", None)
        label = f"{person.score:.2f}" if track is None else f"#{track} {person.score:.2f}"
        draw_pose(image, person.keypoints, kpt_thr=kpt_thr, box=person.box if show_boxes else None,
                  label=label if show_boxes else None, metadata=meta,
                  draw_unlabelled=draw_unlabelled)
    parts = [f"{fps:.1f} FPS"] if fps is not None else []
    what = "people" if meta.category_name == "person" else f"{meta.category_name}(s)"
    parts += [f"boxes: {prediction.box_mode}", f"{len(prediction.people)} {what}"]
    return draw_text(image, " | ".join(parts))


def plot_training_curves(csv_path: str | Path, png_path: str | Path) -> Path | None:
    """One PNG with loss, learning rate and (when present) validation AP against the epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with Path(csv_path).open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None

    def series(key: str) -> tuple[list[float], list[float]]:
        pts = [(float(r["epoch"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]
        return [p[0] for p in pts], [p[1] for p in pts]

    panels = [k for k in (("train_loss", "val_loss"), ("lr",), ("AP", "AP50", "AR")) if any(series(x)[0] for x in k)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.4), squeeze=False)
    for ax, keys in zip(axes[0], panels):
        for key in keys:
            xs, ys = series(key)
            if xs:
                ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, ms=3, label=key)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
        if keys[0] == "lr":
            ax.set_yscale("log")
    fig.tight_layout()
    with atomic_path(png_path) as tmp:  # same suffix: matplotlib picks the format by it
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return Path(png_path)
