"""KeypointMSELoss: hand-computed values, target weights, OHKM, dtypes, HRNet's 0.5 factor."""
import pytest
import torch

from keypoints.losses import KeypointMSELoss


def _case():
    pred = torch.zeros(2, 3, 2, 2)
    target = torch.zeros(2, 3, 2, 2)
    pred[0, 0] = 1.0  # joint error 1 per pixel -> pixel mean 1
    pred[0, 1, 0, 0] = 2.0  # one pixel error 4 -> pixel mean 1
    target[0, 2] = 0.5  # error 0.25 per pixel -> 0.25
    pred[1, 0, 1, 1] = -2.0  # 4 / 4 -> 1
    pred[1, 1] = 3.0  # 9
    pred[1, 2, 0, 1] = 1.0  # 1 / 4 -> 0.25
    weight = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    per_joint = torch.tensor([[1.0, 1.0, 0.25], [1.0, 9.0, 0.25]])
    return pred, target, weight, per_joint


def test_weighted_mse_hand_computed():
    pred, target, weight, per_joint = _case()
    loss = KeypointMSELoss()(pred, target, weight)
    expected = (1.0 + 0.0 + 0.25 + 1.0 + 9.0 + 0.0) / 6  # mean over batch and joints of the weighted pixel means
    assert loss.item() == pytest.approx(expected)
    assert loss.item() == pytest.approx((per_joint * weight).mean().item())


def test_unweighted_mse_is_plain_mean():
    pred, target, weight, per_joint = _case()
    loss = KeypointMSELoss(use_target_weight=False)(pred, target, weight)
    assert loss.item() == pytest.approx(per_joint.mean().item())
    assert loss.item() == pytest.approx(torch.nn.functional.mse_loss(pred, target).item())


def test_ohkm_top_k_per_sample():
    pred, target, weight, per_joint = _case()
    loss = KeypointMSELoss(ohkm=True, ohkm_topk=2)(pred, target, weight)
    # weighted per joint: sample 0 -> [1, 0, 0.25], top-2 mean 0.625; sample 1 -> [1, 9, 0], top-2 mean 5
    assert loss.item() == pytest.approx((0.625 + 5.0) / 2)
    # topk >= K keeps every joint: same as the plain loss
    full = KeypointMSELoss(ohkm=True, ohkm_topk=8)(pred, target, weight)
    assert full.item() == pytest.approx(KeypointMSELoss()(pred, target, weight).item())


def test_no_half_factor_twice_hrnet():
    """HRNet's JointsMSELoss = 0.5 * mean_k mean_pixels((w p - w t)^2) averaged over batch; ours is twice that."""
    torch.manual_seed(0)
    pred, target = torch.rand(4, 17, 8, 6), torch.rand(4, 17, 8, 6)
    weight = (torch.rand(4, 17) > 0.3).float()
    b, k = pred.shape[:2]
    p, t = pred.reshape(b, k, -1).split(1, 1), target.reshape(b, k, -1).split(1, 1)
    hrnet = sum(0.5 * torch.nn.functional.mse_loss(p[j].squeeze(1) * weight[:, j:j + 1],
                                                   t[j].squeeze(1) * weight[:, j:j + 1]) for j in range(k)) / k
    assert KeypointMSELoss()(pred, target, weight).item() == pytest.approx(2 * hrnet.item(), rel=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_any_dtype_computed_in_float32(dtype):
    torch.manual_seed(0)
    pred, target = torch.rand(2, 17, 8, 6), torch.rand(2, 17, 8, 6)
    weight = torch.ones(2, 17, 1)  # (B, K, 1) as some pipelines ship it
    ref = KeypointMSELoss()(pred.to(dtype).float(), target.to(dtype).float(), weight)
    loss = KeypointMSELoss()(pred.to(dtype), target.to(dtype), weight.to(dtype))
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)


def test_gradient_and_errors():
    pred = torch.rand(2, 3, 4, 4, requires_grad=True)
    loss = KeypointMSELoss(ohkm=True, ohkm_topk=1)(pred, torch.zeros(2, 3, 4, 4), torch.ones(2, 3))
    loss.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="same shape"):
        KeypointMSELoss()(torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 4), torch.ones(1, 2))
    with pytest.raises(ValueError, match="target_weight"):
        KeypointMSELoss()(torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 3))
    with pytest.raises(ValueError, match="ohkm_topk"):
        KeypointMSELoss(ohkm=True, ohkm_topk=0)
