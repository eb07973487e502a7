"""Dataset metadata: COCO files give today's person constants, flip-pair inference, serialisation, one-line errors,
and the OKS sigmas reaching COCOeval exactly as pycocotools called directly."""
import contextlib
import copy
import io
import json
import logging

import numpy as np
import pytest
from pycocotools.cocoeval import COCOeval

from keypoints import constants
from keypoints.backends import ModelInfo
from keypoints.backends.base import METADATA_KEY
from keypoints.coco_files import load_coco
from keypoints.config import load_config
from keypoints.data import build_dataset, build_metadata
from keypoints.evaluation import CocoKeypointEvaluator, evaluate_results
from keypoints.metadata import DEFAULT_SIGMA, DatasetMeta, infer_flip_pairs

from conftest import COCO_MINI, COCO_MMPOSE4, ROOT

PERSON_FILES = [(COCO_MINI, "train"), (COCO_MINI, "val"), (COCO_MMPOSE4, "val")]
BIRD_CATEGORY = {"id": 16, "name": "bird", "keypoints": ["beak", "head", "left_wing", "right_wing", "tail"],
                 "skeleton": [[1, 2], [2, 3], [2, 4], [2, 5]]}


@pytest.mark.parametrize("root,split", PERSON_FILES)
def test_real_coco_files_give_the_person_constants(root, split):
    cfg = load_config(ROOT / "configs/quickstart.yaml", [f"data.root={root}"])
    meta = build_metadata(cfg, split)
    assert meta == DatasetMeta.coco_person()
    assert meta.keypoint_names == constants.KEYPOINT_NAMES and meta.flip_index == constants.FLIP_INDEX
    assert meta.skeleton == constants.SKELETON and meta.sigmas == constants.OKS_SIGMAS
    assert meta.upper_body == constants.UPPER_BODY and meta.category_id == constants.PERSON_CATEGORY_ID
    assert meta.num_keypoints == constants.NUM_KEYPOINTS and meta.is_coco_person


def test_person_pipeline_is_unchanged_on_coco_mini(caplog):
    """The metadata path (builder -> dataset -> evaluator) equals the constants path bit for bit: the same training
    items (flip and half-body from the person constants) and the same COCOeval numbers as pycocotools called with
    the COCO sigmas and its default categories."""
    from keypoints.data.transforms import TopDownTransform

    cfg = load_config(ROOT / "configs/quickstart.yaml", [f"data.root={COCO_MINI}", "data.workers=0",
                                                         "aug.photometric=false", "aug.flip_prob=1.0",
                                                         "aug.half_body_prob=1.0", "aug.half_body_min_joints=1"])
    with caplog.at_level(logging.WARNING):
        train_set = build_dataset(cfg, "train")
    assert not [r for r in caplog.records if "inferred" in r.getMessage()]  # no guessing for COCO files
    assert train_set.transform.flip_index == constants.FLIP_INDEX
    assert train_set.transform.upper_body == constants.UPPER_BODY and train_set.transform.half_body_prob == 1.0
    reference = TopDownTransform(cfg.data.input_size, flip_prob=1.0, flip_index=constants.FLIP_INDEX,
                                 upper_body=constants.UPPER_BODY, half_body_prob=1.0, half_body_min_joints=1,
                                 scale_range=cfg.aug.scale_range, rotation_max=cfg.aug.rotation_max,
                                 rotation_prob=cfg.aug.rotation_prob, seed=cfg.train.seed)
    for i in range(3):
        item = train_set[(i, 7 + i)]
        reference.reseed(7 + i)
        inst = train_set.instance(i)
        image = train_set.read_image(inst["path"])
        out = reference(image, inst["center"], inst["scale"], inst["keypoints"][:, :2], inst["keypoints"][:, 2],
                        bgr=True)
        assert np.array_equal(item["image"].permute(1, 2, 0).numpy(), out["image"])
        assert np.array_equal(item["keypoints"][:, :2].numpy(), out["keypoints"])

    val_set = build_dataset(cfg, "val", metadata=train_set.metadata)
    meta = val_set.metadata
    coco = val_set.coco
    rng = np.random.default_rng(0)
    results = []
    for ann in coco.anns.values():
        if ann["num_keypoints"] > 0 and not ann["iscrowd"]:
            kp = np.asarray(ann["keypoints"], np.float64).reshape(-1, 3)
            kp[:, :2] += rng.normal(0, 4, size=(len(kp), 2))
            kp[:, 2] = 0.9
            results.append({"image_id": ann["image_id"], "category_id": meta.category_id,
                            "keypoints": kp.reshape(-1).tolist(), "score": 0.9})
    ours = _quiet(evaluate_results, results, coco, sigmas=meta.sigmas, category_id=meta.category_id)
    direct = _direct_cocoeval(coco, results, constants.OKS_SIGMAS, cat_ids=None)
    assert [ours[k] for k in constants.COCO_STAT_NAMES] == list(direct)


