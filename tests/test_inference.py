"""The one test-time path (keypoints.inference): crops identical to the validation dataset's (bit for bit), the flip
test, decoding to image pixels, the backend contract, and one EXIF policy for dataset and demo images."""
import json
import shutil
import struct

import cv2
import numpy as np
import pytest
import torch

from keypoints.backends import Backend, ModelInfo
from keypoints.codec import HeatmapCodec
from keypoints.coco_files import clip_box
from keypoints.config import load_config
from keypoints.constants import FLIP_INDEX
from keypoints.data import build_dataset
from keypoints.geometry import affine_points, get_affine_transform
from keypoints.inference import TopDownInference, decode_to_image, flip_back, flip_images
from keypoints.media import open_source
from keypoints.predictor import PoseEstimator
from keypoints.utils.io import read_image
from conftest import COCO_MINI, COCO_MMPOSE4, ROOT

K = len(FLIP_INDEX)


class FakeBackend(Backend):
    """Heatmaps that are a fixed function of the crop (the mean of each column, per keypoint): a backend without a
    network, enough to check what the pipeline does around it."""

    name = "fake"

    def __init__(self, input_size=(96, 128), heatmap_size=(24, 32)):
        self.info = ModelInfo(input_size=input_size, heatmap_size=heatmap_size, flip_index=FLIP_INDEX)
        self.calls = []

    def forward(self, crops):
        self.calls.append(crops.shape[0])
        w, h = self.info.heatmap_size
        x = torch.nn.functional.interpolate(crops.float(), size=(h, w), mode="area").mean(1, keepdim=True) / 255
        return x * torch.arange(1, K + 1, dtype=torch.float32).view(1, K, 1, 1)


# ----------------------------------------------------------------------------- one crop


