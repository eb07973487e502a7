"""CocoKeypointDataset and the data builders on the real COCO samples in tests/data."""
import json
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from keypoints.codec import HeatmapCodec
from keypoints.config import load_config
from keypoints.data import build_dataloader, build_dataset
from keypoints.data.coco import CocoKeypointDataset
from keypoints.data.transforms import TopDownTransform
from keypoints.geometry import affine_points, box_to_center_scale, get_affine_transform

COCO_MINI = Path(__file__).resolve().parent / "data" / "coco_mini"
COCO_MMPOSE4 = Path(__file__).resolve().parent / "data" / "coco_mmpose4"
INPUT = (192, 256)
DETS = COCO_MMPOSE4 / "person_detection_results" / "detections_person.json"


def _cfg(root=COCO_MINI, *extra):
    return load_config(None, [f"data.root={root}", "data.workers=0", *extra])


def _expected(ann_file):
    """Plain-Python reading of the filter rules: (person annotations, with keypoints, crowd, kept instance ids)."""
    data = json.loads(ann_file.read_text())
    size = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
    persons = [a for a in data["annotations"] if a["category_id"] == 1]
    kept = []
    for a in persons:
        x, y, w, h = a["bbox"]
        width, height = size[a["image_id"]]
        x1, y1 = max(0, x), max(0, y)
        x2, y2 = min(width - 1, x1 + max(0, w)), min(height - 1, y1 + max(0, h))
        if not a["iscrowd"] and a["num_keypoints"] > 0 and a["area"] > 0 and x2 > x1 and y2 > y1:
            kept.append(a["id"])
    return (len(persons), sum(a["num_keypoints"] > 0 for a in persons), sum(a["iscrowd"] for a in persons), kept)


@pytest.fixture(scope="module")
def mini_sets():
    cfg = _cfg()
    return build_dataset(cfg, "train"), build_dataset(cfg, "val")


def test_coco_mini_counts(mini_sets):
    train, val = mini_sets
    for ds, split, literal in ((train, "train", (87, 53, 1)), (val, "val", (65, 40, 0))):
        persons, with_kpts, crowd, kept = _expected(COCO_MINI / "annotations" / f"person_keypoints_{split}2017.json")
        assert (persons, with_kpts, crowd) == literal  # the numbers of tests/data/README.md
        assert len(ds) == len(kept) == literal[1]
        assert sorted(ds.ann_ids.tolist()) == sorted(kept)
        assert ds.stats["instances_total"] == persons and ds.stats["instances_kept"] == len(kept)
        assert sum(ds.stats["dropped"].values()) == persons - len(kept)
        assert ds.box_source == "ground-truth boxes"
    assert train.stats["dropped"] == {"crowd": 1, "no_keypoints": 33}
    assert val.stats["dropped"] == {"no_keypoints": 25}
    assert (train.stats["images_total"], train.stats["images_kept"]) == (30, 17)


def test_crowd_excluded(mini_sets):
    train, _ = mini_sets
    data = json.loads((COCO_MINI / "annotations" / "person_keypoints_train2017.json").read_text())
    crowd_ids = [a["id"] for a in data["annotations"] if a["iscrowd"]]
    assert len(crowd_ids) == 1 and crowd_ids[0] not in train.ann_ids


def test_item_matches_direct_read_and_warp(mini_sets):
    _, val = mini_sets
    i = 5
    item = val[i]
    assert item["image"].shape == (3, 256, 192) and item["image"].dtype == torch.uint8
    assert item["heatmaps"].shape == (17, 64, 48) and item["heatmaps"].dtype == torch.float32
    assert item["target_weight"].shape == (17,) and item["target_weight"].dtype == torch.float32
    assert item["center"].dtype == item["scale"].dtype == item["box_score"].dtype == torch.float32
    assert item["box_score"].shape == () and item["box_score"].item() == 1.0 and item["index"] == i
    assert item["category_id"] == 1 and val.instance(i)["category_id"] == 1
    ann = val.coco.anns[int(val.ann_ids[i])]
    img_info = val.coco.imgs[ann["image_id"]]
    assert item["image_id"] == ann["image_id"]
    center, scale = box_to_center_scale(np.asarray(ann["bbox"]), 0.75, 1.25)
    np.testing.assert_allclose(item["center"].numpy(), center, rtol=1e-6)
    np.testing.assert_allclose(item["scale"].numpy(), scale, rtol=1e-6)
    flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    bgr = cv2.imread(str(COCO_MINI / "val2017" / img_info["file_name"]), flags)
    assert bgr.shape[:2] == (img_info["height"], img_info["width"])
    m = get_affine_transform(center, scale, 0.0, INPUT)
    ref = cv2.warpAffine(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), m, INPUT, flags=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(item["image"].permute(1, 2, 0).numpy(), ref)
    kpts = np.asarray(ann["keypoints"], np.float32).reshape(17, 3)
    np.testing.assert_allclose(item["keypoints"][:, :2].numpy(), affine_points(kpts[:, :2], m), atol=1e-3)
    labelled = kpts[:, 2] > 0
    assert (item["target_weight"].numpy()[~labelled] == 0).all() and item["target_weight"][labelled].sum() > 0
    # The heatmap peaks sit on the nearest cell of each supervised joint.
    for j in np.flatnonzero(item["target_weight"].numpy()):
        peak = np.unravel_index(item["heatmaps"][j].argmax().item(), (64, 48))
        cell = np.floor(item["keypoints"][j, :2].numpy() / 4 + 0.5)
        if 0 <= cell[0] < 48 and 0 <= cell[1] < 64:
            assert (peak[1], peak[0]) == tuple(cell.astype(int))


