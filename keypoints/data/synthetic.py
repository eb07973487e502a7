"""Synthetic COCO keypoint datasets: articulated cartoon people (or birds) on cluttered backgrounds.

Deterministic by seed (each image draws from its own ``numpy`` generator seeded by ``(seed, split, index)``),
written in the standard layout so every COCO tool reads it unchanged:

    <out>/train2017/*.jpg, <out>/val2017/*.jpg
    <out>/annotations/person_keypoints_{train,val}2017.json
    <out>/person_detection_results/detections_val2017.json   (jittered true boxes + false positives, scored)

``kind="bird"`` writes 5-keypoint birds seen from above instead (:mod:`keypoints.data.synthetic_birds`), named
``bird_keypoints_*.json`` and ``bird_detection_results/``: a dataset that is not a person, for the whole flow.

People (1-4 per image) face the camera: the person's left side is on the image right when upright, and every left
limb has a warm colour (red-orange-yellow), every right limb a cool one (blue-cyan), torsos green or purple.
Upper limb segments are light and lower segments dark, so elbows and knees sit where the two shades meet; joints
carry darker discs, hands and feet mark wrists and ankles, the head has eyes, a nose, ears in the side colours and
hair on top. (Flip augmentation mirrors the colour cue away: a flipped warm limb is labelled "right". Left
and right stay learnable from the facing direction, always towards the camera, as on real photographs.)
Body proportions follow adult averages (in body heights: shoulders 0.24 wide, upper arm 0.17, forearm
0.15, thigh and shin 0.245) with per-person variation, random joint angles, scale, in-plane rotation and position.

Visibility: 2 where the joint's pixel shows the person itself, 1 where a later person or an occluder shape covers
it, 0 (and ``(0, 0, 0)``) outside the image. Box, area and polygon segmentation come from the person's full
(amodal) silhouette clipped to the image. Some images hold a crowd region of tiny people annotated as one
``iscrowd=1`` instance with an uncompressed RLE mask, as COCO does.
"""
from __future__ import annotations

import colorsys
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..metadata import DatasetMeta

SPLIT_CODES = {"train": 0, "val": 1}
FIRST_IMAGE_ID = {"train": 1, "val": 1_000_001}  # unique over both splits, as in COCO

PERSON = DatasetMeta.coco_person()
KINDS = ("person", "bird")
# Keypoint indices by name, for readable geometry below.
K = {name: i for i, name in enumerate(PERSON.keypoint_names)}

# Hue ranges (colorsys units, 0..1) of the left/right colour families and the torso.
LEFT_HUES, RIGHT_HUES = (0.0, 0.12), (0.52, 0.66)
TORSO_HUES = ((0.25, 0.42), (0.75, 0.86))
SKIN_BGR = ((173, 205, 241), (140, 180, 224), (96, 134, 198), (66, 94, 141), (45, 62, 100), (188, 216, 250))


def _colour(rng: np.random.Generator, hues: tuple[float, float], value: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(*hues), rng.uniform(0.65, 1.0), value)
    return int(b * 255), int(g * 255), int(r * 255)


def _shade(bgr: tuple[int, int, int], f: float) -> tuple[int, int, int]:
    return tuple(int(min(255, c * f)) for c in bgr)


# ----------------------------------------------------------------------------- pose


