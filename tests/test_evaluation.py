"""COCO keypoint evaluation against unmodified pycocotools, on the real COCO samples in tests/data."""
import copy
import json
import time

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from keypoints.constants import COCO_STAT_NAMES
from keypoints.evaluation import RESULTS_FILENAME, CocoKeypointEvaluator, evaluate_results_file
from keypoints.geometry import box_to_center_scale

pycocotools = pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

K = 17


def _val_ann(root):
    return root / "annotations" / "person_keypoints_val2017.json"


def _gt_instances(ann_file):
    """Ground-truth persons with keypoints as predictions: (x, y) from the labels, score 1 where v > 0 else 0."""
    data = json.loads(ann_file.read_text())
    anns = [a for a in data["annotations"] if a["num_keypoints"] > 0 and not a.get("iscrowd", 0)]
    kpts = np.array([a["keypoints"] for a in anns], dtype=np.float64).reshape(-1, K, 3)
    kpts[..., 2] = (kpts[..., 2] > 0).astype(np.float64)
    _, scale = box_to_center_scale(np.array([a["bbox"] for a in anns]), aspect_ratio=0.75, padding=1.25)
    image_ids = np.array([a["image_id"] for a in anns])
    return anns, image_ids, kpts, scale[:, 0].astype(np.float64) * scale[:, 1]


def _pycocotools_stats(ann_file, results):
    """The reference: pycocotools called directly, as its own demo does."""
    gt = COCO(str(ann_file))
    dt = gt.loadRes(copy.deepcopy(results))
    ev = COCOeval(gt, dt, iouType="keypoints")
    ev.params.useSegm = None
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return [float(s) for s in ev.stats]


def _perturbed_results(ann_file, seed=0):
    """GT keypoints moved by a seeded amount (scaled by the person size), random scores, misses and false positives."""
    anns, image_ids, kpts, _ = _gt_instances(ann_file)
    rng = np.random.default_rng(seed)
    size = np.sqrt([a["area"] for a in anns])[:, None, None]
    kpts = kpts.copy()
    kpts[..., :2] += rng.normal(0, 1, (len(anns), K, 2)) * size * rng.uniform(0.0, 0.04, (len(anns), 1, 1))
    kpts[..., 2] = rng.uniform(0.05, 1.0, (len(anns), K))
    box_scores = rng.uniform(0.3, 1.0, len(anns))
    keep = rng.uniform(size=len(anns)) > 0.15  # some persons are missed
    fp = kpts[:6].copy()
    fp[..., :2] += rng.uniform(40, 120, (6, 1, 2))  # shifted copies: false positives
    kpts = np.concatenate([kpts[keep], fp])
    box_scores = np.concatenate([box_scores[keep], rng.uniform(0.3, 1.0, 6)])
    image_ids = np.concatenate([image_ids[keep], image_ids[:6]])
    return image_ids, kpts, box_scores


def _as_results(image_ids, kpts, scores):
    return [{"image_id": int(i), "category_id": 1, "keypoints": [float(v) for v in k.reshape(-1)], "score": float(s)}
            for i, k, s in zip(image_ids, kpts, scores)]


# ----------------------------------------------------------------------------- exact agreement


@pytest.mark.parametrize("soft_nms", [False, True])
def test_ground_truth_as_results_gives_ap_1(coco_mini, tmp_path, capsys, soft_nms):
    """GT fed through the evaluator, with low-score duplicates that only NMS removes (soft NMS only demotes them,
    keeping at most 20 per image) and high-box-score false positives that only the rescoring demotes (all their
    keypoint scores are below 0.2)."""
    ann_file = _val_ann(coco_mini)
    anns, image_ids, kpts, areas = _gt_instances(ann_file)
    n = len(anns)
    assert n == 40
    dup = kpts.copy()
    dup[..., :2] += 0.5  # OKS ~ 1 with the original
    dup[..., 2] *= 0.9
    junk = kpts.copy()
    junk[..., :2] += 60.0  # far off: OKS < 0.9, survives NMS, must rank last
    junk[..., 2] = 0.15
    evaluator = CocoKeypointEvaluator(ann_file, output_dir=tmp_path, box_source="ground-truth boxes",
                                      soft_nms=soft_nms)
    evaluator.process(torch.from_numpy(image_ids), torch.from_numpy(kpts), torch.ones(n), torch.from_numpy(areas))
    evaluator.process(image_ids, dup, np.full(n, 0.9), areas)
    evaluator.process(image_ids.tolist(), junk, np.full(n, 1.0), areas)
    metrics = evaluator.evaluate()
    assert set(COCO_STAT_NAMES) <= set(metrics)
    for name in COCO_STAT_NAMES:
        assert metrics[name] == 1.0, (name, metrics[name])
    assert metrics["num_predictions"] == 3 * n
    written = json.loads((tmp_path / RESULTS_FILENAME).read_text())
    assert len(written) == metrics["num_instances"]
    if soft_nms:
        per_image = np.unique(image_ids, return_counts=True)[1]
        assert metrics["num_instances"] == np.minimum(3 * per_image, 20).sum()
    else:
        assert metrics["num_instances"] == 2 * n  # the duplicates are gone, the junk stays (and scores 0)
        assert sorted(r["score"] for r in written)[:n] == [0.0] * n
        assert {r["score"] for r in written} == {0.0, 1.0}
    assert "boxes: ground-truth boxes" in capsys.readouterr().out


