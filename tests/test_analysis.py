"""tools/analyze_dyrelu.py: the "is it dynamic?" inspection runs on untrained models and checkpoints."""
import csv

import pytest
import torch

from keypoints.dyrelu_inspection import collect_dyrelu_stats
from keypoints.config import ModelConfig
from keypoints.models import build_model
from conftest import COCO_MINI, ROOT, load_tool

tool = load_tool("analyze_dyrelu")


def test_untrained_model_from_config(tmp_path):
    stats = tool.main(tool.get_args_parser().parse_args([
        "--config", str(ROOT / "configs/quickstart.yaml"), "--images", str(COCO_MINI / "val2017"),
        "--output-dir", str(tmp_path), "--max-images", "4", "--points", "200"]))
    assert (tmp_path / "scatter.png").stat().st_size > 0 and (tmp_path / "slope_gap.png").stat().st_size > 0
    with open(tmp_path / "slope_gap.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(stats) == 29  # every DY-ReLU of backbone and head
    assert all(r["variant"] == "C" for r in rows)
    # Per-image coefficients differ: the spread of the slope gap across images is not zero.
    assert any(float(r["spread_across_images"]) > 0 for r in rows)


def test_checkpoint(untrained_checkpoint, tmp_path):
    stats = tool.main(tool.get_args_parser().parse_args([
        "--checkpoint", str(untrained_checkpoint), "--images", str(COCO_MINI / "val2017"),
        "--output-dir", str(tmp_path), "--max-images", "2", "--points", "100"]))
    assert stats and (tmp_path / "slope_gap.csv").is_file()


def test_slope_gap_of_a_relu_initialised_layer_is_one():
    model = build_model(ModelConfig(backbone="mobilenet_v3_small", head="deconv", width_mult=0.5))
    for m in model.modules():
        if hasattr(m, "fc2") and hasattr(m, "init_a"):
            torch.nn.init.zeros_(m.fc2.weight)
            torch.nn.init.zeros_(m.fc2.bias)  # zero residual: a = (1, 0), exactly ReLU's slopes
    stats = collect_dyrelu_stats(model, torch.randint(0, 255, (2, 3, 64, 48), dtype=torch.uint8), 50)
    assert all(s.slope_gap == pytest.approx(1.0) and s.slope_gap_std == 0 for s in stats)


def test_static_model_and_missing_folder(tmp_path):
    relu = build_model(ModelConfig(backbone="mobilenet_v3_small", act="relu", head_act="relu"))
    with pytest.raises(ValueError, match="no DY-ReLU activation"):
        collect_dyrelu_stats(relu, torch.zeros(1, 3, 64, 48))
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        tool.main(tool.get_args_parser().parse_args([
            "--config", str(ROOT / "configs/quickstart.yaml"), "--images", str(tmp_path / "none"),
            "--output-dir", str(tmp_path)]))
    with pytest.raises(ValueError, match="no readable image"):
        tool.main(tool.get_args_parser().parse_args([
            "--config", str(ROOT / "configs/quickstart.yaml"), "--images", str(tmp_path),
            "--output-dir", str(tmp_path)]))


def test_slope_gap_is_the_absolute_difference_of_the_slopes():
    """Slopes set through the hyper function's bias to a1 = 1 - 0.8 = 0.2 and a2 = 0 + 0.6 = 0.6 (theta = 2
    sigmoid(bias) - 1): the gap |a1 - a2| is 0.4, where a1 + a2 (0.8) or a1 - a2 (-0.4) would differ; no image
    changes it (zero weights), so the spread across images is 0."""
    import math

    model = build_model(ModelConfig(backbone="mobilenet_v3_small", head="deconv", width_mult=0.5))
    for m in model.modules():
        if hasattr(m, "fc2") and hasattr(m, "init_a"):
            torch.nn.init.zeros_(m.fc2.weight)
            bias = torch.zeros(m.fc2.out_features).view(-1, 2 * m.k)  # per channel: a1, a2, b1, b2
            bias[:, 0], bias[:, 1] = -math.log(9.0), math.log(4.0)  # sigmoid: 0.1 -> theta -0.8; 0.8 -> 0.6
            m.fc2.bias.data.copy_(bias.view(-1))
    stats = collect_dyrelu_stats(model, torch.randint(0, 255, (3, 3, 64, 48), dtype=torch.uint8), 50)
    assert all(s.slope_gap == pytest.approx(0.4, abs=1e-5) for s in stats)
    assert all(s.slope_gap_std == pytest.approx(0.0, abs=1e-6) for s in stats)