def sample_pose(rng: np.random.Generator, height: float, center: np.ndarray, rotation: float) -> np.ndarray:
    """Keypoints ``(17, 2)`` in image pixels of a frontal person ``height`` px tall (head top to ankles), mid-hip at
    ``center``, rotated by ``rotation`` degrees. Local frame: x to the person's left (image right), y down."""
    u = height * rng.uniform(0.92, 1.08, size=8)  # per-segment length variation
    down = lambda deg, side: np.array([side * math.sin(math.radians(deg)), math.cos(math.radians(deg))])  # noqa: E731
    p = np.zeros((PERSON.num_keypoints, 2))
    lean = rng.uniform(-12, 12)
    spine = -down(lean, 1.0)  # pelvis -> neck
    across = np.array([-spine[1], spine[0]])  # towards the person's left
    neck = spine * 0.30 * u[0]
    hip_w, sh_w = 0.085 * u[1], 0.12 * u[2]
    p[K["left_hip"]], p[K["right_hip"]] = across * hip_w, -across * hip_w
    p[K["left_shoulder"]], p[K["right_shoulder"]] = neck + across * sh_w, neck - across * sh_w
    tilt = math.radians(lean + rng.uniform(-20, 20))
    up = np.array([-math.sin(tilt), -math.cos(tilt)])  # same sense as the spine
    side = np.array([-up[1], up[0]])  # towards the person's left
    nose = neck + up * 0.12 * u[3]
    p[K["nose"]] = nose
    p[K["left_eye"]], p[K["right_eye"]] = nose + up * 0.03 * height + side * 0.028 * height, \
        nose + up * 0.03 * height - side * 0.028 * height
    p[K["left_ear"]], p[K["right_ear"]] = nose + up * 0.015 * height + side * 0.07 * height, \
        nose + up * 0.015 * height - side * 0.07 * height
    symmetric = rng.random() < 0.3  # mirrored limbs now and then (raised arms, standing straight)
    angles = {}
    for s, name in ((1.0, "left"), (-1.0, "right")):
        if symmetric and name == "right":
            a = angles["left"]
        else:
            shoulder = rng.uniform(-25, 175)
            hip = rng.uniform(-10, 40) if rng.random() < 0.85 else rng.uniform(40, 95)
            a = (shoulder, shoulder + rng.uniform(-30, 140), hip, hip + rng.uniform(-45, 35),
                 rng.uniform(0.8, 1.0, size=4))  # foreshortening of the four segments
        angles[name] = a
        sh, el, hp, kn, fore = a
        spine_deg = lean * s
        elbow = p[K[f"{name}_shoulder"]] + down(sh + spine_deg, s) * 0.17 * u[4] * fore[0]
        p[K[f"{name}_elbow"]] = elbow
        p[K[f"{name}_wrist"]] = elbow + down(el + spine_deg, s) * 0.15 * u[5] * fore[1]
        knee = p[K[f"{name}_hip"]] + down(hp, s) * 0.245 * u[6] * fore[2]
        p[K[f"{name}_knee"]] = knee
        p[K[f"{name}_ankle"]] = knee + down(kn, s) * 0.245 * u[7] * fore[3]
    c, s_ = math.cos(math.radians(rotation)), math.sin(math.radians(rotation))
    rot = np.array([[c, s_], [-s_, c]])  # counter-clockwise as displayed (y down)
    return p @ rot.T + center