def _quiet(fn, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


def _direct_cocoeval(coco_gt, results, sigmas, cat_ids):
    def run():
        dt = coco_gt.loadRes(copy.deepcopy(results))
        ev = COCOeval(coco_gt, dt, iouType="keypoints")
        ev.params.kpt_oks_sigmas = np.asarray(sigmas, np.float64)
        if cat_ids is not None:
            ev.params.catIds = cat_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        return ev.stats
    return tuple(float(v) for v in _quiet(run))


def test_sigmas_reach_cocoeval(tmp_path):
    """A perturbed result scores differently under different sigmas, through the evaluator exactly as through
    pycocotools with ``params.kpt_oks_sigmas`` set; all 10 stats; results carry the dataset's category id."""
    coco = load_coco(COCO_MINI / "annotations/person_keypoints_val2017.json")
    gt = [a for a in coco.anns.values() if a["num_keypoints"] > 0 and not a["iscrowd"]]
    loose = tuple(s * 3 for s in constants.OKS_SIGMAS)
    scores = {}
    for name, sigmas in (("coco", constants.OKS_SIGMAS), ("loose", loose)):
        evaluator = CocoKeypointEvaluator(COCO_MINI / "annotations/person_keypoints_val2017.json", sigmas=sigmas,
                                          output_dir=tmp_path / name)
        kp = np.stack([np.asarray(a["keypoints"], np.float64).reshape(-1, 3) for a in gt])
        kp[..., :2] += np.random.default_rng(1).normal(0, 6, size=kp[..., :2].shape)
        kp[..., 2] = 0.8
        areas = np.array([a["area"] for a in gt]) * 2
        evaluator.process([a["image_id"] for a in gt], kp, np.ones(len(gt)), areas)
        metrics = _quiet(evaluator.evaluate)
        results = json.loads(evaluator.results_path.read_text())
        assert {r["category_id"] for r in results} == {1}
        direct = _direct_cocoeval(coco, results, sigmas, cat_ids=[1])
        assert [metrics[k] for k in constants.COCO_STAT_NAMES] == list(direct)
        assert len([k for k in constants.COCO_STAT_NAMES if k in metrics]) == 10
        scores[name] = metrics["AP"]
    assert scores["loose"] > scores["coco"]


def test_infer_flip_pairs():
    assert infer_flip_pairs(constants.KEYPOINT_NAMES) == tuple((i, j) for i, j in enumerate(constants.FLIP_INDEX)
                                                               if i < j)
    names = ["nose", "Front_Left_Paw", "front_right_paw", "left-ear", "right ear", "left_only", "tail"]
    assert infer_flip_pairs(names) == ((1, 2), (3, 4))
    assert infer_flip_pairs(["a", "b"]) == ()


def test_from_coco_category_infers_and_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="keypoints.metadata"):
        meta = DatasetMeta.from_coco_category(BIRD_CATEGORY, source="birds.json")
    assert meta.flip_index == (0, 1, 3, 2, 4) and meta.flip_pairs == ((2, 3),)
    assert meta.skeleton == ((0, 1), (1, 2), (1, 3), (1, 4)) and meta.sigmas == (DEFAULT_SIGMA,) * 5
    assert meta.upper_body == () and meta.category_id == 16 and meta.category_name == "bird"
    message = " ".join(r.getMessage() for r in caplog.records)
    assert "inferred" in message and "left_wing/right_wing" in message and "birds.json" in message
    given = DatasetMeta.from_coco_category(BIRD_CATEGORY, flip_pairs=[], sigmas=[0.1] * 5, upper_body=["beak", 1])
    assert given.flip_index == (0, 1, 2, 3, 4) and given.sigmas == (0.1,) * 5 and given.upper_body == (0, 1)
    assert DatasetMeta.from_coco_category(BIRD_CATEGORY, flip_pairs=[[2, "right_wing"]]).flip_index == (0, 1, 3, 2, 4)


