"""tools/test.py: a checkpoint with ground-truth or detector boxes, an existing results file, bad inputs."""
import json

import pytest

from conftest import COCO_MINI, COCO_MMPOSE4, ROOT, load_tool

tool = load_tool("test")
DETECTIONS = COCO_MMPOSE4 / "person_detection_results" / "detections_person.json"
STATS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")


def _run(*argv):
    return tool.main(tool.get_args_parser().parse_args([str(a) for a in argv]))


def test_checkpoint_with_ground_truth_and_detector_boxes(untrained_checkpoint, tmp_path, capsys):
    common = ["--checkpoint", untrained_checkpoint, "--data-root", COCO_MMPOSE4, "--device", "cpu",
              "--opts", "data.workers=0"]
    gt = _run(*common, "--metrics-json", tmp_path / "gt.json", "--out", tmp_path / "gt_results.json")
    assert set(STATS) <= set(gt) and gt["num_predictions"] == 12  # 12 annotated people in coco_mmpose4
    assert "boxes: ground-truth boxes" in capsys.readouterr().out
    det = _run(*common, "--boxes", DETECTIONS, "--no-flip", "--metrics-json", tmp_path / "det.json")
    assert det["num_predictions"] == 118  # every detector box, no score threshold by default
    saved = json.loads((tmp_path / "det.json").read_text())
    assert "detections_person.json" in saved["box_source"] and saved["flip_test"] is False
    assert all(0.0 <= saved[k] <= 1.0 for k in STATS)
    results = json.loads((tmp_path / "gt_results.json").read_text())
    assert results and len(results[0]["keypoints"]) == 51 and results[0]["category_id"] == 1


def test_results_file_of_any_model(tmp_path):
    ann = COCO_MINI / "annotations" / "person_keypoints_val2017.json"
    anns = [a for a in json.loads(ann.read_text())["annotations"] if a["num_keypoints"] > 0 and not a["iscrowd"]]
    results = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0} for a in anns]
    (tmp_path / "gt_as_results.json").write_text(json.dumps(results))
    metrics = _run("--results-in", tmp_path / "gt_as_results.json", "--ann-file", ann,
                   "--metrics-json", tmp_path / "m.json")
    assert metrics["AP"] == pytest.approx(1.0)
    assert json.loads((tmp_path / "m.json").read_text())["AP"] == pytest.approx(1.0)


def test_bad_inputs(untrained_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="--results-in needs --ann-file"):
        _run("--results-in", tmp_path / "r.json")
    with pytest.raises(ValueError, match="pass --checkpoint"):
        _run()
    with pytest.raises(ValueError, match="does not fit the model.*use the config the checkpoint was trained with"):
        _run("--checkpoint", untrained_checkpoint,
             "--config", ROOT / "configs/coco/mobilenetv3_small_dyrelu_c_256x192.yaml",
             "--data-root", COCO_MMPOSE4)
    (tmp_path / "not_a_list.json").write_text('{"image_id": 1}')
    with pytest.raises(ValueError, match="must be a JSON list"):
        _run("--results-in", tmp_path / "not_a_list.json", "--ann-file",
             COCO_MINI / "annotations" / "person_keypoints_val2017.json")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth is not a model file this project reads"):
        _run("--checkpoint", tmp_path / "junk.pth")