def _person_primitives(rng: np.random.Generator, kp: np.ndarray, height: float) -> list[tuple]:
    """Drawing primitives of one person, back to front: ``(kind, args, bgr)``."""
    left_v, right_v = rng.uniform(0.85, 1.0), rng.uniform(0.85, 1.0)
    cols = {"left": _colour(rng, LEFT_HUES, left_v), "right": _colour(rng, RIGHT_HUES, right_v)}
    torso = _colour(rng, TORSO_HUES[rng.integers(2)], rng.uniform(0.45, 0.9))
    skin = SKIN_BGR[rng.integers(len(SKIN_BGR))]
    hair = _shade((30, 45, 70) if rng.random() < 0.7 else (60, 160, 210), rng.uniform(0.5, 1.2))
    arm_t, leg_t = max(2, int(0.055 * height)), max(2, int(0.07 * height))
    pt = lambda i: kp[i]  # noqa: E731
    prims: list[tuple] = []
    for name in ("right", "left"):  # legs
        hip, knee, ankle = (K[f"{name}_{j}"] for j in ("hip", "knee", "ankle"))
        foot = pt(ankle) + (pt(ankle) - pt(knee)) * 0.15
        prims += [("line", (pt(ankle), foot, leg_t), (40, 40, 40)),
                  ("line", (pt(hip), pt(knee), leg_t), cols[name]),
                  ("line", (pt(knee), pt(ankle), leg_t), _shade(cols[name], 0.55)),
                  ("circle", (pt(knee), leg_t * 0.45), _shade(cols[name], 0.35)),
                  ("circle", (pt(ankle), leg_t * 0.4), _shade(cols[name], 0.3))]
    quad = np.stack([pt(K["left_shoulder"]), pt(K["right_shoulder"]), pt(K["right_hip"]), pt(K["left_hip"])])
    prims.append(("poly", (quad,), torso))
    prims.append(("line", (pt(K["left_hip"]), pt(K["right_hip"]), leg_t), _shade(torso, 0.6)))
    for name in ("right", "left"):  # arms over the torso
        sh, el, wr = (K[f"{name}_{j}"] for j in ("shoulder", "elbow", "wrist"))
        hand = pt(wr) + (pt(wr) - pt(el)) * 0.2
        prims += [("line", (pt(sh), pt(el), arm_t), cols[name]),
                  ("line", (pt(el), pt(wr), arm_t), _shade(cols[name], 0.55)),
                  ("circle", (pt(sh), arm_t * 0.6), _shade(cols[name], 0.8)),
                  ("circle", (pt(el), arm_t * 0.45), _shade(cols[name], 0.35)),
                  ("circle", (hand, arm_t * 0.7), skin)]
    head_r = 0.075 * height
    nose, le, re = pt(K["nose"]), pt(K["left_eye"]), pt(K["right_eye"])
    up = (le + re) / 2 - nose
    up = up / (np.linalg.norm(up) + 1e-6)
    centre = nose + up * 0.02 * height
    prims.append(("line", (centre, (pt(K["left_shoulder"]) + pt(K["right_shoulder"])) / 2, arm_t), skin))  # neck
    prims.append(("circle", (centre, head_r), skin))
    angle = math.degrees(math.atan2(up[1], up[0]))  # hair: a pie slice on top of the head
    prims.append(("ellipse", (centre, head_r, angle - 60, angle + 60), hair))
    for name in ("left", "right"):  # ears on the head's edge, in the side colours
        prims.append(("circle", (pt(K[f"{name}_ear"]), max(1.5, 0.022 * height)), cols[name]))
    eye_r = max(1.0, 0.013 * height)
    prims += [("circle", (le, eye_r), (20, 20, 20)), ("circle", (re, eye_r), (20, 20, 20)),
              ("circle", (nose, max(1.0, 0.014 * height)), (40, 40, 150))]
    return prims


def _paint(canvas: np.ndarray, prims: list[tuple], value=None) -> None:
    """Draw primitives on ``canvas`` (their colours, or ``value`` everywhere, e.g. on a mask)."""
    shift = 4  # sub-pixel precision of OpenCV's drawing (coordinates x 16)
    f = float(1 << shift)
    ip = lambda q: (int(math.floor(q[0] * f + 0.5)), int(math.floor(q[1] * f + 0.5)))  # noqa: E731
    aa = cv2.LINE_AA if value is None else cv2.LINE_8  # masks stay binary
    for kind, args, colour in prims:
        c = colour if value is None else value
        if kind == "line":
            cv2.line(canvas, ip(args[0]), ip(args[1]), c, int(args[2]), aa, shift)
        elif kind == "circle":
            cv2.circle(canvas, ip(args[0]), int(round(args[1] * f)), c, -1, aa, shift)
        elif kind == "poly":
            cv2.fillPoly(canvas, [np.round(args[0] * f).astype(np.int32)], c, aa, shift)
        elif kind == "ellipse":
            centre, r, a0, a1 = args
            cv2.ellipse(canvas, ip(centre), (int(r * f), int(r * f)), 0, a0, a1, c, -1, aa, shift)
        elif kind == "rect":
            cv2.rectangle(canvas, ip(args[0]), ip(args[1]), c, -1, aa, shift)


