"""Heatmap losses: target-weighted MSE and its online-hard-keypoint-mining (OHKM) variant."""
from __future__ import annotations

import torch
from torch import nn


class KeypointMSELoss(nn.Module):
    """Mean squared error between predicted and target heatmaps, weighted per joint.

    ``pred``, ``target``: ``(B, K, H, W)`` in any float dtype (the loss is computed in float32);
    ``target_weight``: ``(B, K)`` (or ``(B, K, 1)``), 1 for supervised joints, 0 for the others.

    - Plain: ``mean over b, k, pixels of w[b, k] * (pred - target)^2`` (mmpose 1.x ``KeypointMSELoss``).
      Joints with weight 0 still count in the denominator, as in HRNet and mmpose.
    - OHKM (``ohkm=True``): per joint the pixel mean ``l[b, k] = mean_pixels(w[b, k] * (pred - target)^2)``, then per
      sample the mean of the ``ohkm_topk`` largest ``l[b, k]``, then the mean over the batch (HRNet's
      ``JointsOHKMMSELoss``).

    HRNet's 0.5 factor is NOT applied: the loss is twice HRNet's for the same heatmaps (as in mmpose 1.x); Adam's
    updates do not depend on that scale, SGD's do.
    ``use_target_weight=False`` ignores the weights (every joint supervised).
    """

    def __init__(self, use_target_weight: bool = True, ohkm: bool = False, ohkm_topk: int = 8) -> None:
        super().__init__()
        if ohkm_topk <= 0:
            raise ValueError(f"ohkm_topk must be positive, got {ohkm_topk}")
        self.use_target_weight, self.ohkm, self.ohkm_topk = use_target_weight, ohkm, ohkm_topk

    def extra_repr(self) -> str:
        return f"use_target_weight={self.use_target_weight}, ohkm={self.ohkm}, ohkm_topk={self.ohkm_topk}"

    def forward(self, pred: torch.Tensor, target: torch.Tensor,
                target_weight: torch.Tensor | None = None) -> torch.Tensor:
        if pred.shape != target.shape or pred.dim() != 4:
            raise ValueError(f"loss expects pred and target of the same shape (B, K, H, W), got {tuple(pred.shape)} "
                             f"and {tuple(target.shape)}")
        err = (pred.float() - target.float()).pow(2).flatten(2).mean(dim=2)  # (B, K) per-joint pixel mean
        if self.use_target_weight:
            if target_weight is None:
                raise ValueError("use_target_weight=True needs target_weight (B, K)")
            err = err * target_weight.float().reshape(err.shape)
        if not self.ohkm:
            return err.mean()
        k = min(self.ohkm_topk, err.shape[1])
        return err.topk(k, dim=1).values.mean()
