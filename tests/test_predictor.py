"""PoseEstimator: real COCO images with ground-truth boxes, one batch per image, the box modes (given, full-frame,
tracked, detector) and clear errors; no download, no window."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import keypoints
from keypoints.codec import HeatmapCodec
from keypoints.config import load_config
from keypoints.detection import PersonDetector, boxes_from_keypoints, build_detector, find_local_detector
from keypoints.predictor import PoseEstimator, Prediction
from keypoints.utils.io import read_image

ROOT = Path(__file__).resolve().parents[1]
COCO_MINI = Path(__file__).resolve().parent / "data" / "coco_mini"


@pytest.fixture(scope="module")
def checkpoint(untrained_checkpoint) -> Path:
    return untrained_checkpoint


def coco_mini_people(count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image, ground-truth boxes of the people with keypoints) for the first ``count`` such images."""
    coco = json.loads((COCO_MINI / "annotations" / "person_keypoints_val2017.json").read_text())
    boxes: dict[int, list] = {}
    for a in coco["annotations"]:
        if not a["iscrowd"] and a["num_keypoints"] > 0:
            boxes.setdefault(a["image_id"], []).append(a["bbox"])
    files = {im["id"]: im["file_name"] for im in coco["images"]}
    return [(read_image(COCO_MINI / "val2017" / files[i]), np.array(b, np.float32))
            for i, b in list(boxes.items())[:count]]


def test_lazy_export():
    assert keypoints.PoseEstimator is PoseEstimator


def test_ground_truth_boxes_on_coco_mini(checkpoint):
    estimator = PoseEstimator.from_checkpoint(checkpoint, device="cpu")
    for image, boxes in coco_mini_people(3):
        prediction = estimator(image, boxes=boxes)
        assert prediction.box_mode == "given" and prediction.image_size == (image.shape[1], image.shape[0])
        assert len(prediction.people) == len(boxes) == prediction.crops
        for person, box in zip(prediction.people, boxes):
            assert person.keypoints.shape == (17, 3) and np.isfinite(person.keypoints).all()
            np.testing.assert_array_equal(person.box, box)
            # Keypoints lie in the padded crop around the box (aspect fix and 1.25 padding: at most 2.5x a side).
            centre, reach = box[:2] + box[2:] / 2, 1.25 * np.maximum(box[2:], box[2:][::-1] * np.array([0.75, 4 / 3]))
            assert (np.abs(person.keypoints[:, :2] - centre) <= reach / 2 + 1).all()
            kept = person.keypoints[:, 2][person.keypoints[:, 2] > 0.2]
            assert person.score == pytest.approx(kept.mean() if len(kept) else 0.0, abs=1e-6)
        json.dumps(prediction.to_dict())  # serialisable as is