def test_training_loader_batches(mini_sets):
    train, _ = mini_sets
    cfg = _cfg()
    loader = build_dataloader(train, cfg, train=True, batch_size=4)
    assert loader.drop_last and loader.num_workers == 0 and len(loader) == 53 // 4
    batch = next(iter(loader))
    assert batch["image"].shape == (4, 3, 256, 192) and batch["image"].dtype == torch.uint8
    assert batch["heatmaps"].shape == (4, 17, 64, 48) and batch["target_weight"].shape == (4, 17)
    assert batch["image_id"].dtype == torch.int64 and batch["box_score"].shape == (4,)
    val_loader = build_dataloader(train, cfg, train=False)
    assert not val_loader.drop_last and val_loader.batch_size == cfg.test.batch_size
    assert [i for i, _ in val_loader.sampler] == list(range(len(train)))  # evaluation keeps the order
    with pytest.raises(ValueError, match="process group"):
        build_dataloader(train, cfg, train=True, distributed=True)


def test_seeded_samples_do_not_depend_on_workers():
    """SeededSampler + per-sample reseeding: same batches with 0 or 2 workers; a new epoch draws anew."""
    batches = {}
    for workers in (0, 2):
        cfg = _cfg(COCO_MINI, f"data.workers={workers}")
        loader = build_dataloader(build_dataset(cfg, "train"), cfg, train=True, batch_size=3)
        loader.sampler.set_epoch(1)
        it = iter(loader)
        batches[workers] = [next(it) for _ in range(2)]
    for a, b in zip(batches[0], batches[2]):
        assert torch.equal(a["index"], b["index"]) and torch.equal(a["image"], b["image"])
        assert torch.equal(a["heatmaps"], b["heatmaps"])
    cfg = _cfg()
    loader = build_dataloader(build_dataset(cfg, "train"), cfg, train=True, batch_size=3)
    loader.sampler.set_epoch(2)
    assert not torch.equal(next(iter(loader))["index"], batches[0][0]["index"])


def test_item_with_seed_is_reproducible(mini_sets):
    train, _ = mini_sets
    a, b, c = train[(7, 1234)], train[(7, 1234)], train[(7, 99)]
    assert a["index"] == 7 and torch.equal(a["image"], b["image"]) and torch.equal(a["heatmaps"], b["heatmaps"])
    assert not torch.equal(a["image"], c["image"])


def test_detector_boxes_mmpose4():
    dets = json.loads(DETS.read_text())
    thr = 0.3
    expected = sum(d["category_id"] == 1 and d["score"] >= thr for d in dets)
    cfg = _cfg(COCO_MMPOSE4, f"test.det_score_thr={thr}")
    ds = build_dataset(cfg, "val", boxes=str(DETS))
    assert len(dets) == 118 and len(ds) == expected == 33
    assert ds.stats["dropped"] == {"low_score": 118 - expected}
    assert ds.box_source == f"detector boxes from {DETS} (33 boxes, score >= 0.3)"
    item = ds[0]
    assert item["heatmaps"].abs().sum() == 0 and item["target_weight"].sum() == 0
    assert item["box_score"].item() == pytest.approx(dets[0]["score"], rel=1e-6)
    assert len(build_dataset(_cfg(COCO_MMPOSE4), "val", boxes=str(DETS))) == 118  # no threshold by default
    # boxes relative to the data root also work, and cfg.test.boxes is the default for val
    rel = build_dataset(_cfg(COCO_MMPOSE4, "test.boxes=person_detection_results/detections_person.json"), "val")
    assert len(rel) == 118
    with pytest.raises(ValueError, match="ground-truth"):
        build_dataset(cfg, "train", boxes=str(DETS))


# ----------------------------------------------------------------------------- bad inputs


