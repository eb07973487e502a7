"""ONNX export: COCO AP parity with the checkpoint on real coco_mini val through tools/export.py and tools/test.py,
heatmaps within 1e-4 (float32) on real person crops, dynamic and fixed batch, uint8 input, the model metadata in the
file, PoseEstimator on the ONNX Runtime backend agreeing with the torch backend, and no file left by a failed check."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from keypoints.backends import CONFIG_KEY, ModelInfo
from keypoints.backends.onnx import OnnxBackend, export_onnx
from keypoints.inference import crop_boxes
from keypoints.models import load_pose_model
from keypoints.predictor import PoseEstimator
from keypoints.utils.io import read_image
from conftest import COCO_MINI, TRAINED_CHECKPOINT, load_tool

pytest.importorskip("onnxruntime")
ROOT = Path(__file__).resolve().parents[1]
export_cli = load_tool("export")
test_cli = load_tool("test")


def max_abs_diff(model: nn.Module, backend: OnnxBackend, crops: torch.Tensor) -> float:
    """Largest absolute heatmap difference between PyTorch (float32, eval) and ONNX Runtime on ``crops``."""
    with torch.no_grad():
        reference = model.eval()(crops.float())
    return float((backend(crops) - reference).abs().max())


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


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    """The trained test checkpoint (AP 0.756 on coco_mini val) and its export, checked by tools/export.py."""
    folder = tmp_path_factory.mktemp("export")
    checkpoint = folder / "quick.pth"
    shutil.copyfile(TRAINED_CHECKPOINT, checkpoint)
    args = export_cli.get_args_parser().parse_args([
        "--checkpoint", str(checkpoint), "--output", str(folder / "quick.onnx"), "--timing-runs", "0"])
    result = export_cli.main(args)
    assert result["instances"] == 40 and result["ap_torch"] > 0.7  # a real AP to reproduce, not two zeros
    assert result["ap_delta"] <= 0.002 and result["max_keypoint_diff_px"] < 0.5
    return checkpoint, folder / "quick.onnx"


def test_parity_on_real_crops_dynamic_batch(exported):
    checkpoint, onnx_path = exported
    model, cfg = load_pose_model(str(checkpoint))
    session = OnnxBackend(onnx_path, threads=2)
    assert session.batch is None and session.input_dtype == np.float32
    image, boxes = coco_mini_people(1)[0]
    crops = crop_boxes(image, boxes[:3], cfg.data.input_size)[0]
    with torch.no_grad():
        reference = model(crops)
    assert reference.abs().max() > 0.1  # the comparison is not between two near-zero maps
    for batch in (crops[:1], crops):
        assert session(batch).shape == (len(batch), 17, 32, 24)
        assert max_abs_diff(model, session, batch) <= 1e-4


def test_metadata_and_onnxruntime_backend(exported):
    checkpoint, onnx_path = exported
    backend = OnnxBackend(onnx_path)
    model, cfg = load_pose_model(str(checkpoint))
    assert CONFIG_KEY in backend.metadata and backend.info == ModelInfo.from_config(cfg)
    torch_est = PoseEstimator.from_checkpoint(checkpoint, device="cpu", flip=True)
    ort_est = PoseEstimator.from_checkpoint(onnx_path, flip=True)  # auto: by the file's content
    assert ort_est.backend.name == "onnxruntime"
    image, boxes = coco_mini_people(2)[1]
    a, b = torch_est(image, boxes=boxes), ort_est(image, boxes=boxes)
    np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-3)
    with pytest.raises(ValueError, match="torch runtime runs a PyTorch checkpoint.*is an ONNX model.*onnxruntime"):
        PoseEstimator.from_checkpoint(onnx_path, backend="torch")
    with pytest.raises(ValueError, match="is a PyTorch checkpoint.*export it first"):
        PoseEstimator.from_checkpoint(checkpoint, backend="onnxruntime")


def test_fixed_batch_uint8_input(exported, tmp_path):
    checkpoint, _ = exported
    model, cfg = load_pose_model(str(checkpoint))
    info = ModelInfo.from_config(cfg)
    path = export_onnx(model, tmp_path / "b1.onnx", info=info, batch=1, input_dtype="uint8")
    session = OnnxBackend(path, threads=1)
    assert session.batch == 1 and session.input_dtype == np.uint8
    crops = crop_boxes(*coco_mini_people(1)[0], cfg.data.input_size)[0][:2]
    assert max_abs_diff(model, session, crops) <= 1e-4  # two crops run as two batches of one
    with pytest.raises(ValueError, match="batch"):
        export_onnx(model, tmp_path / "x.onnx", info=info, batch="many")


def test_test_tool_scores_the_export_like_its_checkpoint(exported, tmp_path):
    """tools/test.py on the .onnx file and on its checkpoint: the same crops, decoding, rescoring and NMS, so the
    same COCO AP (within 0.002) and near-identical keypoints in the results files."""
    checkpoint, onnx_path = exported
    metrics = {}
    for name, model in (("torch", checkpoint), ("onnx", onnx_path)):
        metrics[name] = test_cli.main(test_cli.get_args_parser().parse_args([
            "--checkpoint", str(model), "--data-root", str(COCO_MINI), "--device", "cpu", "--threads", "2",
            "--out", str(tmp_path / f"{name}.json"), "--metrics-json", str(tmp_path / f"{name}_m.json"),
            "--opts", "data.workers=0"]))
    assert metrics["torch"]["num_predictions"] == metrics["onnx"]["num_predictions"] == 40
    assert metrics["torch"]["AP"] > 0.7
    for stat in ("AP", "AP50", "AR"):
        assert abs(metrics["torch"][stat] - metrics["onnx"][stat]) <= 0.002, stat
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("torch", "onnx"))
    assert [r["image_id"] for r in a] == [r["image_id"] for r in b]
    np.testing.assert_allclose(np.array([r["keypoints"] for r in a]), np.array([r["keypoints"] for r in b]),
                               atol=0.05)
    assert json.loads((tmp_path / "onnx_m.json").read_text())["backend"] == "onnxruntime"


def _perturbed_runtime(change):
    """The onnxruntime runtime with ``change`` applied to every heatmap the export gives (a broken export)."""
    from keypoints.backends import get_runtime

    runtime = get_runtime("onnxruntime")

    def load(path, **kwargs):
        backend = runtime.load(path, **kwargs)
        forward = backend.forward
        backend.forward = lambda crops: change(forward(crops))
        return backend
    return dataclasses.replace(runtime, load=load)


@pytest.mark.parametrize("case", ["heatmaps", "keypoints"])
def test_a_wrong_export_is_refused_and_the_old_file_kept(exported, tmp_path, monkeypatch, case):
    """The checks look at the export, not at the checkpoint twice: heatmaps scaled by 1.01 fail the heatmap check;
    heatmaps shifted by two cells (keypoints 8 px off) pass a disabled heatmap check and fail the AP check. The
    existing --output is left byte-identical and no temporary file stays."""
    checkpoint, _ = exported
    out = tmp_path / "model.onnx"
    shutil.copyfile(exported[1], out)
    before = out.read_bytes()
    change = (lambda h: h * 1.01) if case == "heatmaps" else (lambda h: torch.roll(h, shifts=2, dims=3))
    monkeypatch.setattr(export_cli, "exporter_for", lambda kind, name=None: _perturbed_runtime(change))
    argv = ["--checkpoint", str(checkpoint), "--output", str(out), "--timing-runs", "0", "--overwrite"]
    if case == "keypoints":
        argv += ["--heatmap-tolerance", "1e9"]
    match = "heatmaps differ" if case == "heatmaps" else "scores AP"
    with pytest.raises(ValueError, match=match + ".*was not written"):
        export_cli.main(export_cli.get_args_parser().parse_args(argv))
    assert out.read_bytes() == before and not list(tmp_path.glob("*.partial*"))


def test_bad_onnx_file(tmp_path):
    (tmp_path / "bad.onnx").write_bytes(b"nothing")
    with pytest.raises(ValueError, match="export it again"):
        OnnxBackend(tmp_path / "bad.onnx")
    with pytest.raises(FileNotFoundError, match="tools/export.py"):
        OnnxBackend(tmp_path / "missing.onnx")
