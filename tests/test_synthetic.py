"""Synthetic dataset generator: deterministic, valid COCO (pycocotools COCO + COCOeval), usable by the dataset."""
import colorsys
import contextlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from keypoints.codec import HeatmapCodec
from keypoints.constants import KEYPOINT_NAMES, SKELETON
from keypoints.data.coco import CocoKeypointDataset
from keypoints.data.synthetic import (LEFT_HUES, RIGHT_HUES, make_synthetic_dataset, render_image,
                                      uncompressed_rle)
from keypoints.data.transforms import TopDownTransform

ROOT = Path(__file__).resolve().parents[1]
FILES = ("annotations/person_keypoints_train2017.json", "annotations/person_keypoints_val2017.json",
         "person_detection_results/detections_val2017.json")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    summary = make_synthetic_dataset(out, train_images=12, val_images=8, seed=3)
    return out, summary


def _quiet(fn, *args):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def test_deterministic_by_seed(synth, tmp_path):
    out, _ = synth
    make_synthetic_dataset(tmp_path / "same", train_images=12, val_images=8, seed=3)
    make_synthetic_dataset(tmp_path / "other", train_images=12, val_images=8, seed=4)
    for rel in FILES + ("train2017/000000000001.jpg", "val2017/000001000008.jpg"):
        assert (out / rel).read_bytes() == (tmp_path / "same" / rel).read_bytes(), rel
        assert (out / rel).read_bytes() != (tmp_path / "other" / rel).read_bytes(), rel
    # Image i does not depend on how many images are generated.
    make_synthetic_dataset(tmp_path / "fewer", train_images=2, val_images=0, seed=3)
    assert (out / "train2017/000000000002.jpg").read_bytes() == \
        (tmp_path / "fewer" / "train2017/000000000002.jpg").read_bytes()


def test_valid_coco_keypoint_files(synth):
    out, summary = synth
    for split, n in (("train", 12), ("val", 8)):
        coco = _quiet(COCO, str(out / f"annotations/person_keypoints_{split}2017.json"))
        assert len(coco.imgs) == n and len(list((out / f"{split}2017").glob("*.jpg"))) == n
        cat = coco.loadCats(1)[0]
        assert cat["keypoints"] == list(KEYPOINT_NAMES)
        assert cat["skeleton"] == [[a + 1, b + 1] for a, b in SKELETON]
        for ann in coco.anns.values():
            assert ann["category_id"] == 1 and set(ann) >= {"id", "image_id", "bbox", "area", "iscrowd",
                                                            "num_keypoints", "keypoints", "segmentation"}
            k = np.asarray(ann["keypoints"], float).reshape(17, 3)
            assert ann["num_keypoints"] == int((k[:, 2] > 0).sum())
            assert (k[k[:, 2] == 0] == 0).all()  # unlabelled -> (0, 0, 0)
            img = coco.imgs[ann["image_id"]]
            x, y, w, h = ann["bbox"]
            assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= img["width"] and y + h <= img["height"]
            lab = k[k[:, 2] > 0]
            assert (lab[:, 0] >= x - 1).all() and (lab[:, 0] <= x + w + 1).all()
            assert (lab[:, 1] >= y - 1).all() and (lab[:, 1] <= y + h + 1).all()
            mask = coco.annToMask(ann)  # polygons and crowd RLE decode
            assert mask.shape == (img["height"], img["width"]) and mask.sum() > 0
        assert summary[split]["annotations"] == len(coco.anns)
    assert summary["train"]["crowd"] + summary["val"]["crowd"] > 0
    v = np.array([a["keypoints"][2::3] for a in coco.anns.values() if not a["iscrowd"]])
    assert (v == 1).any() and (v == 2).any()  # occluded joints exist


def test_cocoeval_scores_ground_truth_as_perfect(synth):
    out, _ = synth
    gt = _quiet(COCO, str(out / "annotations/person_keypoints_val2017.json"))
    results = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
               for a in gt.anns.values() if not a["iscrowd"] and a["num_keypoints"] > 0]
    dt = _quiet(gt.loadRes, results)
    ev = COCOeval(gt, dt, iouType="keypoints")
    _quiet(ev.evaluate)
    _quiet(ev.accumulate)
    _quiet(ev.summarize)
    assert ev.stats[0] == pytest.approx(1.0) and ev.stats[5] == pytest.approx(1.0)


def test_detections_file(synth):
    out, summary = synth
    dets = json.loads((out / "person_detection_results/detections_val2017.json").read_text())
    gt = json.loads((out / "annotations/person_keypoints_val2017.json").read_text())
    ids = {im["id"] for im in gt["images"]}
    assert len(dets) == summary["detections"]["boxes"] > 0
    assert all(d["image_id"] in ids and d["category_id"] == 1 and 0 < d["score"] <= 1 for d in dets)
    ds = CocoKeypointDataset(out / "annotations/person_keypoints_val2017.json", out / "val2017",
                             HeatmapCodec((96, 128), (24, 32), 1.0), TopDownTransform((96, 128)),
                             boxes=str(out / "person_detection_results/detections_val2017.json"))
    assert len(ds) == len(dets) and ds[0]["image"].shape == (3, 128, 96)