# ----------------------------------------------------------------------------- scene


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Gradient + blotchy low-frequency noise + random shapes + fine noise, BGR uint8 ``(h, w, 3)``."""
    gw, gh = int(rng.integers(3, 24)), int(rng.integers(3, 18))
    c0, c1 = rng.uniform(0, 255, size=3), rng.uniform(0, 255, size=3)
    t = np.linspace(0, 1, gw)[None, :, None] if rng.random() < 0.5 else np.linspace(0, 1, gh)[:, None, None]
    small = c0 + (c1 - c0) * t + rng.uniform(-50, 50, size=(gh, gw, 3))  # gradient + blotches, upsampled once
    img = cv2.resize(np.clip(small, 0, 255).astype(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR)
    for _ in range(int(rng.integers(4, 16))):
        colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
        x, y = int(rng.integers(-20, w)), int(rng.integers(-20, h))
        kind = rng.integers(4)
        if kind == 0:
            cv2.rectangle(img, (x, y), (x + int(rng.integers(5, w // 2)), y + int(rng.integers(5, h // 2))), colour, -1)
        elif kind == 1:
            cv2.circle(img, (x, y), int(rng.integers(3, h // 4)), colour, -1, cv2.LINE_AA)
        elif kind == 2:
            cv2.line(img, (x, y), (int(rng.integers(0, w)), int(rng.integers(0, h))), colour, int(rng.integers(1, 6)),
                     cv2.LINE_AA)
        else:
            pts = rng.integers(-10, [w + 10, h + 10], size=(int(rng.integers(3, 6)), 2)).astype(np.int32)
            cv2.fillPoly(img, [pts], colour, cv2.LINE_AA)
    return img


def _add_noise(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Fine sensor-like noise over the whole picture (people included), saturating."""
    noise = rng.standard_normal(img.shape[:2], dtype=np.float32) * rng.uniform(2, 8)
    return cv2.add(img, cv2.merge([noise, noise, noise]), dtype=cv2.CV_8U)


