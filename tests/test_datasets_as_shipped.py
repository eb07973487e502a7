"""Keypoint datasets as they ship (issue 20) and silent wrong results of their readers (issue 19), on small COCO-format
files generated here from the real images and labels of tests/data/coco_mini: missing fields, NaN keypoints,
orphan annotations, several categories sharing one skeleton, COCO's names on another category, configs copied out of
configs/."""
import contextlib
import copy
import io
import json
import logging
import shutil

import numpy as np
import pytest
import torch
from pycocotools.cocoeval import COCOeval

from keypoints import constants
from keypoints.coco_files import load_coco, read_detections
from keypoints.config import load_config
from keypoints.data import build_dataloader, build_dataset
from keypoints.engine import evaluate, train_one_epoch
from keypoints.evaluation import CocoKeypointEvaluator, evaluate_results
from keypoints.metadata import DatasetMeta
from keypoints.postprocess import instance_areas

from conftest import COCO_MINI, ROOT, load_tool

QUICK = ["data.workers=0", "data.batch_size=4", "test.batch_size=16", "aug.photometric=false"]


def write_set(root, images=5, edit=None, splits=("val",)):
    """A COCO keypoint file of the first ``images`` coco_mini val images with labelled people (their images copied),
    changed by ``edit(data)``, written as ``annotations/person_keypoints_{split}2017.json`` for each split."""
    data = json.loads((COCO_MINI / "annotations/person_keypoints_val2017.json").read_text())
    ids = sorted({a["image_id"] for a in data["annotations"] if a["num_keypoints"] > 0})[:images]
    data["images"] = [im for im in data["images"] if im["id"] in ids]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in ids]
    if edit is not None:
        edit(data)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for split in splits:
        (root / f"{split}2017").mkdir(exist_ok=True)
        for im in data["images"]:
            shutil.copy(COCO_MINI / "val2017" / im["file_name"], root / f"{split}2017" / im["file_name"])
        (root / f"annotations/person_keypoints_{split}2017.json").write_text(json.dumps(data))
    return data


def gt_results(data, category_of=None):
    """The labelled, non-crowd ground truth as a results list (score 1)."""
    return [{"image_id": a["image_id"], "category_id": a["category_id"] if category_of is None else category_of(a),
             "keypoints": a["keypoints"], "score": 1.0}
            for a in data["annotations"] if any(v > 0 for v in a["keypoints"][2::3]) and not a.get("iscrowd", 0)]


def quiet(fn, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


# ----------------------------------------------------------------------------- missing and wrong fields (20.1, 19)


def _strip(data):
    for i, a in enumerate(data["annotations"]):
        for key in ("num_keypoints", "iscrowd", "area"):
            a.pop(key, None)


def test_missing_fields_are_filled_and_counted(tmp_path, caplog):
    """No num_keypoints / iscrowd / area (several public hand sets): filled from the flags and the box, counted in
    one warning line; pycocotools then scores the ground truth at AP 1 instead of raising KeyError."""
    data = write_set(tmp_path, edit=_strip)
    ann_file = tmp_path / "annotations/person_keypoints_val2017.json"
    with caplog.at_level(logging.WARNING, logger="keypoints.coco_files"):
        coco = load_coco(ann_file)
    lines = [r.getMessage() for r in caplog.records]
    n = len(data["annotations"])
    assert len(lines) == 1 and f"num_keypoints missing on {n}" in lines[0] and f"of {n} annotations" in lines[0]
    assert "iscrowd missing (set to 0) on" in lines[0] and "area missing" in lines[0]
    for a in coco.anns.values():
        assert a["num_keypoints"] == sum(v > 0 for v in a["keypoints"][2::3]) and a["iscrowd"] == 0
        assert a["area"] == pytest.approx(a["bbox"][2] * a["bbox"][3])
    metrics = quiet(evaluate_results, gt_results(data), coco, category_id=1)
    assert metrics["AP"] == pytest.approx(1.0)


def test_num_keypoints_disagreeing_with_the_flags(tmp_path, caplog):
    """num_keypoints 0 on a labelled person (and 17 on one with 3 labels): the flags decide, for training and
    evaluation alike, and one warning line counts the disagreements."""
    def edit(data):
        labelled = [a for a in data["annotations"] if a["num_keypoints"] > 0]
        labelled[0]["num_keypoints"] = 0
        labelled[1]["num_keypoints"] = 17
    data = write_set(tmp_path, edit=edit)
    first = next(a for a in data["annotations"] if a["num_keypoints"] == 0 and any(a["keypoints"][2::3]))
    cfg = load_config(ROOT / "configs/quickstart.yaml", [f"data.root={tmp_path}", *QUICK])
    with caplog.at_level(logging.WARNING):
        ds = build_dataset(cfg, "val")
    assert first["id"] in ds.ann_ids  # kept: it has labelled keypoints, whatever num_keypoints said
    line = next(r.getMessage() for r in caplog.records if "disagreeing" in r.getMessage())
    assert "num_keypoints disagreeing with the flags on 2" in line and f"annotation {first['id']} says 0" in line
    metrics = quiet(evaluate_results, gt_results(data), ds.coco, category_id=1)
    assert metrics["AP"] == pytest.approx(1.0)


def test_test_tool_scores_a_file_without_num_keypoints(untrained_checkpoint, tmp_path):
    data = write_set(tmp_path, images=3, edit=_strip)
    metrics = load_tool("test").main(load_tool("test").get_args_parser().parse_args(
        ["--checkpoint", str(untrained_checkpoint), "--data-root", str(tmp_path), "--device", "cpu", "--no-flip",
         "--opts", "data.workers=0"]))
    assert set(constants.COCO_STAT_NAMES) <= set(metrics) and 0.0 <= metrics["AP"] <= 1.0
    assert metrics["num_predictions"] == len(gt_results(data))
    (tmp_path / "gt.json").write_text(json.dumps(gt_results(data)))
    tool = load_tool("test")
    metrics = tool.main(tool.get_args_parser().parse_args(
        ["--results-in", str(tmp_path / "gt.json"), "--ann-file",
         str(tmp_path / "annotations/person_keypoints_val2017.json")]))
    assert metrics["AP"] == pytest.approx(1.0)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), None, "3"])