def _estimator(input_size=(192, 256)):
    cfg = load_config(None, [f"data.input_size={list(input_size)}",
                             f"data.heatmap_size={[input_size[0] // 4, input_size[1] // 4]}"])
    return PoseEstimator.from_config(FakeBackend(input_size, (input_size[0] // 4, input_size[1] // 4)), cfg), cfg


@pytest.mark.parametrize("boxes", ["gt", "detections"])
def test_validation_dataset_and_estimator_crop_identically(boxes):
    """Same boxes -> bitwise the same crops from the validation dataset and from the Python API."""
    estimator, cfg = _estimator()
    root = COCO_MINI if boxes == "gt" else COCO_MMPOSE4
    det = "gt" if boxes == "gt" else str(COCO_MMPOSE4 / "person_detection_results" / "detections_person.json")
    cfg = load_config(None, [f"data.root={root}", "data.workers=0"])
    dataset = build_dataset(cfg, "val", boxes=det)
    dets = json.loads(open(det).read()) if boxes != "gt" else None
    for i in range(0, len(dataset), max(1, len(dataset) // 8)):
        item, inst = dataset[i], dataset.instance(i)
        if boxes == "gt":
            img = dataset.coco.imgs[inst["image_id"]]
            box = clip_box(dataset.coco.anns[int(dataset.ann_ids[i])]["bbox"], img["width"], img["height"])
        else:
            box = dets[i]["bbox"]  # no threshold: the dataset keeps every person box, in file order
        crops, center, scale = estimator.inference.crop(read_image(inst["path"]), np.array([box]))
        assert torch.equal(crops[0], item["image"]), f"instance {i}"
        np.testing.assert_array_equal(center[0], item["center"].numpy())
        np.testing.assert_array_equal(scale[0], item["scale"].numpy())


def _with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """The JPEG with an EXIF APP1 segment whose Orientation tag is ``orientation`` (6: rotate 90 degrees clockwise)."""
    tiff = b"MM\x00\x2a\x00\x00\x00\x08" + struct.pack(">H", 1) + struct.pack(">HHI", 0x0112, 3, 1)
    tiff += struct.pack(">HH", orientation, 0) + struct.pack(">I", 0)
    app1 = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:]


def test_exif_rotated_jpeg_read_identically_by_dataset_and_demo(tmp_path, untrained_checkpoint):
    """COCO coordinates refer to the stored pixels: the dataset and the demo with boxes from a COCO file both ignore
    the EXIF orientation; only the demo's --exif (phone photos, no boxes) applies it."""
    root = tmp_path / "coco"
    shutil.copytree(COCO_MINI / "annotations", root / "annotations")
    data = json.loads((root / "annotations" / "person_keypoints_val2017.json").read_text())
    image = data["images"][0]
    (root / "val2017").mkdir()
    target = root / "val2017" / image["file_name"]
    target.write_bytes(_with_exif_orientation((COCO_MINI / "val2017" / image["file_name"]).read_bytes(), 6))
    stored = cv2.imread(str(COCO_MINI / "val2017" / image["file_name"]))
    assert cv2.imread(str(target)).shape == stored.shape[1::-1] + (3,)  # OpenCV's default applies the tag
    data["images"] = [image]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] == image["id"]]
    (root / "annotations" / "person_keypoints_val2017.json").write_text(json.dumps(data))
    dataset = build_dataset(load_config(None, [f"data.root={root}", "data.workers=0"]), "val")
    from_dataset = dataset.read_image(dataset.instance(0)["path"])
    from_demo = next(iter(open_source(target)))  # how tools/demo.py reads images (no --exif)
    np.testing.assert_array_equal(from_dataset, stored)
    np.testing.assert_array_equal(from_demo.image, stored)
    assert next(iter(open_source(target, exif=True))).image.shape == stored.shape[1::-1] + (3,)
    from conftest import load_tool
    demo = load_tool("demo")
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps([{"image_id": image["id"], "category_id": 1, "bbox": [10, 10, 50, 90], "score": 1}]))
    with pytest.raises(ValueError, match="--exif cannot be used with --boxes-from"):
        demo.main(demo.get_args_parser().parse_args(["--checkpoint", str(untrained_checkpoint), "--input",
                                                     str(target), "--boxes-from", str(dets), "--exif"]))


# ----------------------------------------------------------------------------- the pipeline around a backend


def test_flip_test_averages_flipped_back_maps_in_one_forward():
    backend = FakeBackend()
    cfg = load_config(ROOT / "configs" / "quickstart.yaml")
    crops = torch.randint(0, 256, (3, 3, 128, 96), dtype=torch.uint8)
    plain_only = TopDownInference.from_config(backend, cfg, flip=False)
    flipped = TopDownInference.from_config(backend, cfg, flip=True)
    p0, h0 = plain_only.heatmaps(crops)
    p1, h1 = flipped.heatmaps(crops)
    assert backend.calls == [3, 6]  # the flipped copies share the forward pass
    assert torch.equal(p0, h0) and torch.equal(p0, p1)
    expected = 0.5 * (p0 + flip_back(backend(flip_images(crops)), FLIP_INDEX, shift=cfg.test.shift_heatmap))
    assert torch.allclose(h1, expected)


def test_backend_contract_errors():
    backend = FakeBackend()
    with pytest.raises(ValueError, match="128x96 crops"):
        backend(torch.zeros(1, 3, 64, 48, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"RGB crops \(N, 3, H, W\)"):
        backend(torch.zeros(3, 128, 96, dtype=torch.uint8))
    with pytest.raises(ValueError, match="refinement"):
        TopDownInference(backend, refine="magic")


# ----------------------------------------------------------------------------- flip test


def test_flip_images_mirrors_x():
    img = torch.zeros(1, 3, 8, 10)
    img[0, :, 5, 2] = 1.0
    out = flip_images(img)
    assert out[0, 0].nonzero().tolist() == [[5, 10 - 1 - 2]]


def test_flip_back_swaps_channels_and_mirrors():
    hm = torch.rand(2, K, 16, 12)
    out = flip_back(hm, FLIP_INDEX, shift=False)
    for k in range(K):
        assert torch.equal(out[:, k], hm[:, FLIP_INDEX[k]].flip(-1))
    assert torch.equal(flip_back(out, FLIP_INDEX, shift=False), hm)  # an involution without the shift


def test_flip_back_shift_is_exactly_one_column():
    hm = torch.rand(2, K, 16, 12)
    plain = flip_back(hm, FLIP_INDEX, shift=False)
    shifted = flip_back(hm, FLIP_INDEX, shift=True)
    assert torch.equal(shifted[..., 1:], plain[..., :-1])
    assert torch.equal(shifted[..., 0], plain[..., 0])  # HRNet leaves column 0 as it was
    # HRNet's in-place formulation gives the same tensor.
    ref = plain.clone()
    ref[:, :, :, 1:] = ref.clone()[:, :, :, 0:-1]
    assert torch.equal(shifted, ref)


def test_flip_back_puts_blob_at_mirrored_place():
    """A crop with a Gaussian at x, flipped (x' = W - 1 - x, left/right names swapped) and encoded, comes back to
    the original cell after flip_back with the shift (one column left of it without)."""
    codec = HeatmapCodec(input_size=(192, 256), heatmap_size=(48, 64), sigma=2.0)
    w_in = codec.input_size[0]
    rng = np.random.default_rng(0)
    cells = np.stack([rng.integers(4, 44, K), rng.integers(4, 60, K)], axis=1)
    kpts = cells * 4.0  # on heatmap cells, in input pixels
    vis = np.ones(K)
    flipped = kpts.copy()
    flipped[:, 0] = w_in - 1 - flipped[:, 0]
    flipped = flipped[list(FLIP_INDEX)]  # the flipped crop's left_eye is the original right_eye, ...
    hm_flipped, _ = codec.encode(flipped, vis)
    hm_flipped = torch.from_numpy(hm_flipped)[None]
    for shift, expected in ((True, cells), (False, cells - [1, 0])):
        back = flip_back(hm_flipped, FLIP_INDEX, shift=shift)
        coords, _ = codec.decode_cells(back, refine="none")
        assert coords[0].numpy().tolist() == expected.astype(float).tolist()


def test_flip_back_rejects_wrong_flip_index():
    with pytest.raises(ValueError, match="flip_index"):
        flip_back(torch.zeros(1, 5, 4, 4), FLIP_INDEX)


# ----------------------------------------------------------------------------- decoding to image pixels


def _random_crops(rng, n):
    center = rng.uniform(100, 500, size=(n, 2)).astype(np.float32)
    width = rng.uniform(60, 300, size=n)
    scale = np.stack([width, width / 0.75], axis=1).astype(np.float32)
    return center, scale


@pytest.mark.parametrize("refine", ["none", "standard", "dark"])
def test_decode_to_image_round_trip_on_cells(refine):
    """Keypoints placed on heatmap cells of the crop come back to their image position within one input pixel.

    Cells stay 3 sigma from the border: there DARK's reflect-padded blur pulls the peak outwards (by up to 1.3 cells at
    cell 2), as in mmpose."""
    codec = HeatmapCodec(input_size=(192, 256), heatmap_size=(48, 64), sigma=2.0)
    rng = np.random.default_rng(1)
    center, scale = _random_crops(rng, 4)
    heatmaps, truth = [], []
    for c, s in zip(center, scale):
        cells = np.stack([rng.integers(6, 42, K), rng.integers(6, 58, K)], axis=1)
        crop_xy = cells * np.asarray(codec.stride)
        inverse = get_affine_transform(c, s, 0.0, codec.input_size, inverse=True)
        image_xy = affine_points(crop_xy, inverse)
        # Forward through the dataset's warp, then the codec, as the training pipeline does.
        forward = get_affine_transform(c, s, 0.0, codec.input_size)
        hm, weight = codec.encode(affine_points(image_xy, forward), np.ones(K))
        assert weight.all()
        heatmaps.append(hm)
        truth.append(image_xy)
    out = decode_to_image(torch.from_numpy(np.stack(heatmaps)), codec, torch.from_numpy(center),
                          torch.from_numpy(scale), refine=refine)
    assert out.shape == (4, K, 3)
    px = torch.from_numpy(scale / np.asarray(codec.input_size, dtype=np.float32))[:, None, :]  # image px per input px
    err = (out[..., :2] - torch.from_numpy(np.stack(truth))).abs()
    assert (err <= 1.0 * px).all(), err.max()
    assert torch.allclose(out[..., 2], torch.ones(4, K))


@pytest.mark.parametrize("refine, tol_cells", [("standard", 0.25), ("dark", 0.1)])
def test_decode_to_image_sub_pixel(refine, tol_cells):
    """Random (off-grid) keypoints drawn as exact Gaussians: standard is within 0.25 cell (one input pixel at stride
    4), DARK within 0.1 cell, after back-projection."""
    codec = HeatmapCodec(input_size=(192, 256), heatmap_size=(48, 64), sigma=2.0)
    rng = np.random.default_rng(2)
    center, scale = _random_crops(rng, 3)
    mu = np.stack([rng.uniform(6, 41, (3, K)), rng.uniform(6, 57, (3, K))], axis=-1)  # cells
    ys, xs = np.mgrid[0:64, 0:48]
    hm = np.exp(-((xs - mu[..., 0, None, None]) ** 2 + (ys - mu[..., 1, None, None]) ** 2) / (2 * 2.0 ** 2))
    out = decode_to_image(torch.from_numpy(hm).float(), codec, center, scale, refine=refine)
    truth = center[:, None] + (mu * 4.0 - np.asarray(codec.input_size) / 2) * scale[:, None] / codec.input_size
    cell_in_image = 4.0 * scale[:, None] / np.asarray(codec.input_size)
    err = np.abs(out[..., :2].numpy() - truth)
    assert (err <= tol_cells * cell_in_image + 1e-3).all(), (err / cell_in_image).max()


def test_decode_to_image_checks_batch():
    codec = HeatmapCodec()
    with pytest.raises(ValueError, match="center"):
        decode_to_image(torch.zeros(2, K, 64, 48), codec, np.zeros((3, 2)), np.ones((3, 2)))