def _occluder(rng: np.random.Generator, at: np.ndarray, size: float) -> list[tuple]:
    colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
    half = size * rng.uniform(0.5, 1.0, size=2) / 2
    c = at + rng.uniform(-0.5, 0.5, size=2) * half
    if rng.random() < 0.5:
        return [("rect", (c - half, c + half), colour)]
    return [("circle", (c, half[0]), colour)]


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE of a binary mask ``(H, W)``: column-major run lengths starting with zeros."""
    flat = mask.T.reshape(-1).astype(np.uint8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts = [0] + counts
    return {"counts": [int(c) for c in counts], "size": [int(mask.shape[0]), int(mask.shape[1])]}


def _polygons(mask: np.ndarray) -> list[list[float]]:
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]


def render_image(rng: np.random.Generator, size: tuple[int, int] = (320, 240), crowd_prob: float = 0.15,
                 occlusion_prob: float = 0.35) -> tuple[np.ndarray, list[dict]]:
    """One scene: BGR image ``(H, W, 3)`` and its annotations (COCO fields without ``id``/``image_id``)."""
    w, h = size
    img = _background(rng, w, h)
    ids = np.zeros((h, w), np.uint8)  # who owns each pixel: person index + 1, 255 for occluders and the crowd
    anns = []
    if rng.random() < crowd_prob:
        cw, ch = int(w * rng.uniform(0.25, 0.45)), int(h * rng.uniform(0.2, 0.35))
        x0, y0 = int(rng.integers(0, w - cw)), int(rng.integers(0, h - ch))
        crowd = np.zeros((h, w), np.uint8)
        for _ in range(int(rng.integers(6, 14))):
            ph = ch * rng.uniform(0.45, 0.8)
            centre = np.array([x0 + rng.uniform(0.1, 0.9) * cw, y0 + ch - ph * 0.55 + rng.uniform(-0.1, 0.1) * ch])
            prims = _person_primitives(rng, sample_pose(rng, ph, centre, rng.normal(0, 8)), ph)
            _paint(img, prims)
            _paint(crowd, prims, 1)
        crowd[:y0], crowd[y0 + ch:], crowd[:, :x0], crowd[:, x0 + cw:] = 0, 0, 0, 0
        ids[crowd > 0] = 255
        ys, xs = np.nonzero(crowd)
        if len(xs):
            anns.append({"iscrowd": 1, "segmentation": uncompressed_rle(crowd), "area": float(crowd.sum()),
                         "bbox": [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
                                  float(ys.max() - ys.min() + 1)],
                         "num_keypoints": 0, "keypoints": [0] * (3 * PERSON.num_keypoints)})
    n = int(rng.integers(1, 5))
    heights = np.sort(h * rng.uniform(0.35, 0.95 if n <= 2 else 0.7, size=n))  # small (far) first
    people = []
    for height in heights:
        for _ in range(10):  # keep mid-hips apart so people stay visible
            centre = np.array([rng.uniform(0.08, 0.92) * w, rng.uniform(0.3, 0.85) * h])
            if all(np.linalg.norm(centre - c) > 0.3 * max(height, hh) for c, hh in people):
                break
        people.append((centre, height))
    persons = []
    for i, (centre, height) in enumerate(people):
        r = rng.random()
        rotation = np.clip(rng.normal(0, 15), -45, 45) if r < 0.8 else rng.uniform(-100, 100) if r < 0.95 \
            else rng.uniform(-180, 180)
        kp = sample_pose(rng, height, centre, rotation)
        prims = _person_primitives(rng, kp, height)
        mask = np.zeros((h, w), np.uint8)
        _paint(mask, prims, 1)
        _paint(img, prims)
        ids[mask > 0] = i + 1
        if rng.random() < occlusion_prob:
            occ = _occluder(rng, kp[rng.integers(PERSON.num_keypoints)], height * rng.uniform(0.15, 0.35))
            _paint(img, occ)
            _paint(ids, occ, 255)
        persons.append((kp, mask))
    anns += annotate_instances(persons, ids)
    return _add_noise(rng, img), anns


def annotate_instances(instances: list[tuple[np.ndarray, np.ndarray]], ids: np.ndarray) -> list[dict]:
    """COCO annotations (without ``id``/``image_id``/``category_id``) of rendered instances: ``(keypoints (K, 2),
    amodal mask (H, W))`` each, drawn in order; ``ids`` (H, W) holds who owns each pixel (instance index + 1, 255
    for occluders). Visibility: 2 where the keypoint's pixel shows the instance itself, 1 where something covers
    it, 0 (and (0, 0, 0)) outside the image. Instances whose mask is empty get no annotation."""
    h, w = ids.shape
    anns = []
    for i, (kp, mask) in enumerate(instances):
        area = cv2.countNonZero(mask)
        if area == 0:
            continue
        bx, by, bw, bh = cv2.boundingRect(mask)
        keypoints = []
        for x, y in kp:
            if 0 <= x <= w - 1 and 0 <= y <= h - 1:
                v = 2 if ids[int(round(y)), int(round(x))] == i + 1 else 1
                keypoints += [round(float(x), 2), round(float(y), 2), v]
            else:
                keypoints += [0, 0, 0]
        anns.append({"iscrowd": 0, "segmentation": _polygons(mask), "area": float(area),
                     "bbox": [float(bx), float(by), float(bw), float(bh)],
                     "num_keypoints": int(sum(v > 0 for v in keypoints[2::3])), "keypoints": keypoints})
    return anns


# ----------------------------------------------------------------------------- files


def _detections(rng: np.random.Generator, image_id: int, anns: list[dict], w: int, h: int,
                category_id: int = PERSON.category_id) -> list[dict]:
    """Detector-like boxes: most true people with jitter and high scores, a few misses and false positives."""
    dets = []
    for ann in anns:
        if ann["iscrowd"] or rng.random() < 0.05:
            continue
        x, y, bw, bh = ann["bbox"]
        cx, cy = x + bw / 2 + rng.normal(0, 0.05) * bw, y + bh / 2 + rng.normal(0, 0.05) * bh
        bw, bh = bw * math.exp(rng.normal(0, 0.08)), bh * math.exp(rng.normal(0, 0.08))
        dets.append({"image_id": image_id, "category_id": category_id,
                     "bbox": [round(cx - bw / 2, 2), round(cy - bh / 2, 2), round(bw, 2), round(bh, 2)],
                     "score": round(float(np.clip(rng.normal(0.85, 0.1), 0.3, 1.0)), 4)})
    for _ in range(int(rng.poisson(0.5))):
        bw, bh = rng.uniform(0.1, 0.4) * w, rng.uniform(0.2, 0.6) * h
        dets.append({"image_id": image_id, "category_id": category_id,
                     "bbox": [round(rng.uniform(0, w - bw), 2), round(rng.uniform(0, h - bh), 2), round(bw, 2),
                              round(bh, 2)],
                     "score": round(float(rng.uniform(0.05, 0.5)), 4)})
    return dets


def _kind(kind: str):
    """(metadata, renderer) of a synthetic ``kind``."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not valid; choose one of {', '.join(KINDS)}")
    if kind == "person":
        return PERSON, render_image
    from .synthetic_birds import BIRD, render_bird_image

    return BIRD, render_bird_image


