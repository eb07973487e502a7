"""Overfit proof on real COCO: the quickstart model (at the standard 256x192 input) trained on the 40 coco_mini val
instances reaches AP >= 0.9 on the same instances with ground-truth boxes. About 4 minutes on 2 CPU cores.

    .venv/bin/python -m pytest -m slow tests/test_overfit.py -s
"""
import time

import pytest

from conftest import COCO_MINI, ROOT, load_tool

train = load_tool("train")


@pytest.mark.slow
def test_overfit_coco_mini_val(tmp_path):
    opts = ["data.train_ann=annotations/person_keypoints_val2017.json", "data.train_images=val2017",
            "data.input_size=[192,256]", "data.heatmap_size=[48,64]", "data.sigma=2.0", "data.batch_size=8",
            "data.workers=0", "aug.flip_prob=0", "aug.half_body_prob=0", "aug.rotation_prob=0",
            "aug.scale_range=[1.0,1.0]", "aug.photometric=false", "train.lr=0.002", "train.base_batch_size=8",
            "train.warmup_iters=20", "train.milestones=[1000]", "train.val_interval=100", "train.log_interval=5",
            "test.flip=false"]
    argv = ["--config", str(ROOT / "configs/quickstart.yaml"), "--output-dir", str(tmp_path), "--device", "cpu",
            "--no-progress", "--epochs", "100", "--data-root", str(COCO_MINI), "--opts", *opts]
    start = time.perf_counter()
    metrics = train.main(train.get_args_parser().parse_args(argv))
    print(f"overfit: AP {metrics['AP']:.4f} AR {metrics['AR']:.4f} after 100 epochs (500 iterations) in "
          f"{time.perf_counter() - start:.0f} s")
    assert metrics["num_instances"] == 40
    assert metrics["AP"] >= 0.9, metrics