def test_non_finite_keypoint_is_one_line_error(tmp_path, value):
    def edit(data):
        a = next(a for a in data["annotations"] if a["num_keypoints"] > 0)
        a["keypoints"][4] = value
    write_set(tmp_path, edit=edit)
    bad = next(a for a in json.loads((tmp_path / "annotations/person_keypoints_val2017.json").read_text())
               ["annotations"] if a["keypoints"][4] != a["keypoints"][4] or not isinstance(a["keypoints"][4], int))
    ann_file = tmp_path / "annotations/person_keypoints_val2017.json"
    with pytest.raises(ValueError, match=f"{ann_file}: annotation {bad['id']} has keypoint value .*keypoint 1, y.* "
                                         "must be finite numbers") as info:
        load_coco(ann_file)
    assert "\n" not in str(info.value)
    evaluator = CocoKeypointEvaluator(ann_file)
    with pytest.raises(ValueError, match=f"annotation {bad['id']}"):
        evaluator.coco_gt


def test_orphan_annotations_are_counted(tmp_path, caplog):
    def edit(data):
        orphan = copy.deepcopy(next(a for a in data["annotations"] if a["num_keypoints"] > 0))
        orphan.update(id=987654321, image_id=123456789)
        data["annotations"].append(orphan)
    write_set(tmp_path, edit=edit)
    cfg = load_config(ROOT / "configs/quickstart.yaml", [f"data.root={tmp_path}", *QUICK])
    with caplog.at_level(logging.INFO):
        ds = build_dataset(cfg, "val")
    assert ds.stats["dropped"]["no_image"] == 1
    assert sum(ds.stats["dropped"].values()) == ds.stats["instances_total"] - len(ds)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "1 annotations name an image id that is not in 'images' (e.g. annotation 987654321)" in text
    assert "no_image 1" in text  # the dataset's summary line


# ----------------------------------------------------------------------------- several categories, one skeleton (20.2)


def _two_species(data):
    """People relabelled as two species of one 17-keypoint skeleton: every other annotation a "dog"."""
    cat = dict(data["categories"][0], id=1, name="cat", supercategory="animal")
    data["categories"] = [cat, dict(cat, id=2, name="dog"), {"id": 3, "name": "tree", "supercategory": "plant"}]
    for i, a in enumerate(sorted(data["annotations"], key=lambda a: a["id"])):
        a["category_id"] = 1 + i % 2