def generate_split(out: str | Path, split: str, num_images: int, seed: int = 0,
                   size: tuple[int, int] = (320, 240), kind: str = "person") -> tuple[dict, list[dict]]:
    """Render and write ``num_images`` JPEGs of ``split``; return the COCO dict and the detections list."""
    meta, render = _kind(kind)
    out = Path(out)
    image_dir = out / f"{split}2017"
    image_dir.mkdir(parents=True, exist_ok=True)
    w, h = size
    images, annotations, detections = [], [], []
    for index in range(num_images):
        rng = np.random.default_rng([seed, SPLIT_CODES[split], index])
        image_id = FIRST_IMAGE_ID[split] + index
        img, anns = render(rng, size)
        file_name = f"{image_id:012d}.jpg"
        cv2.imwrite(str(image_dir / file_name), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        images.append({"id": image_id, "file_name": file_name, "width": w, "height": h, "license": 0})
        for ann in anns:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": meta.category_id,
                                **ann})
        if split == "val":
            detections += _detections(rng, image_id, anns, w, h, meta.category_id)
    coco = {
        "info": {"description": f"synthetic {kind} keypoints ({split}, seed {seed})", "version": "1.0"},
        "licenses": [{"id": 0, "name": "generated, no restrictions", "url": ""}],
        "images": images, "annotations": annotations,
        "categories": [meta.to_coco_category()],
    }
    return coco, detections


def make_synthetic_dataset(out: str | Path, train_images: int = 500, val_images: int = 100, seed: int = 0,
                           size: tuple[int, int] = (320, 240), kind: str = "person") -> dict:
    """Write the whole dataset of ``kind`` (person | bird) under ``out``; returns a summary (paths, counts,
    seconds)."""
    _kind(kind)
    if train_images < 0 or val_images < 0 or min(size) < 32:
        raise ValueError(f"need non-negative image counts and a size of at least 32x32, got {train_images}, "
                         f"{val_images}, {size}")
    out = Path(out)
    start = time.perf_counter()
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    summary: dict = {"root": str(out)}
    for split, n in (("train", train_images), ("val", val_images)):
        coco, dets = generate_split(out, split, n, seed, size, kind)
        ann_file = out / "annotations" / f"{kind}_keypoints_{split}2017.json"
        ann_file.write_text(json.dumps(coco, separators=(",", ":")))
        summary[split] = {"images": n, "annotations": len(coco["annotations"]),
                          "with_keypoints": sum(a["num_keypoints"] > 0 for a in coco["annotations"]),
                          "crowd": sum(a["iscrowd"] for a in coco["annotations"]), "ann_file": str(ann_file)}
        if split == "val":
            det_file = out / f"{kind}_detection_results" / "detections_val2017.json"
            det_file.parent.mkdir(parents=True, exist_ok=True)
            det_file.write_text(json.dumps(dets, separators=(",", ":")))
            summary["detections"] = {"boxes": len(dets), "file": str(det_file)}
    summary["seconds"] = round(time.perf_counter() - start, 2)
    return summary


# ----------------------------------------------------------------------------- video