def test_round_trips():
    meta = DatasetMeta.from_coco_category(BIRD_CATEGORY, flip_pairs=[["left_wing", "right_wing"]])
    assert DatasetMeta.from_dict(json.loads(json.dumps(meta.to_dict()))) == meta
    assert DatasetMeta.from_coco_category(meta.to_coco_category(), flip_pairs=meta.flip_pairs) == meta
    info = ModelInfo(input_size=(128, 128), heatmap_size=(32, 32), flip_index=meta.flip_index, config={}, metadata=meta)
    assert ModelInfo.from_metadata(info.to_metadata(), "m.onnx") == info
    old = {k: v for k, v in info.to_metadata().items() if k != METADATA_KEY}  # files written before the metadata
    old["flip_index"] = json.dumps(list(constants.FLIP_INDEX))
    assert ModelInfo.from_metadata(old, "old.onnx").metadata == DatasetMeta.coco_person()


@pytest.mark.parametrize("category,kwargs,match", [
    ({"id": 3, "name": "cup"}, {}, "category 'cup' \\(id 3\\) has no 'keypoints' list"),
    (BIRD_CATEGORY, {"flip_pairs": [["left_wing", "right_paw"]]}, "names keypoint 'right_paw', which is not one of"),
    (BIRD_CATEGORY, {"flip_pairs": [["left_wing", "right_wing"], ["left_wing", "tail"]]}, "one pair"),
    (BIRD_CATEGORY, {"flip_pairs": [[0, 9]]}, "0-based index below 5"),
    (BIRD_CATEGORY, {"sigmas": [0.05] * 4}, "data.oks_sigmas has 4 values but category 'bird' has 5 keypoints"),
    (dict(BIRD_CATEGORY, skeleton=[[1, 9]]), {}, "skeleton edge \\[0, 8\\] names a keypoint outside 0..4"),
])
def test_bad_metadata_is_one_line(category, kwargs, match):
    with pytest.raises(ValueError, match=match) as info:
        DatasetMeta.from_coco_category(category, **kwargs)
    assert "\n" not in str(info.value)


def test_not_symmetric_flip_index_is_refused():
    with pytest.raises(ValueError, match="not a symmetric permutation"):
        DatasetMeta(keypoint_names=("a", "b", "c"), flip_index=(1, 2, 0))


def test_category_choice(tmp_path):
    cats = [dict(BIRD_CATEGORY), {"id": 1, "name": "person", "keypoints": list(constants.KEYPOINT_NAMES)}]
    with pytest.raises(ValueError, match="2 keypoint categories .* choose one with data.category_id"):
        DatasetMeta.from_coco_categories(cats)
    assert DatasetMeta.from_coco_categories(cats, 1).flip_index == constants.FLIP_INDEX
    with pytest.raises(ValueError, match="data.category_id=7 is not a category"):
        DatasetMeta.from_coco_categories(cats, 7)
    with pytest.raises(ValueError, match="has no 'categories'"):
        DatasetMeta.from_coco_categories([])


