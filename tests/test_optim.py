import pytest
import torch

from keypoints.config import TrainConfig
from keypoints.optim import build_optimizer, build_scheduler, lr_factor, scaled_lr


def test_reference_recipe_numbers():
    cfg = TrainConfig()
    assert scaled_lr(cfg, 512) == 5e-4 and scaled_lr(cfg, 64) == pytest.approx(6.25e-5)
    ipe = 100
    assert lr_factor(0, cfg, ipe) == pytest.approx(0.001)
    assert lr_factor(250, cfg, ipe) == pytest.approx(0.001 * 0.5 + 0.5)
    assert lr_factor(500, cfg, ipe) == 1.0
    assert lr_factor(169 * ipe + 99, cfg, ipe) == 1.0
    assert lr_factor(170 * ipe, cfg, ipe) == pytest.approx(0.1)
    assert lr_factor(200 * ipe, cfg, ipe) == pytest.approx(0.01)


def test_cosine_schedule_ends_at_min_ratio():
    cfg = TrainConfig(schedule="cosine", epochs=10, warmup_iters=10, min_lr_ratio=0.05)
    assert lr_factor(10, cfg, 10) == pytest.approx(1.0)
    assert lr_factor(55, cfg, 10) == pytest.approx(0.05 + 0.95 * 0.5)
    assert lr_factor(100, cfg, 10) == pytest.approx(0.05)


def test_scheduler_steps_per_iteration():
    model = torch.nn.Linear(2, 2)
    cfg = TrainConfig(warmup_iters=4, warmup_factor=0.0, milestones=(1,), lr=1.0, base_batch_size=1)
    opt = build_optimizer(model, cfg, total_batch=1)
    sched = build_scheduler(opt, cfg, iters_per_epoch=8)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 0.1, 0.1])


def test_unknown_names():
    with pytest.raises(ValueError, match="train.optimizer='lion' is not valid; choose one of adam, adamw, sgd"):
        build_optimizer(torch.nn.Linear(1, 1), TrainConfig(optimizer="lion"), 1)
    with pytest.raises(ValueError, match="train.schedule='poly' is not valid"):
        lr_factor(0, TrainConfig(schedule="poly"), 1)