def synthetic_video_frames(num_frames: int = 8, size: tuple[int, int] = (640, 480), seed: int = 0,
                           max_people: int = 3) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A smooth clip of one synthetic scene (:func:`keypoints.data.synthetic.render_image`) with 1..``max_people``
    people: the camera pans and zooms slowly across it. Returns BGR frames ``(H, W, 3)`` and each frame's true
    person boxes ``(N, 4)`` xywh (people with keypoints only)."""
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
    from ..media import open_video_writer

    writer, target = open_video_writer(path, fps, size)
    for frame in frames:
        writer.write(frame)
    writer.release()
    return target, boxes


@dataclass
class SyntheticClip:
    """A generated clip and its truth: ``frames`` BGR ``(H, W, 3)``; per frame, ``keypoints`` ``(P, K, 3)`` (x, y
    in image pixels, COCO visibility 0/1/2, ``(0, 0, 0)`` outside the frame) and ``boxes`` ``(P, 4)`` xywh (amodal,
    clipped to the frame) of the same ``P`` people in the same order: the index is the person's identity."""

    frames: list[np.ndarray]
    keypoints: list[np.ndarray]
    boxes: list[np.ndarray]
    fps: float


def synthetic_people_clip(num_frames: int = 90, size: tuple[int, int] = (640, 480), seed: int = 0, people: int = 2,
                          fps: float = 30.0, speed: float = 1.0) -> SyntheticClip:
    """``people`` people who move on their own over one background, with fresh sensor noise in every frame. Each
    keeps to a vertical strip of its own (the width split in ``people``), so paths never cross: the mid-hip sways
    sideways (up to a fifth of the strip) and up and down along sines of 1.5-4 s periods, and the limbs swing
    between two random poses (1-2.5 s). ``speed`` scales the travel (0: people stand still; only the noise
    changes). Deterministic by ``seed``."""
    if num_frames < 1 or people < 1 or fps <= 0 or speed < 0:
        raise ValueError(f"need num_frames >= 1, people >= 1, fps > 0 and speed >= 0, got {num_frames}, {people}, "
                         f"{fps}, {speed}")
    w, h = size
    background = _background(np.random.default_rng([seed, 0]), w, h)
    strip, walkers = w / people, []
    for i in range(people):
        rng = np.random.default_rng([seed, 1, i])
        height = h * rng.uniform(0.45, 0.8)
        poses = [sample_pose(rng, height, np.zeros(2), rng.normal(0, 6)) for _ in range(2)]
        centre = np.array([(i + 0.5) * strip, h * rng.uniform(0.48, 0.56)])
        reach = speed * np.array([rng.uniform(0.1, 0.2) * strip, rng.uniform(0.0, 0.04) * h])
        periods, phases = rng.uniform([1.5, 1.5, 1.0], [4.0, 4.0, 2.5]), rng.uniform(0, 2 * np.pi, 3)
        walkers.append((height, poses, centre, reach, periods, phases))
    frames, all_keypoints, all_boxes = [], [], []
    for f in range(num_frames):
        t = f / fps
        img, ids, persons = background.copy(), np.zeros((h, w), np.uint8), []
        for i, (height, (pose_a, pose_b), centre, reach, periods, phases) in enumerate(walkers):
            swing = 0.5 - 0.5 * np.cos(2 * np.pi * t / periods[2] * speed + phases[2])
            offset = centre + reach * np.sin(2 * np.pi * t / periods[:2] + phases[:2])
            kp = pose_a + (pose_b - pose_a) * swing + offset
            prims = _person_primitives(np.random.default_rng([seed, 2, i]), kp, height)  # same colours every frame
            mask = np.zeros((h, w), np.uint8)
            _paint(mask, prims, 1)
            _paint(img, prims)
            ids[mask > 0] = i + 1
            persons.append((kp, mask))
        anns = annotate_instances(persons, ids)
        visibility = np.array([a["keypoints"][2::3] for a in anns], dtype=np.float64)
        keypoints = np.concatenate([np.stack([kp for kp, _ in persons]), visibility[..., None]], axis=2)
        keypoints[visibility == 0] = 0
        frames.append(_add_noise(np.random.default_rng([seed, 3, f]), img))
        all_keypoints.append(keypoints)
        all_boxes.append(np.array([a["bbox"] for a in anns], dtype=np.float64))
    return SyntheticClip(frames, all_keypoints, all_boxes, float(fps))