def test_annotation_count_mismatch_and_wrong_dataset(tmp_path):
    data = json.loads((COCO_MINI / "annotations/person_keypoints_val2017.json").read_text())
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "val2017").symlink_to(COCO_MINI / "val2017")
    bad = copy.deepcopy(data)
    first = next(a for a in bad["annotations"] if a["num_keypoints"] > 0)
    first["keypoints"] = first["keypoints"][:-3]
    (root / "annotations/person_keypoints_val2017.json").write_text(json.dumps(bad))
    cfg = load_config(ROOT / "configs/quickstart.yaml", [f"data.root={root}"])
    with pytest.raises(ValueError, match=f"annotation {first['id']} has 48 keypoint values, but its category "
                                         "'person' lists 17 keypoints"):
        build_dataset(cfg, "val")
    (root / "annotations/person_keypoints_val2017.json").write_text(json.dumps(data))
    bird = DatasetMeta.from_coco_category(BIRD_CATEGORY, flip_pairs=[[2, 3]])
    with pytest.raises(ValueError, match="no category 16 \\(bird\\) that the model was trained on"):
        build_dataset(cfg, "val", metadata=bird)
    other = DatasetMeta(keypoint_names=tuple(f"k{i}" for i in range(5)), flip_index=tuple(range(5)), category_id=1)
    with pytest.raises(ValueError, match="category 1 has 17 keypoints .* but the model predicts 5"):
        build_dataset(cfg, "val", metadata=other)


# --------------------------------------------------------------------------- flip pairs, colours, unlabelled (issue 20)


@pytest.mark.parametrize("names,pairs", [
    (["L_eye", "R_eye", "nose", "L_ear", "R_ear"], ((0, 1), (3, 4))),  # L_/R_ prefixes
    (["l_paw", "r_paw", "tail"], ((0, 1),)),
    (["eye_L", "eye_R", "paw_l", "paw_r", "neck"], ((0, 1), (2, 3))),  # _L/_R suffixes
    (["LeftEye", "RightEye", "Nose", "leftEar", "rightEar"], ((0, 1), (3, 4))),  # CamelCase
    (["LEye", "REye", "Head"], ((0, 1),)),
    (["FL", "FR", "HL", "HR", "T"], ((0, 1), (2, 3))),  # bare L/R suffixes (front/hind legs of an insect)
    (["LF", "RF", "LH", "RH"], ((0, 1), (2, 3))),  # bare prefixes
    (["lhip", "rhip", "lefteye", "righteye"], ((0, 1), (2, 3))),
    (["L1", "R1", "L2", "R2"], ((0, 1), (2, 3))),
    (["left_eye", "right_eye", "L_eye"], ((0, 1),)),  # words first; L_eye has no R_eye: unpaired
    (["L", "R", "lr", "rl"], ((0, 1),)),  # "lr" would pair with itself as "rr"/"ll": never
    (["tail", "tair", "head"], ((0, 1),)),  # rule 3 pairs whatever swaps exactly (documented; data.flip_pairs fixes)
    (["eye_l", "Eye_L", "eye_r"], ()),  # two names for one key: ambiguous, nothing paired
    (["a", "b", "left_only"], ()),
])
def test_flip_pair_conventions(names, pairs):
    assert infer_flip_pairs(names) == pairs


def test_inferred_pairs_are_logged_in_one_line(caplog):
    cat = {"id": 3, "name": "ant", "keypoints": ["head", "L_antenna", "R_antenna", "FL", "FR", "abdomen"]}
    with caplog.at_level(logging.WARNING, logger="keypoints.metadata"):
        meta = DatasetMeta.from_coco_category(cat, source="ants.json")
    assert meta.flip_pairs == ((1, 2), (3, 4))
    assert [r.getMessage() for r in caplog.records] == [
        "ants.json: flip pairs of category 'ant' inferred from the keypoint names: L_antenna/R_antenna, FL/FR; set "
        "data.flip_pairs to change them"]


def test_colours_follow_the_flip_pairs():
    from keypoints.metadata import CENTRE_COLOUR as C, LEFT_COLOUR as L, RIGHT_COLOUR as R

    assert DatasetMeta.coco_person().colours == tuple([C] + [L, R] * 8)
    meta = DatasetMeta(keypoint_names=("R_eye", "L_eye", "nose", "wing_a", "wing_b", "left_only"),
                       flip_index=(1, 0, 2, 4, 3, 5))
    # the side in the name wins over the order; pairs named without sides: lower index left; unpaired: centre
    assert meta.colours == (R, L, C, L, R, C)
    assert meta.limb_colour(0, 1) == C and meta.limb_colour(3, 3) == L


