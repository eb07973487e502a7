"""Synthetic non-person keypoints: birds seen from above, 5 keypoints each (``tools/make_synthetic.py --kind bird``).

A dataset that is not a person, to run the whole flow (train, evaluate, demo, export) on other keypoints:

    0 beak, 1 head, 2 left_wing, 3 right_wing, 4 tail          (COCO category 16, "bird", as in COCO's detection set)
    skeleton: beak-head, head-left_wing, head-right_wing, head-tail
    flip pairs: left_wing/right_wing (inferred from the names); beak, head and tail are unpaired

Each bird is articulated: the head turns, each wing sweeps on its own (forward or back, unequal lengths) and the tail
bends. Seen from above with the beak pointing "up", the bird's left wing is on the image left; both wings share one
colour, so left and right follow from the heading (beak against tail) alone, which a horizontal flip keeps
consistent. Wing tips and the tail tip carry darker discs, the beak is a small orange triangle, the head a disc with
two eyes. Scenes reuse the person generator's backgrounds, occluders, noise and visibility rule (2 where the
keypoint's pixel shows the bird itself, 1 where something covers it, 0 outside the image).
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from ..metadata import DatasetMeta
from .synthetic import _add_noise, _background, _colour, _occluder, _paint, _shade, annotate_instances

BIRD = DatasetMeta(keypoint_names=("beak", "head", "left_wing", "right_wing", "tail"), flip_index=(0, 1, 3, 2, 4),
                   skeleton=((0, 1), (1, 2), (1, 3), (1, 4)), category_id=16, category_name="bird")


def sample_bird(rng: np.random.Generator, length: float, center: np.ndarray, rotation: float) -> np.ndarray:
    """Keypoints ``(5, 2)`` in image pixels of a bird ``length`` px from head to tail tip, body centre at ``center``,
    heading rotated by ``rotation`` degrees (0: beak up). Local frame: x to the image right, y down."""
    u = length * rng.uniform(0.9, 1.1, size=5)
    p = np.zeros((5, 2))
    head = np.array([0.0, -0.25 * u[0]])
    turn = math.radians(rng.uniform(-30, 30))
    p[1] = head
    p[0] = head + 0.14 * u[1] * np.array([math.sin(turn), -math.cos(turn)])
    for k, side in ((2, -1.0), (3, 1.0)):  # left wing on the image left when the beak points up
        shoulder = np.array([side * 0.08 * length, -0.08 * length])
        sweep = math.radians(rng.uniform(-35, 60))  # 0: straight out; positive: swept back
        reach = (0.38 + 0.12 * rng.random()) * u[2 + (k - 2)]
        p[k] = shoulder + reach * np.array([side * math.cos(sweep), math.sin(sweep)])
    bend = math.radians(rng.uniform(-30, 30))
    tail_base = np.array([0.0, 0.2 * length])
    p[4] = tail_base + 0.25 * u[4] * np.array([math.sin(bend), math.cos(bend)])
    c, s = math.cos(math.radians(rotation)), math.sin(math.radians(rotation))
    rot = np.array([[c, s], [-s, c]])  # counter-clockwise as displayed (y down)
    return p @ rot.T + center


def _bird_primitives(rng: np.random.Generator, kp: np.ndarray, length: float, heading: np.ndarray) -> list[tuple]:
    """Drawing primitives of one bird (body axis ``heading``, a unit vector towards the head), back to front:
    ``(kind, args, bgr)``."""
    hue = rng.uniform(0.0, 0.95)
    body = _colour(rng, (hue, hue + 0.05), rng.uniform(0.5, 0.9))
    wing = _colour(rng, (0.55, 0.95) if rng.random() < 0.5 else (0.1, 0.45), rng.uniform(0.6, 1.0))
    beak, head, tail = kp[0], kp[1], kp[4]
    beak_dir = (beak - head) / (np.linalg.norm(beak - head) + 1e-6)
    across = np.array([-heading[1], heading[0]])  # towards the right wing
    centre = head - heading * 0.25 * length  # body centre, behind the head
    tail_base = head - heading * 0.45 * length
    wing_t = max(2, int(0.09 * length))
    tip_r = max(2.0, 0.035 * length)
    prims: list[tuple] = []
    fan = np.stack([tail_base + across * 0.06 * length, tail_base - across * 0.06 * length,
                    tail - across * 0.08 * length, tail + across * 0.08 * length])
    prims.append(("poly", (fan,), _shade(body, 0.8)))
    prims.append(("circle", (tail, tip_r), _shade(body, 0.35)))
    for k in (2, 3):
        shoulder = centre + heading * 0.08 * length + (across if k == 3 else -across) * 0.08 * length
        mid = (shoulder + kp[k]) / 2
        prims += [("line", (shoulder, mid, wing_t), wing), ("line", (mid, kp[k], max(2, wing_t * 2 // 3)), wing),
                  ("circle", (kp[k], tip_r), _shade(wing, 0.3))]
    half = 0.5 * np.linalg.norm(head - tail_base)
    angle = math.degrees(math.atan2(heading[1], heading[0]))
    prims.append(("body", ((head + tail_base) / 2, (half, 0.11 * length), angle), body))
    tip = beak + beak_dir * 0.03 * length  # the triangle overshoots the keypoint, so its pixel is the bird's
    side = np.array([-beak_dir[1], beak_dir[0]])
    prims.append(("poly", (np.stack([tip, head + beak_dir * 0.05 * length + side * 0.035 * length,
                                     head + beak_dir * 0.05 * length - side * 0.035 * length]),), (40, 140, 240)))
    prims.append(("circle", (head, 0.085 * length), _shade(body, 1.25)))
    for sign in (-1, 1):
        prims.append(("circle", (head + beak_dir * 0.04 * length + sign * side * 0.04 * length,
                                 max(1.0, 0.015 * length)), (20, 20, 20)))
    return prims


def _paint_birds(canvas: np.ndarray, prims: list[tuple], value=None) -> None:
    """:func:`keypoints.data.synthetic._paint` plus the rotated body ellipse."""
    for kind, args, colour in prims:
        if kind == "body":
            (cx, cy), (a, b), angle = args
            cv2.ellipse(canvas, (int(round(cx)), int(round(cy))), (max(1, int(a)), max(1, int(b))), angle, 0, 360,
                        colour if value is None else value, -1, cv2.LINE_AA if value is None else cv2.LINE_8)
        else:
            _paint(canvas, [(kind, args, colour)], value)


def render_bird_image(rng: np.random.Generator, size: tuple[int, int] = (320, 240),
                      occlusion_prob: float = 0.3) -> tuple[np.ndarray, list[dict]]:
    """One scene of 1-4 birds: BGR image ``(H, W, 3)`` and its annotations (COCO fields without ids)."""
    w, h = size
    img = _background(rng, w, h)
    ids = np.zeros((h, w), np.uint8)
    n = int(rng.integers(1, 5))
    lengths = np.sort(min(w, h) * rng.uniform(0.3, 0.75 if n <= 2 else 0.55, size=n))
    placed: list[tuple[np.ndarray, float]] = []
    birds = []
    for i, length in enumerate(lengths):
        for _ in range(10):  # keep bodies apart so birds stay visible
            centre = np.array([rng.uniform(0.12, 0.88) * w, rng.uniform(0.15, 0.85) * h])
            if all(np.linalg.norm(centre - c) > 0.45 * max(length, ll) for c, ll in placed):
                break
        placed.append((centre, length))
        rotation = rng.normal(0, 25) if rng.random() < 0.7 else rng.uniform(-180, 180)
        kp = sample_bird(rng, length, centre, rotation)
        r = math.radians(rotation)
        prims = _bird_primitives(rng, kp, length, np.array([-math.sin(r), -math.cos(r)]))
        mask = np.zeros((h, w), np.uint8)
        _paint_birds(mask, prims, 1)
        _paint_birds(img, prims)
        ids[mask > 0] = i + 1
        if rng.random() < occlusion_prob:
            occ = _occluder(rng, kp[rng.integers(5)], length * rng.uniform(0.15, 0.3))
            _paint(img, occ)
            _paint(ids, occ, 255)
        birds.append((kp, mask))
    anns = annotate_instances(birds, ids)
    return _add_noise(rng, img), anns