def test_categories_sharing_a_skeleton_train_and_evaluate_as_one_set(tmp_path, caplog):
    data = write_set(tmp_path, images=4, edit=_two_species, splits=("train", "val"))
    opts = [f"data.root={tmp_path}", *QUICK, "train.channels_last=false"]
    with pytest.raises(ValueError, match="2 keypoint categories .* data.category_id=all"):
        build_dataset(load_config(ROOT / "configs/quickstart.yaml", opts), "train")
    cfg = load_config(ROOT / "configs/quickstart.yaml", [*opts, "data.category_id=all"])
    with caplog.at_level(logging.INFO):
        train_set = build_dataset(cfg, "train")
    meta = train_set.metadata
    assert meta.category_ids == (1, 2) and meta.category_names == ("cat", "dog") and meta.category_id == 1
    assert meta.display_name == "animal (2 categories: cat, dog)" and not meta.is_coco_person
    assert "animal (2 categories: cat, dog) trained and evaluated as one set" in caplog.text
    kept = {a["id"]: a["category_id"] for a in data["annotations"] if a["num_keypoints"] > 0 and not a["iscrowd"]}
    assert len(train_set) == len(kept) and set(train_set.instance_category_ids.tolist()) == {1, 2}
    assert [kept[i] for i in train_set.ann_ids.tolist()] == train_set.instance_category_ids.tolist()
    assert DatasetMeta.from_dict(json.loads(json.dumps(meta.to_dict()))) == meta
    # the same set chosen by a list of ids
    assert build_dataset(load_config(ROOT / "configs/quickstart.yaml", [*opts, "data.category_id=[1,2]"]),
                         "train").metadata == meta

    # a few training iterations, then evaluation of both categories through the one evaluation path
    from keypoints.backends import ModelInfo, TorchBackend
    from keypoints.inference import TopDownInference
    from keypoints.losses import KeypointMSELoss
    from keypoints.models import build_model

    model = build_model(cfg.model, meta.num_keypoints)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    loader = build_dataloader(train_set, cfg, train=True)
    stats = train_one_epoch(model, loader, optimizer, scheduler, KeypointMSELoss(), device=torch.device("cpu"),
                            epoch=0, channels_last=False, max_iters=2, progress=False)
    assert np.isfinite(stats["train_loss"])
    val_set = build_dataset(cfg, "val", metadata=meta)
    backend = TorchBackend(model, ModelInfo.from_config(cfg, metadata=meta), torch.device("cpu"), move=False,
                           channels_last=False)
    evaluator = CocoKeypointEvaluator(val_set.ann_file, sigmas=meta.sigmas, category_id=meta.category_ids,
                                      output_dir=tmp_path / "eval")
    metrics = quiet(evaluate, TopDownInference.from_config(backend, cfg), build_dataloader(val_set, cfg, train=False),
                    evaluator, progress=False)
    assert set(constants.COCO_STAT_NAMES) <= set(metrics) and 0.0 <= metrics["AP"] <= 1.0
    written = json.loads(evaluator.results_path.read_text())
    assert {r["category_id"] for r in written} == {1, 2} and len(written) == len(kept)
    assert [metrics[k] for k in constants.COCO_STAT_NAMES] == _cocoeval(val_set.coco, written, meta.sigmas, [1, 2])

    # scored per category: the truth with its own categories gives AP 1, with the categories swapped AP 0
    anns = [val_set.coco.anns[int(i)] for i in val_set.ann_ids]
    kpts = np.array([a["keypoints"] for a in anns], np.float64).reshape(len(anns), -1, 3)
    kpts[..., 2] = 1.0
    cats = np.array([a["category_id"] for a in anns])
    areas = instance_areas(val_set._scales)
    for categories, expected in ((cats, 1.0), (3 - cats, 0.0)):
        evaluator.reset()
        evaluator.process([a["image_id"] for a in anns], kpts, np.ones(len(anns)), areas, category_ids=categories)
        assert quiet(evaluator.evaluate)["AP"] == pytest.approx(expected)
    with pytest.raises(ValueError, match="needs category_ids"):
        evaluator.process([anns[0]["image_id"]], kpts[:1], [1.0], areas[:1])
    single = CocoKeypointEvaluator(val_set.ann_file, sigmas=meta.sigmas, category_id=1)
    with pytest.raises(ValueError, match="instances of category \\[2\\].*category_id=metadata.category_ids"):
        single.process([a["image_id"] for a in anns], kpts, np.ones(len(anns)), areas, category_ids=cats)


def _cocoeval(coco_gt, results, sigmas, cat_ids):
    def run():
        ev = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(results)), iouType="keypoints")
        ev.params.kpt_oks_sigmas = np.asarray(sigmas, np.float64)
        ev.params.catIds = cat_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        return [float(v) for v in ev.stats]
    return quiet(run)


def test_category_sets_refuse_other_keypoints(tmp_path):
    def edit(data):
        _two_species(data)
        data["categories"][1] = dict(data["categories"][1], keypoints=[f"k{i}" for i in range(17)])
    write_set(tmp_path, images=2, edit=edit)
    cats = json.loads((tmp_path / "annotations/person_keypoints_val2017.json").read_text())["categories"]
    with pytest.raises(ValueError, match="category 2 \\(dog\\) names other keypoints than category 1 \\(cat\\); one "
                                         "model needs one keypoint list: set data.category_id to the ids of one "
                                         "group \\[\\[1\\], \\[2\\]\\]"):
        DatasetMeta.from_coco_categories(cats, "all")
    with pytest.raises(ValueError, match="names other keypoints"):
        DatasetMeta.from_coco_categories(cats, [1, 2])
    with pytest.raises(ValueError, match="data.category_id lists \\[7\\], not categories"):
        DatasetMeta.from_coco_categories(cats, [1, 7])
    # a model of cats and dogs (one skeleton) meets a file whose category 2 names other keypoints: refused
    model_meta = DatasetMeta.from_coco_categories([cats[0], dict(cats[0], id=2, name="dog")], "all")
    cfg = load_config(ROOT / "configs/quickstart.yaml", [f"data.root={tmp_path}", *QUICK])
    with pytest.raises(ValueError, match="category 2 has 17 keypoints \\['k0', .* but the model predicts 17 "
                                         "\\(\\['nose'") as info:
        build_dataset(cfg, "val", metadata=model_meta)
    assert "\n" not in str(info.value)
    assert model_meta.check_category(cats[:1], "f.json") == (1,)  # a file with only one of the model's categories