def test_category_sets_and_unlabelled_serialise():
    cat = dict(BIRD_CATEGORY, supercategory="animal")
    cats = [cat, dict(cat, id=17, name="parrot"), {"id": 18, "name": "rock"}]
    meta = DatasetMeta.from_coco_categories(cats, "all", flip_pairs=[[2, 3]]).with_unlabelled([4])
    assert meta.category_ids == (16, 17) and meta.category_names == ("bird", "parrot")
    assert meta.category_name == "animal" and meta.display_name == "animal (2 categories: bird, parrot)"
    assert meta.unlabelled == (4,) and "never labelled in training: tail" in meta.describe()
    assert "category ids 16, 17" in meta.describe()
    assert DatasetMeta.from_dict(json.loads(json.dumps(meta.to_dict()))) == meta
    assert [c["id"] for c in meta.to_coco_categories()] == [16, 17]
    old = {k: v for k, v in meta.to_dict().items() if k not in ("category_ids", "category_names", "unlabelled")}
    loaded = DatasetMeta.from_dict(old)  # stored before these fields existed
    assert loaded.category_ids == (16,) and loaded.unlabelled == () and loaded.category_names == ("animal",)
    assert meta.check_category(cats, "f.json") == (16, 17)
    with pytest.raises(ValueError, match="has no category among \\[16, 17\\]"):
        meta.check_category([{"id": 1, "name": "person"}], "f.json")
    with pytest.raises(ValueError, match="unlabelled keypoints \\[9\\] outside 0..4"):
        DatasetMeta.from_coco_category(BIRD_CATEGORY, flip_pairs=[]).with_unlabelled([9])
    with pytest.raises(ValueError, match="must be distinct and start with the primary"):
        DatasetMeta(keypoint_names=("a",), flip_index=(0,), category_id=1, category_ids=(2, 1))


def test_unlabelled_keypoints_are_found_and_not_drawn(tmp_path, caplog):
    """A set whose left eye is never labelled: with the flip augmentation the right eye's labels train it; with
    both eyes unlabelled (or no flips) they are recorded, warned about and left out of the drawing."""
    import cv2
    from keypoints.data import record_unlabelled, unlabelled_keypoints
    from keypoints.visualize import draw_pose

    data = json.loads((COCO_MINI / "annotations/person_keypoints_val2017.json").read_text())
    for a in data["annotations"]:
        a["keypoints"][3:6] = [0, 0, 0]  # left_eye (index 1)
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "val2017").symlink_to(COCO_MINI / "val2017")
    (root / "annotations/person_keypoints_val2017.json").write_text(json.dumps(data))
    cfg = load_config(ROOT / "configs/quickstart.yaml", [f"data.root={root}", "data.workers=0"])
    ds = build_dataset(cfg, "val")
    counts = ds.label_counts()
    assert counts.shape == (17,) and counts.dtype == np.int64 and counts[1] == 0 and counts[2] > 0
    assert counts[0] == sum(1 for a in data["annotations"] if a["keypoints"][2] > 0 and not a["iscrowd"])
    assert unlabelled_keypoints(counts) == (1,)
    assert unlabelled_keypoints(counts, constants.FLIP_INDEX) == ()  # flips bring the right eye's labels
    with caplog.at_level(logging.WARNING, logger="keypoints.data"):
        meta = record_unlabelled(load_config(ROOT / "configs/quickstart.yaml", [f"data.root={root}",
                                                                                "aug.flip_prob=0"]), ds)
    assert meta.unlabelled == (1,) and "1 of 17 keypoints have no label in the 40 training instances" in caplog.text
    assert "left_eye" in caplog.text
    kp = np.zeros((17, 3), np.float32)
    kp[:, 0], kp[:, 1], kp[:, 2] = np.arange(17) * 10 + 10, 20, 1.0
    kp[1, :2] = 100, 90  # left_eye alone at the bottom: only it and its edges draw there
    drawn = draw_pose(np.zeros((100, 200, 3), np.uint8), kp, metadata=meta)
    everything = draw_pose(np.zeros((100, 200, 3), np.uint8), kp, metadata=meta, draw_unlabelled=True)
    assert drawn[90, 100].sum() == 0 and everything[90, 100].sum() > 0 and not drawn[60:].any()
    assert (drawn[20, 10] == everything[20, 10]).all() and drawn[20, 10].sum() > 0  # the nose either way
    assert cv2.absdiff(drawn, everything).any()