def test_perturbed_results_file_matches_pycocotools(coco_mini, tmp_path):
    ann_file = _val_ann(coco_mini)
    image_ids, kpts, box_scores = _perturbed_results(ann_file, seed=0)
    results = _as_results(image_ids, kpts, box_scores)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    metrics = evaluate_results_file(path, ann_file, box_source="perturbed ground truth")
    expected = _pycocotools_stats(ann_file, results)
    assert [metrics[name] for name in COCO_STAT_NAMES] == expected
    assert 0.2 < metrics["AP"] < 0.95  # the perturbation is felt but not destructive
    assert metrics["num_instances"] == len(results)


@pytest.mark.parametrize("soft_nms", [False, True])
def test_evaluator_matches_pycocotools_on_its_written_results(coco_mini, tmp_path, soft_nms):
    ann_file = _val_ann(coco_mini)
    image_ids, kpts, box_scores = _perturbed_results(ann_file, seed=1)
    _, scale = box_to_center_scale(np.tile([[0, 0, 100, 200]], (len(kpts), 1)), 0.75)
    evaluator = CocoKeypointEvaluator(ann_file, output_dir=tmp_path, box_source="perturbed", soft_nms=soft_nms)
    for chunk in np.array_split(np.arange(len(kpts)), 3):
        evaluator.process(image_ids[chunk], kpts[chunk], box_scores[chunk], scale[chunk, 0] * scale[chunk, 1])
    metrics = evaluator.evaluate()
    written = json.loads((tmp_path / RESULTS_FILENAME).read_text())
    assert [metrics[name] for name in COCO_STAT_NAMES] == _pycocotools_stats(ann_file, written)
    # Rescoring as specified: box score x mean of the keypoint scores above 0.2.
    s = kpts[..., 2]
    rescored = box_scores * np.where(s > 0.2, s, 0).sum(1) / np.maximum((s > 0.2).sum(1), 1)
    by_key = {(int(i), tuple(k[:, :2].reshape(-1).round(6))): r for i, k, r in zip(image_ids, kpts, rescored)}
    for r in written:
        key = (r["image_id"], tuple(np.asarray(r["keypoints"]).reshape(-1, 3)[:, :2].reshape(-1).round(6)))
        assert r["score"] == pytest.approx(by_key[key], rel=1e-12)
    # Evaluating again without reset gives the same numbers (ground truth cached, nothing consumed).
    assert evaluator.evaluate() == metrics


def test_detector_boxes_on_coco_mmpose4(coco_mmpose4, tmp_path, capsys):
    """Detector boxes from the real detections file; keypoints taken from the best-overlapping GT person, mapped
    into the detected box (a stand-in for a model), so the numbers reflect the detector's boxes."""
    ann_file = _val_ann(coco_mmpose4)
    det_file = coco_mmpose4 / "person_detection_results" / "detections_person.json"
    dets = json.loads(det_file.read_text())
    gt = [a for a in json.loads(ann_file.read_text())["annotations"] if a["num_keypoints"] > 0]
    rng = np.random.default_rng(0)
    image_ids, kpts, box_scores, boxes = [], [], [], []
    for d in dets:
        x, y, w, h = d["bbox"]
        best, best_iou = None, 0.0
        for a in gt:
            if a["image_id"] != d["image_id"]:
                continue
            gx, gy, gw, gh = a["bbox"]
            iw = max(0.0, min(x + w, gx + gw) - max(x, gx))
            ih = max(0.0, min(y + h, gy + gh) - max(y, gy))
            iou = iw * ih / (w * h + gw * gh - iw * ih)
            if iou > best_iou:
                best, best_iou = a, iou
        k = np.zeros((K, 3))
        if best is not None and best_iou > 0.3:
            g = np.asarray(best["keypoints"], dtype=np.float64).reshape(K, 3)
            gx, gy, gw, gh = best["bbox"]
            k[:, 0] = x + (g[:, 0] - gx) / gw * w
            k[:, 1] = y + (g[:, 1] - gy) / gh * h
            k[:, 2] = np.where(g[:, 2] > 0, rng.uniform(0.5, 1.0, K), rng.uniform(0.0, 0.3, K))
        else:
            k[:, 0] = x + rng.uniform(0, w, K)
            k[:, 1] = y + rng.uniform(0, h, K)
            k[:, 2] = rng.uniform(0.0, 0.5, K)
        image_ids.append(d["image_id"])
        kpts.append(k)
        box_scores.append(d["score"])
        boxes.append(d["bbox"])
    _, scale = box_to_center_scale(np.array(boxes), aspect_ratio=0.75, padding=1.25)
    evaluator = CocoKeypointEvaluator(ann_file, output_dir=tmp_path, box_source=f"detections {det_file.name}")
    evaluator.process(image_ids, np.stack(kpts), box_scores, scale[:, 0] * scale[:, 1])
    metrics = evaluator.evaluate()
    assert metrics["num_predictions"] == len(dets) == 118
    assert 0 < metrics["num_instances"] < len(dets)  # the detector's overlapping boxes give duplicates to remove
    assert 0.5 < metrics["AP"] <= 1.0 and all(0.0 <= metrics[n] <= 1.0 for n in COCO_STAT_NAMES if metrics[n] >= 0)
    written = json.loads((tmp_path / RESULTS_FILENAME).read_text())
    assert [metrics[name] for name in COCO_STAT_NAMES] == _pycocotools_stats(ann_file, written)
    assert "boxes: detections detections_person.json" in capsys.readouterr().out