class CountingModel(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.batches = model, []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.batches.append(tuple(images.shape))
        return self.model(images)


@pytest.mark.parametrize("flip", [False, True])
def test_one_batch_per_image(checkpoint, flip):
    from keypoints.models import load_pose_model

    model, cfg = load_pose_model(str(checkpoint))
    counting = CountingModel(model)
    estimator = PoseEstimator.from_config(counting, cfg, flip=flip)
    image, boxes = coco_mini_people(1)[0]
    estimator(image, boxes=boxes)
    assert counting.batches == [((2 if flip else 1) * len(boxes), 3, 128, 96)]


class PoseStub(nn.Module):
    """Heatmaps of one fixed standing pose in every crop, peak ``peak``: decoding must find it again."""

    def __init__(self, codec: HeatmapCodec, peak: float = 1.0) -> None:
        super().__init__()
        w, h = codec.input_size
        xs = np.array([0.5, 0.55, 0.45, 0.6, 0.4, 0.65, 0.35, 0.7, 0.3, 0.72, 0.28, 0.6, 0.4, 0.6, 0.4, 0.6, 0.4]) * w
        ys = np.array([0.2, 0.18, 0.18, 0.19, 0.19, 0.3, 0.3, 0.42, 0.42, 0.52, 0.52, 0.55, 0.55, 0.68, 0.68, 0.8,
                       0.8]) * h
        self.crop_keypoints = np.stack([xs, ys], axis=1)
        heatmaps, _ = codec.encode(self.crop_keypoints, np.full(17, 2))
        self.register_buffer("heatmaps", torch.from_numpy(heatmaps * peak))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.heatmaps.expand(images.shape[0], -1, -1, -1).clone()


def stub_estimator(peak: float = 1.0, **kwargs) -> PoseEstimator:
    cfg = load_config(ROOT / "configs" / "quickstart.yaml")
    codec = HeatmapCodec(cfg.data.input_size, cfg.data.heatmap_size, cfg.data.sigma)
    return PoseEstimator.from_config(PoseStub(codec, peak), cfg, flip=False, **kwargs)


def test_full_frame_then_tracked():
    estimator = stub_estimator()
    image = np.zeros((480, 640, 3), np.uint8)
    first = estimator(image)
    assert first.box_mode == "full-frame" and len(first.people) == 1
    np.testing.assert_array_equal(first.people[0].box, [0, 0, 640, 480])
    # The full frame is not padded: the crop (aspect 0.75) spans the frame's width, centred on the frame.
    kp = first.people[0].keypoints
    assert kp[:, 0].min() > 0 and kp[:, 0].max() < 640 and first.people[0].score > 0.9
    second = estimator(image)
    assert second.box_mode == "tracked" and len(second.people) == 1
    expected, kept = boxes_from_keypoints(kp[None], (640, 480), kpt_thr=0.3, enlarge=1.25)
    np.testing.assert_allclose(second.people[0].box, expected[0], atol=1e-4)
    estimator.reset()
    assert estimator(image).box_mode == "full-frame"


def test_low_scores_fall_back_to_full_frame():
    estimator = stub_estimator(peak=0.1)  # pose score 0.0: below min_pose_score, every track is dropped
    image = np.zeros((240, 320, 3), np.uint8)
    assert [estimator(image).box_mode for _ in range(3)] == ["full-frame"] * 3


def test_boxes_from_keypoints_extent():
    kp = np.zeros((2, 17, 3), np.float32)
    kp[0, :, :2] = np.random.default_rng(0).uniform([100, 50], [200, 250], size=(17, 2))
    kp[0, :, 2] = 0.9
    kp[1, :, 2] = 0.1  # nothing confident: no box
    boxes, kept = boxes_from_keypoints(kp, (640, 480), kpt_thr=0.3, enlarge=1.25)
    lo, hi = kp[0, :, :2].min(0), kp[0, :, :2].max(0)
    np.testing.assert_allclose(boxes[0, 2:], (hi - lo) * 1.25, rtol=1e-5)
    np.testing.assert_allclose(boxes[0, :2] + boxes[0, 2:] / 2, (lo + hi) / 2, rtol=1e-5)
    assert kept.tolist() == [0]


@pytest.fixture
def no_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # an empty hub cache, whatever the machine has


def test_detector_from_local_file(tmp_path, no_hub_cache):
    name = "ssdlite320_mobilenet_v3_large"
    state = build_detector(name).state_dict()  # random weights: nothing is downloaded
    for key, value in state.items():  # make every anchor call "person" (COCO label 1) so that boxes come out
        if key.startswith("head.classification_head.") and key.endswith(".1.bias") and value.numel() % 91 == 0:
            value.view(-1, 91)[:, 1] = 10.0
    weights = tmp_path / "ssdlite_random.pth"
    torch.save(state, weights)
    detector = PersonDetector.from_weights(name, weights, score_thr=0.5)
    detector.model.detections_per_img = 3
    image = (np.random.default_rng(0).uniform(0, 255, (240, 320, 3))).astype(np.uint8)
    boxes, scores = detector(image)
    assert boxes.shape == (3, 4) and (scores >= 0.5).all() and (boxes[:, 2:] > 0).all()
    estimator = stub_estimator(detector=detector, redetect_every=2)
    predictions = [estimator(image) for _ in range(4)]
    assert [p.box_mode for p in predictions] == ["detector", "tracked", "detector", "tracked"]
    assert all(0 < len(p.people) <= 3 for p in predictions)
    assert predictions[0].people[0].box_score >= 0.5 and predictions[1].people[0].box_score == 1.0


def test_missing_detector_weights_are_clear(tmp_path, no_hub_cache, checkpoint):
    assert find_local_detector() is None
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        PersonDetector.from_weights("ssdlite320_mobilenet_v3_large")
    with pytest.raises(FileNotFoundError, match="not found"):
        PersonDetector.from_weights("ssdlite320_mobilenet_v3_large", tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="detector weights .* does not fit the model.*--detector NAME"):
        PersonDetector.from_weights("ssdlite320_mobilenet_v3_large", checkpoint)  # a pose checkpoint
    with pytest.raises(ValueError, match="unknown detector"):
        PersonDetector.from_weights("yolo")


def test_clear_errors(tmp_path, checkpoint):
    bad = tmp_path / "weights.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="not a pose checkpoint"):
        PoseEstimator.from_checkpoint(bad)
    with pytest.raises(ValueError, match="is a PyTorch checkpoint.*tools/export.py"):
        PoseEstimator.from_checkpoint(checkpoint, backend="onnxruntime")
    with pytest.raises(ValueError, match="backend"):
        PoseEstimator.from_checkpoint(checkpoint, backend="tensorrt")
    estimator = PoseEstimator.from_checkpoint(checkpoint, device="cpu")
    with pytest.raises(ValueError, match="BGR image"):
        estimator(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="box scores"):
        estimator(np.zeros((64, 64, 3), np.uint8), boxes=[[0, 0, 10, 10]], box_scores=[1.0, 0.5])
    empty = estimator(np.zeros((64, 64, 3), np.uint8), boxes=np.zeros((0, 4)))
    assert isinstance(empty, Prediction) and empty.people == [] and empty.box_mode == "given"
    assert empty.keypoints.shape == (0, 17, 3)


@pytest.mark.parametrize("image, boxes, message", [
    (np.zeros((64, 64, 3), np.float32), None, "uint8 image"),  # floats in 0-1 would give garbage poses
    (np.zeros((64, 64, 3), np.uint16), None, "uint8 image"),
    (np.zeros((0, 0, 3), np.uint8), None, "empty"),
    (np.zeros((64, 64, 3), np.uint8), np.zeros((2, 6)), r"\(N, 4\)"),  # not 3 people of 4 values
    (np.zeros((64, 64, 3), np.uint8), [[0, 0, float("nan"), 10]], "finite"),
    (np.zeros((64, 64, 3), np.uint8), [[0, 0, -5, 10]], "positive width"),
    (np.zeros((64, 64, 3), np.uint8), [[0, 0, 10, 0]], "positive width"),
])
def test_api_rejects_what_would_give_a_wrong_result(checkpoint, image, boxes, message):
    estimator = PoseEstimator.from_checkpoint(checkpoint, device="cpu")
    with pytest.raises(ValueError, match=message) as info:
        estimator(image, boxes=boxes)
    assert "\n" not in str(info.value)