@pytest.fixture
def small_copy(tmp_path):
    """coco_mini val reduced to 3 images with keypoint instances, copied to tmp_path."""
    data = json.loads((COCO_MINI / "annotations" / "person_keypoints_val2017.json").read_text())
    ids = sorted({a["image_id"] for a in data["annotations"] if a["num_keypoints"] > 0})[:3]
    data["images"] = [im for im in data["images"] if im["id"] in ids]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in ids]
    (tmp_path / "annotations").mkdir()
    (tmp_path / "val2017").mkdir()
    (tmp_path / "annotations" / "person_keypoints_val2017.json").write_text(json.dumps(data))
    for im in data["images"]:
        shutil.copy(COCO_MINI / "val2017" / im["file_name"], tmp_path / "val2017" / im["file_name"])
    return tmp_path, data


def _dataset(root, bad_images="skip", **kw):
    codec = HeatmapCodec(INPUT, (48, 64), 2.0)
    return CocoKeypointDataset(root / "annotations" / "person_keypoints_val2017.json", root / "val2017", codec,
                               TopDownTransform(INPUT), bad_images=bad_images, **kw)


def test_missing_image_skip_and_error(small_copy, caplog):
    root, data = small_copy
    ds = _dataset(root)
    first_file = data["images"][[im["id"] for im in data["images"]].index(int(ds.image_ids[0]))]["file_name"]
    (root / "val2017" / first_file).unlink()
    with caplog.at_level(logging.WARNING):
        item = ds[0]
    assert item["image_id"] != int(ds.image_ids[0]) and item["index"] > 0
    assert ds.stats["bad_images"] == 1 and first_file in caplog.text
    ds[0]  # remembered: not read (nor counted) again
    assert ds.stats["bad_images"] == 1
    with pytest.raises(FileNotFoundError, match=first_file):
        _dataset(root, bad_images="error")[0]


def test_corrupt_image_error_mode(small_copy):
    root, data = small_copy
    ds = _dataset(root, bad_images="error")
    name = ds.coco.imgs[int(ds.image_ids[0])]["file_name"]
    (root / "val2017" / name).write_bytes(b"not a jpeg at all")
    with pytest.raises(ValueError, match=f"cannot decode image.*{name}"):
        ds[0]
    with pytest.raises(ValueError, match="bad_images"):
        _dataset(root, bad_images="ignore")


def test_malformed_and_missing_annotation_files(small_copy):
    root, data = small_copy
    ann = root / "annotations" / "person_keypoints_val2017.json"
    ann.write_text('{"images": [')
    with pytest.raises(ValueError, match="not valid JSON"):
        _dataset(root)
    ann.write_text(json.dumps({"images": data["images"]}))
    with pytest.raises(ValueError, match="lacks the list.*annotations"):
        _dataset(root)
    broken = dict(data, annotations=[{k: v for k, v in a.items() if k != "bbox"} for a in data["annotations"]])
    ann.write_text(json.dumps(broken))
    with pytest.raises(ValueError, match=r"annotations\[0\] needs"):
        _dataset(root)
    ann.unlink()
    with pytest.raises(FileNotFoundError, match="annotation file not found"):
        _dataset(root)
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        CocoKeypointDataset(ann, root / "nope", HeatmapCodec(), TopDownTransform(INPUT))


def test_empty_after_filtering(small_copy):
    root, data = small_copy
    for a in data["annotations"]:
        a["num_keypoints"], a["keypoints"] = 0, [0] * 51
    (root / "annotations" / "person_keypoints_val2017.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="no usable person instances.*no_keypoints"):
        _dataset(root)


def test_detection_file_problems(small_copy):
    root, data = small_copy
    det = root / "dets.json"
    image_id = data["images"][0]["id"]
    det.write_text(json.dumps([{"image_id": 123456789, "category_id": 1, "bbox": [1, 2, 30, 40], "score": 0.9},
                               {"image_id": image_id, "category_id": 1, "bbox": [1, 2, 30, 40], "score": 0.9}]))
    with pytest.raises(ValueError, match="123456789"):
        _dataset(root, boxes=str(det))
    det.write_text(json.dumps([{"image_id": image_id, "category_id": 3, "bbox": [1, 2, 30, 40], "score": 0.9}]))
    with pytest.raises(ValueError, match="no person boxes"):
        _dataset(root, boxes=str(det))
    det.write_text(json.dumps([{"image_id": image_id, "category_id": 1, "bbox": [1, 2, 30, 40], "score": 0.1}]))
    with pytest.raises(ValueError, match="no detector boxes left"):
        _dataset(root, boxes=str(det), det_score_thr=0.5)
    det.write_text(json.dumps({"image_id": image_id}))
    with pytest.raises(ValueError, match="JSON list"):
        _dataset(root, boxes=str(det))
    with pytest.raises(FileNotFoundError, match="detections file not found"):
        _dataset(root, boxes=str(root / "missing.json"))