# ----------------------------------------------------------------------------- bad inputs


def _write(tmp_path, obj):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(obj))
    return path


def test_results_file_validation(coco_mini, tmp_path):
    ann_file = _val_ann(coco_mini)
    image_ids, kpts, scores = _perturbed_results(ann_file)
    good = _as_results(image_ids[:3], kpts[:3], scores[:3])
    with pytest.raises(ValueError, match="must be a JSON list"):
        evaluate_results_file(_write(tmp_path, {"annotations": good}), ann_file)
    bad = copy.deepcopy(good)
    bad[1]["keypoints"] = bad[1]["keypoints"][:-3]
    with pytest.raises(ValueError, match="entry 1 has 48 keypoint values; expected 51"):
        evaluate_results_file(_write(tmp_path, bad), ann_file)
    bad = copy.deepcopy(good)
    bad[2]["image_id"] = 123456789
    bad[0]["image_id"] = 987654321
    with pytest.raises(ValueError, match=r"image ids not in the annotation file \(e.g. \[123456789, 987654321\]\)"):
        evaluate_results_file(_write(tmp_path, bad), ann_file)
    bad = copy.deepcopy(good)
    del bad[2]["score"]
    with pytest.raises(ValueError, match="entry 2 lacks field\\(s\\) score"):
        evaluate_results_file(_write(tmp_path, bad), ann_file)
    bad = copy.deepcopy(good)
    bad[0]["keypoints"][4] = float("nan")
    with pytest.raises(ValueError, match="entry 0 has NaN"):
        evaluate_results_file(_write(tmp_path, bad), ann_file)
    bad = copy.deepcopy(good)
    bad[0]["category_id"] = 2
    with pytest.raises(ValueError, match="category_id 2"):
        evaluate_results_file(_write(tmp_path, bad), ann_file)
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(ValueError, match="not valid JSON"):
        evaluate_results_file(tmp_path / "broken.json", ann_file)
    with pytest.raises(FileNotFoundError, match="results file not found"):
        evaluate_results_file(tmp_path / "missing.json", ann_file)
    with pytest.raises(FileNotFoundError, match="annotation file not found"):
        evaluate_results_file(_write(tmp_path, good), tmp_path / "missing_ann.json")


def test_empty_results_give_zero_with_warning(coco_mini, tmp_path):
    ann_file = _val_ann(coco_mini)
    with pytest.warns(RuntimeWarning, match="no keypoint predictions"):
        metrics = evaluate_results_file(_write(tmp_path, []), ann_file)
    assert all(metrics[name] == 0.0 for name in COCO_STAT_NAMES) and metrics["num_instances"] == 0
    evaluator = CocoKeypointEvaluator(ann_file, output_dir=tmp_path)
    with pytest.warns(RuntimeWarning, match="no keypoint predictions"):
        metrics = evaluator.evaluate()
    assert all(metrics[name] == 0.0 for name in COCO_STAT_NAMES)
    assert json.loads((tmp_path / RESULTS_FILENAME).read_text()) == []


