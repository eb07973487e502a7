"""Model builders. ``build_model`` is the only reader of the model config."""
from __future__ import annotations

import dataclasses
import logging

from torch import nn

from ..config import Config, ModelConfig
from ..metadata import DatasetMeta
from ..modelfile import Checkpoint, load_weights, read_checkpoint
from .dyrelu import DyReLU
from .fused import fuse_for_inference
from .heads import DeconvHead, LightHead
from .layers import ACTIVATIONS, get_act_layer
from .mobilenetv3 import BACKBONES, MobileNetV3, mobilenet_v3_large, mobilenet_v3_small
from .pose_model import TopDownPoseModel
from .pretrained import load_pretrained_backbone

HEADS = ("deconv", "light")
logger = logging.getLogger(__name__)


def _check_choice(key: str, value: str, choices) -> None:
    if value not in choices:
        raise ValueError(f"{key}={value!r} is not valid; choose one of {', '.join(choices)}")


def build_model(cfg: ModelConfig, num_keypoints: int | None = None) -> TopDownPoseModel:
    """MobileNetV3 backbone + heatmap head as described by ``cfg`` (a ``ModelConfig``), with ``num_keypoints``
    heatmaps (default ``cfg.num_keypoints``; tools/train.py sets that from the dataset's metadata)."""
    num_keypoints = cfg.num_keypoints if num_keypoints is None else int(num_keypoints)
    if num_keypoints < 1:
        raise ValueError(f"num_keypoints={num_keypoints} is not valid; the model needs at least one heatmap")
    _check_choice("model.backbone", cfg.backbone, tuple(BACKBONES))
    _check_choice("model.act", cfg.act, ACTIVATIONS)
    _check_choice("model.head_act", cfg.head_act, ACTIVATIONS)
    _check_choice("model.head", cfg.head, HEADS)
    act_kwargs = dataclasses.asdict(cfg.dyrelu)
    backbone = BACKBONES[cfg.backbone](width_mult=cfg.width_mult, se=cfg.se, act=cfg.act, act_kwargs=act_kwargs)
    if cfg.pretrained != "none":
        report = load_pretrained_backbone(backbone, cfg.pretrained, cfg.backbone)
        logger.info("pretrained backbone (%s): %s", cfg.pretrained, report.summary())
    head_act = get_act_layer(cfg.head_act, original="relu", **act_kwargs)
    if cfg.head == "deconv":
        head = DeconvHead(backbone.out_channels[-1], num_keypoints, head_act, cfg.deconv_channels)
    else:
        head = LightHead(backbone.out_channels, num_keypoints, head_act, cfg.light_channels, cfg.light_expansion)
    model = TopDownPoseModel(backbone, head)
    if cfg.bn_momentum > 0:
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = cfg.bn_momentum
    return model


def model_from_checkpoint(checkpoint: Checkpoint, cfg: Config | None = None) -> tuple[TopDownPoseModel, Config]:
    """The eval-mode model (CPU) of a :class:`~keypoints.modelfile.Checkpoint` and the config it was built with
    (``cfg`` replaces the stored one; the weights must still fit, strictly). The heatmap count is the metadata's."""
    cfg = cfg if cfg is not None else checkpoint.cfg
    model = build_model(cfg.model, checkpoint.metadata.num_keypoints)
    load_weights(model, checkpoint.weights, checkpoint.source or "checkpoint",
                 hint="use the config the checkpoint was trained with")
    return model.eval(), cfg


def load_pose_checkpoint(path: str, cfg: Config | None = None) -> tuple[TopDownPoseModel, Config, DatasetMeta]:
    """Model, config and dataset metadata of the training checkpoint at ``path`` (see :func:`model_from_checkpoint`)."""
    checkpoint = read_checkpoint(path)
    model, cfg = model_from_checkpoint(checkpoint, cfg)
    return model, cfg, checkpoint.metadata


def load_pose_model(path: str, cfg: Config | None = None) -> tuple[TopDownPoseModel, Config]:
    """Model and config of the training checkpoint at ``path`` (see :func:`model_from_checkpoint`)."""
    model, cfg, _ = load_pose_checkpoint(path, cfg)
    return model, cfg


__all__ = ["build_model", "load_pose_model", "load_pose_checkpoint", "model_from_checkpoint", "DyReLU", "MobileNetV3",
           "mobilenet_v3_large", "mobilenet_v3_small", "TopDownPoseModel",
           "DeconvHead", "LightHead", "get_act_layer", "ACTIVATIONS", "HEADS", "fuse_for_inference"]
