"""The backend interface: what every runtime of the pose network offers the test-time path.

A backend is called like the network itself: RGB crops ``(N, 3, H, W)`` with values in [0, 255] (uint8, as the
crop gives them; float is accepted) in, float32 heatmaps ``(N, K, h, w)`` out, on :attr:`Backend.device`. Its
:attr:`Backend.info` (a :class:`ModelInfo`) says what the test-time path needs to crop, flip and decode for it:
input and heatmap sizes, the flip index, the normalisation the network applies, the resolved training config and
the dataset metadata (keypoint names, skeleton, OKS sigmas, category: :class:`keypoints.metadata.DatasetMeta`).
Every backend file carries that information, so a ``.pth`` checkpoint and an exported ``.onnx`` file are scored by
exactly the same crops, decoding, rescoring and NMS (:mod:`keypoints.inference`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

import torch

from ..config import Config, config_from_dict
from ..constants import IMAGENET_MEAN, IMAGENET_STD
from ..metadata import DatasetMeta


@dataclass(frozen=True)
class ModelInfo:
    """What the test-time path needs to know about a pose network, wherever it runs.

    ``input_size`` / ``heatmap_size`` are ``(width, height)``; ``flip_index[k]`` is the keypoint that ``k`` becomes
    under a horizontal flip; ``mean`` / ``std`` are the per-channel RGB normalisation the network applies to its
    [0, 255] input (inside the network: callers pass raw pixels); ``config`` is the resolved training config as a
    plain dict (:func:`keypoints.config.config_to_dict`); ``metadata`` the dataset's keypoints (default: the COCO
    person for 17 keypoints, else numbered keypoints with the given flip index). ``flip_index`` must be the
    metadata's.
    """

    input_size: tuple[int, int]
    heatmap_size: tuple[int, int]
    flip_index: tuple[int, ...]
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    config: dict | None = None
    metadata: DatasetMeta | None = None

    def __post_init__(self) -> None:
        flip = tuple(int(i) for i in self.flip_index)
        meta = self.metadata if self.metadata is not None else DatasetMeta.generic(len(flip), flip)
        if meta.flip_index != flip:
            raise ValueError(f"ModelInfo: flip_index {list(flip)} is not the metadata's {list(meta.flip_index)}")
        object.__setattr__(self, "flip_index", flip)
        object.__setattr__(self, "metadata", meta)

    @property
    def num_keypoints(self) -> int:
        return len(self.flip_index)

    @classmethod
    def from_config(cls, cfg: Config, config: dict | None = None, metadata: DatasetMeta | None = None
                    ) -> "ModelInfo":
        """Info of a model trained with ``cfg`` (``config``: its plain-dict form, kept as given when passed) on the
        dataset of ``metadata`` (default: the COCO person for ``cfg.model.num_keypoints`` 17)."""
        from ..config import config_to_dict

        meta = metadata if metadata is not None else DatasetMeta.generic(cfg.model.num_keypoints)
        return cls(input_size=tuple(cfg.data.input_size), heatmap_size=tuple(cfg.data.heatmap_size),
                   flip_index=meta.flip_index, config=config if config is not None else config_to_dict(cfg),
                   metadata=meta)

    def to_metadata(self) -> dict[str, str]:
        """String key/value pairs for a model file's metadata (ONNX ``metadata_props`` and the like)."""
        return {"input_size": json.dumps(list(self.input_size)), "heatmap_size": json.dumps(list(self.heatmap_size)),
                "flip_index": json.dumps(list(self.flip_index)), "normalisation": json.dumps(
                    {"mean": list(self.mean), "std": list(self.std), "input": "RGB 0-255, normalised inside"}),
                CONFIG_KEY: json.dumps(self.config or {}), METADATA_KEY: json.dumps(self.metadata.to_dict())}

    @classmethod
    def from_metadata(cls, meta: dict[str, str], source: str) -> "ModelInfo":
        """Inverse of :meth:`to_metadata`; a one-line ``ValueError`` naming ``source`` when keys are missing. Files
        written before the dataset metadata was stored hold COCO person models."""
        missing = [k for k in ("input_size", "heatmap_size", "flip_index", CONFIG_KEY) if k not in meta]
        if missing:
            raise ValueError(f"{source} lacks the model metadata {', '.join(missing)} (not written by tools/export.py "
                             f"of this version); export it again from its checkpoint")
        try:
            norm = json.loads(meta.get("normalisation", "{}"))
            dataset = DatasetMeta.from_dict(json.loads(meta[METADATA_KEY]), source) if METADATA_KEY in meta else None
            return cls(input_size=tuple(json.loads(meta["input_size"])),
                       heatmap_size=tuple(json.loads(meta["heatmap_size"])),
                       flip_index=tuple(json.loads(meta["flip_index"])),
                       mean=tuple(norm.get("mean", IMAGENET_MEAN)), std=tuple(norm.get("std", IMAGENET_STD)),
                       config=json.loads(meta[CONFIG_KEY]), metadata=dataset)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{source} has unreadable model metadata ({e}); export it again") from None


CONFIG_KEY = "keypoints_config"
METADATA_KEY = "keypoints_dataset"


class Backend:
    """Base class of the runtimes: ``backend(crops) -> heatmaps`` (see the module docstring).

    Subclasses set ``name`` (torch | onnxruntime | ...), ``device`` and ``info`` and implement :meth:`forward`.
    """

    name: str = "backend"
    device: torch.device = torch.device("cpu")
    info: ModelInfo

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def __call__(self, crops: torch.Tensor) -> torch.Tensor:
        if crops.dim() != 4 or crops.shape[1] != 3:
            raise ValueError(f"{self.name} backend expects RGB crops (N, 3, H, W), got {tuple(crops.shape)}")
        width, height = self.info.input_size
        if tuple(crops.shape[2:]) != (height, width):
            raise ValueError(f"{self.name} backend expects {height}x{width} crops (the model's input size), got "
                             f"{tuple(crops.shape[2:])}")
        return self.forward(crops)

    @property
    def config(self) -> Config:
        """The resolved training config the model was built with."""
        return config_from_dict(self.info.config or {})

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "device": str(self.device), "input_size": list(self.info.input_size)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={self.device}, input_size={self.info.input_size})"


def run_fixed_batch(images: np.ndarray, batch: int | None, run: Callable[[np.ndarray], np.ndarray],
                    name: str) -> np.ndarray:
    """``run`` over ``images`` ``(B, ...)`` in chunks of a graph's fixed ``batch`` (None: a dynamic batch, one call);
    a one-line ``ValueError`` when B is not a multiple of it (exported graphs cannot pad)."""
    if batch is None or images.shape[0] == batch:
        return run(images)
    if images.shape[0] % batch:
        raise ValueError(f"{name} was exported with a fixed batch of {batch}; pass a multiple of it or export with "
                         f"--batch dynamic")
    return np.concatenate([run(images[i:i + batch]) for i in range(0, images.shape[0], batch)])