def test_detections_of_a_category_set(tmp_path):
    path = tmp_path / "dets.json"
    path.write_text(json.dumps([{"image_id": 1, "category_id": c, "bbox": [0, 0, 10, 10], "score": 0.5}
                                for c in (1, 2, 3, 2)]))
    dets = read_detections(path, category_id=(1, 2))
    assert dets.category_ids.tolist() == [1, 2, 2] and dets.dropped == {"other_category": 1}
    assert read_detections(path, category_id=3).category_ids.tolist() == [3]
    with pytest.raises(ValueError, match="no boxes of category_ids \\[5, 6\\]"):
        read_detections(path, category_id=[5, 6])


# ----------------------------------------------------------------------------- COCO's names on another category (20.9)


def test_coco_names_on_another_category(tmp_path, caplog):
    cat = {"id": 5, "name": "macaque", "keypoints": list(constants.KEYPOINT_NAMES), "skeleton": []}
    with caplog.at_level(logging.INFO, logger="keypoints.metadata"):
        meta = DatasetMeta.from_coco_category(cat, source="macaque.json")
    assert meta.flip_index == constants.FLIP_INDEX and meta.sigmas == constants.OKS_SIGMAS
    assert meta.upper_body == constants.UPPER_BODY and not meta.is_coco_person
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["macaque.json: category 'macaque' names the 17 COCO person keypoints in COCO order, so COCO's "
                     "flip index, OKS sigmas, upper body (half-body augmentation) apply (set data.flip_pairs, "
                     "data.oks_sigmas or data.upper_body to change them)"]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="keypoints.metadata"):
        meta = DatasetMeta.from_coco_category(cat, sigmas=[0.1] * 17, upper_body=[])
    assert meta.sigmas == (0.1,) * 17 and meta.upper_body == ()
    assert "COCO's flip index apply" in caplog.text


# ----------------------------------------------------------------------------- configs copied anywhere (20.4)


@pytest.mark.parametrize("name", ["synthetic_bird.yaml", "coco/ablations/mobilenetv3_large_relu_256x192.yaml",
                                  "ablations/synthetic/relu.yaml"])
def test_a_copied_config_loads(tmp_path, name):
    copy_path = tmp_path / "elsewhere" / "my.yaml"
    copy_path.parent.mkdir()
    shutil.copy(ROOT / "configs" / name, copy_path)
    assert load_config(copy_path) == load_config(ROOT / "configs" / name)


def test_missing_base_lists_where_it_looked(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text("_base_: no_such_base.yaml\n")
    with pytest.raises(FileNotFoundError, match=f"_base_ file 'no_such_base.yaml' not found; looked in "
                                                f"{tmp_path}/no_such_base.yaml, {ROOT}/configs/no_such_base.yaml") as e:
        load_config(path)
    assert "\n" not in str(e.value)


def test_test_tool_scores_a_model_of_several_categories(tmp_path):
    """tools/test.py with a model of a two-species set: both categories predicted, written and scored."""
    from keypoints.config import config_to_dict
    from keypoints.models import build_model

    write_set(tmp_path, images=3, edit=_two_species)
    cfg = load_config(ROOT / "configs/quickstart.yaml", [f"data.root={tmp_path}", *QUICK, "data.category_id=all"])
    meta = build_dataset(cfg, "val").metadata
    ckpt = tmp_path / "animals.pth"
    torch.save({"model": build_model(cfg.model, 17).state_dict(), "config": config_to_dict(cfg), "epoch": 0,
                "metadata": meta.to_dict()}, ckpt)
    tool = load_tool("test")
    metrics = tool.main(tool.get_args_parser().parse_args([
        "--checkpoint", str(ckpt), "--device", "cpu", "--no-flip", "--out", str(tmp_path / "r.json"),
        "--metrics-json", str(tmp_path / "m.json")]))
    assert set(constants.COCO_STAT_NAMES) <= set(metrics)
    assert {r["category_id"] for r in json.loads((tmp_path / "r.json").read_text())} == {1, 2}
    assert json.loads((tmp_path / "m.json").read_text())["category_ids"] == [1, 2]
