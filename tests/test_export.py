"""ONNX export: parity with PyTorch within 1e-4 (float32) on real person crops, dynamic and fixed batch, uint8
input, the config in the metadata, and PoseEstimator(backend="onnxruntime") agreeing with the torch backend."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from keypoints.config import config_to_dict, load_config
from keypoints.models import build_model, load_pose_model
from keypoints.onnx_backend import CONFIG_KEY, OnnxPoseSession, export_onnx, max_abs_diff
from keypoints.predictor import PoseEstimator
from keypoints.video import read_image

pytest.importorskip("onnxruntime")
ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("export_cli", ROOT / "tools" / "export.py")
export_cli = importlib.util.module_from_spec(spec)
spec.loader.exec_module(export_cli)


def coco_mini_people(count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image, ground-truth boxes of the people with keypoints) of the first ``count`` coco_mini val images."""
    root = Path(__file__).resolve().parent / "data" / "coco_mini"
    coco = json.loads((root / "annotations" / "person_keypoints_val2017.json").read_text())
    boxes: dict[int, list] = {}
    for a in coco["annotations"]:
        if not a["iscrowd"] and a["num_keypoints"] > 0:
            boxes.setdefault(a["image_id"], []).append(a["bbox"])
    files = {im["id"]: im["file_name"] for im in coco["images"]}
    return [(read_image(root / "val2017" / files[i]), np.array(b, np.float32))
            for i, b in list(boxes.items())[:count]]


def trained_like(model: nn.Module) -> nn.Module:
    """Random BatchNorm statistics and a larger final layer, so that heatmaps are O(1) as after training (an
    untrained head outputs values around 1e-3, which would make any tolerance meaningless)."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    nn.init.normal_(model.head.final.weight, std=0.3)
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    cfg = load_config(ROOT / "configs" / "quickstart.yaml")
    folder = tmp_path_factory.mktemp("export")
    checkpoint = folder / "quick.pth"
    torch.save({"model": trained_like(build_model(cfg.model)).state_dict(), "config": config_to_dict(cfg)}, checkpoint)
    args = export_cli.get_args_parser().parse_args([
        "--checkpoint", str(checkpoint), "--output", str(folder / "quick.onnx"), "--check-crops", "4",
        "--timing-runs", "0"])
    result = export_cli.main(args)
    assert result["max_abs_diff"] <= 1e-4 and result["crops"] == 4
    return checkpoint, folder / "quick.onnx"


def test_parity_on_real_crops_dynamic_batch(exported):
    checkpoint, onnx_path = exported
    model, cfg = load_pose_model(str(checkpoint))
    session = OnnxPoseSession(onnx_path, threads=2)
    assert session.batch is None and session.input_dtype == np.float32
    estimator = PoseEstimator.from_config(model, cfg)
    image, boxes = coco_mini_people(1)[0]
    crops = estimator.crop_boxes(image, boxes[:3])[0]
    with torch.no_grad():
        reference = model(crops)
    assert reference.abs().max() > 0.1  # the comparison is not between two near-zero maps
    for batch in (crops[:1], crops):
        assert session(batch).shape == (len(batch), 17, 32, 24)
        assert max_abs_diff(model, session, batch) <= 1e-4


def test_metadata_and_onnxruntime_backend(exported):
    checkpoint, onnx_path = exported
    assert CONFIG_KEY in OnnxPoseSession(onnx_path).metadata
    torch_est = PoseEstimator.from_checkpoint(checkpoint, device="cpu", flip=True)
    for ort_est in (PoseEstimator.from_checkpoint(onnx_path, backend="onnxruntime", flip=True),
                    PoseEstimator.from_checkpoint(checkpoint, backend="onnxruntime", flip=True)):  # finds quick.onnx
        assert ort_est.backend == "onnxruntime"
        image, boxes = coco_mini_people(2)[1]
        a, b = torch_est(image, boxes=boxes), ort_est(image, boxes=boxes)
        np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-3)
    with pytest.raises(ValueError, match="onnxruntime"):
        PoseEstimator.from_checkpoint(onnx_path, backend="torch")


def test_fixed_batch_uint8_input(exported, tmp_path):
    checkpoint, _ = exported
    model, cfg = load_pose_model(str(checkpoint))
    path = export_onnx(model, tmp_path / "b1.onnx", input_size=cfg.data.input_size, batch=1, input_dtype="uint8")
    session = OnnxPoseSession(path, threads=1)
    assert session.batch == 1 and session.input_dtype == np.uint8
    crops = PoseEstimator.from_config(model, cfg).crop_boxes(*coco_mini_people(1)[0])[0][:2]
    assert max_abs_diff(model, session, crops) <= 1e-4  # two crops run as two batches of one
    with pytest.raises(ValueError, match="batch"):
        export_onnx(model, tmp_path / "x.onnx", input_size=cfg.data.input_size, batch="many")


def test_bad_onnx_file(tmp_path):
    (tmp_path / "bad.onnx").write_bytes(b"nothing")
    with pytest.raises(ValueError, match="export it again"):
        OnnxPoseSession(tmp_path / "bad.onnx")
    with pytest.raises(FileNotFoundError, match="tools/export.py"):
        OnnxPoseSession(tmp_path / "missing.onnx")