def test_dataset_reads_synthetic_training_data(synth):
    out, summary = synth
    ds = CocoKeypointDataset(out / "annotations/person_keypoints_train2017.json", out / "train2017",
                             HeatmapCodec((96, 128), (24, 32), 1.0), TopDownTransform((96, 128)))
    assert len(ds) == summary["train"]["with_keypoints"] - ds.stats["dropped"].get("empty_box", 0)
    item = ds[0]
    assert item["target_weight"].sum() > 0 and item["heatmaps"].max() == pytest.approx(1.0)


def _hue(bgr):
    h, s, v = colorsys.rgb_to_hsv(bgr[2] / 255, bgr[1] / 255, bgr[0] / 255)
    return h, s


def test_left_and_right_limbs_have_their_colour_families():
    """At visible elbows and knees the pixel hue is warm on the left side and cool on the right side."""
    left_ok = right_ok = total = 0
    for seed in range(12):
        img, anns = render_image(np.random.default_rng([99, seed]))
        for ann in anns:
            k = np.asarray(ann["keypoints"], float).reshape(17, 3)
            for j in (7, 8, 13, 14):  # elbows and knees: (left, right) pairs
                if k[j, 2] != 2:
                    continue
                x, y = np.round(k[j, :2]).astype(int)
                # The joint disc is a darker shade of its limb's colour: same hue.
                h, s = _hue(img[y, x].astype(float))
                total += 1
                warm = h <= LEFT_HUES[1] + 0.05 or h >= 0.95
                cool = RIGHT_HUES[0] - 0.05 <= h <= RIGHT_HUES[1] + 0.05
                left_ok += j in (7, 13) and warm
                right_ok += j in (8, 14) and cool
    assert total > 40 and (left_ok + right_ok) / total > 0.8


def test_uncompressed_rle_round_trip():
    from pycocotools import mask as mask_utils
    m = np.zeros((7, 5), np.uint8)
    m[0, 0] = m[2:5, 1:4] = m[6, 4] = 1
    rle = uncompressed_rle(m)
    np.testing.assert_array_equal(mask_utils.decode(mask_utils.frPyObjects(rle, 7, 5)), m)
    assert uncompressed_rle(np.zeros((3, 3), np.uint8))["counts"] == [9]


def test_cli(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import make_synthetic
    finally:
        sys.path.pop(0)
    args = make_synthetic.get_args_parser().parse_args(
        ["--out", str(tmp_path), "--train-images", "2", "--val-images", "1", "--size", "160", "120"])
    summary = make_synthetic.main(args)
    assert summary["train"]["images"] == 2 and json.loads(capsys.readouterr().out)["val"]["images"] == 1
    gt = json.loads((tmp_path / "annotations/person_keypoints_val2017.json").read_text())
    assert (gt["images"][0]["width"], gt["images"][0]["height"]) == (160, 120)
    before = (tmp_path / "annotations/person_keypoints_val2017.json").read_bytes()
    with pytest.raises(ValueError, match="already holds a dataset.*--overwrite"):  # nothing is replaced unasked
        make_synthetic.main(make_synthetic.get_args_parser().parse_args(["--out", str(tmp_path), "--seed", "9"]))
    assert (tmp_path / "annotations/person_keypoints_val2017.json").read_bytes() == before


def test_birds_are_a_valid_non_person_dataset(tmp_path):
    """--kind bird: 5-keypoint birds (category 16) in their own files; the ground truth scores AP 1 with the dataset's
    sigmas; the bird's left wing is on its left of the heading (beak up: image left), as the flip pairs need."""
    from keypoints.config import load_config
    from keypoints.data import build_dataset
    from keypoints.data.synthetic_birds import BIRD, sample_bird

    summary = make_synthetic_dataset(tmp_path, train_images=4, val_images=3, seed=5, kind="bird")
    assert summary["val"]["with_keypoints"] > 0
    val = tmp_path / "annotations/bird_keypoints_val2017.json"
    coco = _quiet(COCO, str(val))
    assert coco.dataset["categories"] == [BIRD.to_coco_category()]
    anns = [a for a in coco.anns.values()]
    assert all(a["category_id"] == 16 and len(a["keypoints"]) == 15 for a in anns)
    results = [{"image_id": a["image_id"], "category_id": 16, "keypoints": a["keypoints"], "score": 1.0}
               for a in anns if a["num_keypoints"] > 0]
    ev = COCOeval(coco, coco.loadRes(results), iouType="keypoints")
    ev.params.kpt_oks_sigmas = np.asarray(BIRD.sigmas)
    _quiet(lambda: (ev.evaluate(), ev.accumulate(), ev.summarize()))
    assert ev.stats[0] == pytest.approx(1.0)
    dets = json.loads((tmp_path / "bird_detection_results/detections_val2017.json").read_text())
    assert dets and {d["category_id"] for d in dets} == {16}
    cfg = load_config(ROOT / "configs/synthetic_bird.yaml", [f"data.root={tmp_path}"])
    ds = build_dataset(cfg, "train")
    assert ds.metadata == BIRD and ds[0]["heatmaps"].shape[0] == 5
    kp = sample_bird(np.random.default_rng(0), 100.0, np.array([160.0, 120.0]), rotation=0.0)
    beak, head, left, right, tail = kp
    assert beak[1] < head[1] < tail[1] and left[0] < head[0] < right[0]