def test_evaluator_input_checks(coco_mini, tmp_path):
    ann_file = _val_ann(coco_mini)
    with pytest.raises(FileNotFoundError, match="annotation file not found"):
        CocoKeypointEvaluator(tmp_path / "nope.json")
    evaluator = CocoKeypointEvaluator(ann_file)
    with pytest.raises(ValueError, match="keypoints \\(2, 17, 3\\)"):
        evaluator.process([1, 2], np.zeros((2, 17, 2)), [1, 1], [1, 1])
    with pytest.raises(ValueError, match="2 image ids but 3 areas"):
        evaluator.process([1, 2], np.zeros((2, 17, 3)), [1, 1], [1, 1, 1])
    evaluator.process([424242], np.ones((1, 17, 3)), [1.0], [100.0])
    with pytest.raises(ValueError, match="424242"):
        evaluator.evaluate()
    evaluator.reset()
    with pytest.warns(RuntimeWarning):
        assert evaluator.evaluate()["AP"] == 0.0


def test_instance_ids_drop_sampler_padding(coco_mini):
    """A DistributedSampler repeats samples to pad the last batch; with instance ids the repeats are dropped."""
    ann_file = _val_ann(coco_mini)
    image_ids, kpts, box_scores = _perturbed_results(ann_file, seed=2)
    areas = np.full(len(kpts), 3e4)
    ids = np.arange(len(kpts))
    plain = CocoKeypointEvaluator(ann_file, oks_nms_thr=1.01)  # NMS off: repeats would count twice
    plain.process(image_ids, kpts, box_scores, areas, instance_ids=ids)
    padded = CocoKeypointEvaluator(ann_file, oks_nms_thr=1.01)
    order = np.random.default_rng(0).permutation(len(kpts))
    padded.process(image_ids[order], kpts[order], box_scores[order], areas, instance_ids=ids[order])
    padded.process(image_ids[:5], kpts[:5], box_scores[:5], areas[:5], instance_ids=ids[:5])
    a, b = plain.evaluate(), padded.evaluate()
    assert a == b and b["num_predictions"] == len(kpts)
    with pytest.raises(ValueError, match="instance_ids to every process"):
        padded.process(image_ids[:1], kpts[:1], box_scores[:1], areas[:1])


# ----------------------------------------------------------------------------- DDP gathering


def _ddp_worker(rank, world_size, init_file, ann_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        image_ids, kpts, box_scores = _perturbed_results(ann_file, seed=3)
        ids = np.arange(len(kpts))
        # DistributedSampler-style interleaving, padded to equal length with repeats.
        shard = np.resize(ids, -(-len(ids) // world_size) * world_size)[rank::world_size]
        evaluator = CocoKeypointEvaluator(ann_file, box_source="ground-truth boxes")
        evaluator.process(image_ids[shard], torch.from_numpy(kpts[shard]), box_scores[shard],
                          np.full(len(shard), 3e4), instance_ids=shard)
        metrics = evaluator.evaluate()
        (out_dir / f"rank{rank}.json").write_text(json.dumps(metrics))
    finally:
        dist.destroy_process_group()


def _single_process_metrics(ann_file):
    image_ids, kpts, box_scores = _perturbed_results(ann_file, seed=3)
    evaluator = CocoKeypointEvaluator(ann_file)
    evaluator.process(image_ids, kpts, box_scores, np.full(len(kpts), 3e4), instance_ids=np.arange(len(kpts)))
    return evaluator.evaluate()


def test_gather_world_size_1(coco_mini, tmp_path):
    ann_file = _val_ann(coco_mini)
    expected = _single_process_metrics(ann_file)
    _ddp_worker(0, 1, tmp_path / "init", ann_file, tmp_path)
    assert not dist.is_initialized()
    assert json.loads((tmp_path / "rank0.json").read_text()) == expected


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_gather_two_processes_gloo(coco_mini, tmp_path):
    ann_file = _val_ann(coco_mini)
    start = time.perf_counter()
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), ann_file, tmp_path), nprocs=2, join=True)
    assert json.loads((tmp_path / "rank0.json").read_text()) == _single_process_metrics(ann_file)
    assert json.loads((tmp_path / "rank1.json").read_text()) == {}
    print(f"2-process gloo gather: {time.perf_counter() - start:.1f} s")


def test_nms_runs_per_image_and_category():
    """Two instances of different categories at the same place both survive OKS-NMS (pycocotools matches them per
    category anyway); the same two of one category are one instance."""
    from keypoints.evaluation import predictions_to_results

    kp = np.random.default_rng(0).uniform(10, 90, (1, K, 3))
    kp[..., 2] = 0.9
    kpts = np.concatenate([kp, kp + 0.1])
    one = predictions_to_results(np.array([5, 5]), kpts, np.ones(2), np.full(2, 5e3))
    two = predictions_to_results(np.array([5, 5]), kpts, np.ones(2), np.full(2, 5e3), category_ids=np.array([1, 2]))
    assert len(one) == 1 and one[0]["category_id"] == 1
    assert sorted(r["category_id"] for r in two) == [1, 2]
