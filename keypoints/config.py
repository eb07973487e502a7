"""Typed configuration schema, YAML loading, ``a.b=value`` overrides and dumping.

The dataclasses below are the single source of defaults. A YAML file in
``configs/`` holds only the fields it changes (optionally on top of another
file named by ``_base_``: a path relative to the YAML file, else to the
project's ``configs/`` folder, else the one file of that name below
``configs/``, so a config copied anywhere still loads). Unknown keys and
values of the wrong type fail at once with a ``ValueError`` naming the valid
keys. Only the builders (``build_model``, ``build_dataset``, ...) read a
``Config``; every module below them takes explicit keyword arguments.

    cfg = load_config("configs/coco/mobilenetv3_large_dyrelu_c_256x192.yaml",
                      overrides=["train.lr=1e-3", "data.batch_size=32"])
    save_config(cfg, "outputs/run/config.yaml")
    assert load_config("outputs/run/config.yaml") == cfg
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml


@dataclass
class DyReLUConfig:
    reduction: int = 4  # hyper-function squeeze ratio R: hidden width C/R, a multiple of 4, at least 4
    k: int = 2  # number of linear pieces K
    lambda_a: float = 1.0  # scale of the slope residuals
    lambda_b: float = 0.5  # scale of the intercept residuals
    init_a: tuple[float, ...] = (1.0, 0.0)  # initial slopes alpha^k (ReLU at zero residual)
    init_b: tuple[float, ...] = (0.0, 0.0)  # initial intercepts beta^k
    tau: float = 10.0  # softmax temperature of the spatial attention (variant C)
    gamma: float = 1.0 / 3.0  # spatial attention scale as a fraction of H*W (1/3 -> gamma = HW/3)
    spatial_bn: bool = False  # BatchNorm on the spatial logits (the authors' code; off in the paper's equations)
    impl: str = "auto"  # elementwise kernel: auto | reference | autograd | triton (see keypoints/models/dyrelu.py)


@dataclass
class ModelConfig:
    backbone: str = "mobilenet_v3_large"  # mobilenet_v3_large | mobilenet_v3_small
    width_mult: float = 1.0  # backbone channel multiplier (channels made divisible by 8)
    se: bool = False  # keep the squeeze-and-excitation modules of the original network
    act: str = "dyrelu_c"  # backbone activation: relu | hardswish | dyrelu_a | dyrelu_b | dyrelu_c | original
    head: str = "deconv"  # deconv (SimpleBaseline) | light (bilinear upsampling + inverted residuals + skips)
    head_act: str = "dyrelu_c"  # head activation, same choices as `act` ("original" means ReLU)
    deconv_channels: tuple[int, ...] = (256, 256, 256)  # one ConvTranspose2d(k4, s2) layer per entry
    light_channels: tuple[int, ...] = (128, 64, 32)  # light head widths at strides 16, 8, 4
    light_expansion: int = 4  # expansion ratio of the light head's inverted-residual blocks
    num_keypoints: int = 17  # heatmap channels; tools/train.py sets it from the dataset's keypoints (it is an error to
    #                          set it in a config to a count other than the dataset's); 17 is the COCO person
    bn_momentum: float = 0.0  # 0 keeps the defaults (torchvision's 0.01 in backbone and light head, 0.1 in the
    #                           deconv head); otherwise every BatchNorm's momentum (0.1 adapts faster in short runs)
    pretrained: str = "none"  # none | torchvision (torch hub cache, never downloaded) | path to a state dict
    dyrelu: DyReLUConfig = field(default_factory=DyReLUConfig)


@dataclass
class DataConfig:
    root: str = "data/coco"  # dataset root with annotations/, train2017/, val2017/
    train_ann: str = "annotations/person_keypoints_train2017.json"  # relative to root
    train_images: str = "train2017"  # relative to root
    val_ann: str = "annotations/person_keypoints_val2017.json"  # relative to root
    val_images: str = "val2017"  # relative to root
    input_size: tuple[int, int] = (192, 256)  # network input (width, height) in pixels
    heatmap_size: tuple[int, int] = (48, 64)  # heatmap (width, height) in cells
    sigma: float = 2.0  # Gaussian target sigma in heatmap cells
    padding: float = 1.25  # box enlargement before the aspect-ratio fix
    batch_size: int = 64  # per process (GPU); the total batch is batch_size * world_size
    workers: int = 4  # DataLoader worker processes per process
    bad_images: str = "skip"  # missing or corrupt image files: skip (counted and logged) | error
    # What the annotation file's category (keypoint names, skeleton) cannot say; see keypoints/metadata.py.
    category_id: int | str | tuple[int, ...] = 0  # COCO categories to train on: 0: the file's only category with
    #       keypoints; an id; a list of ids, or "all" (every category with keypoints): categories naming the same
    #       keypoints trained and evaluated as one set (per-category AP averaged by pycocotools), e.g. one per species
    flip_pairs: tuple[tuple[int | str, int | str], ...] | None = None  # left/right pairs (names or 0-based
    #                       indices); null: inferred from left/right words in the names; []: nothing swaps on a flip
    oks_sigmas: tuple[float, ...] = ()  # OKS sigma per keypoint; empty: COCO's for person, else default_sigma
    default_sigma: float = 0.05  # OKS sigma of every keypoint when oks_sigmas is empty (not the COCO person)
    upper_body: tuple[int | str, ...] | None = None  # half-body "upper" keypoints (names or indices); null: COCO's
    #                                                  for person, none otherwise (no half-body crops); [] for none


@dataclass
class AugConfig:
    flip_prob: float = 0.5  # horizontal flip probability (x' = W - 1 - x, left/right swapped)
    half_body_prob: float = 0.3  # probability of cropping to the upper or lower body
    half_body_min_joints: int = 9  # half-body only with at least this many labelled joints
    upper_body_prob: float = 0.7  # choose the upper body (else the lower) when both are possible
    half_body_scale: float = 1.5  # enlargement of the half-body joint extent
    family: str = "hrnet"  # scale/rotation sampling: hrnet (clipped normal) | mmpose (truncated normal)
    scale_range: tuple[float, float] = (0.65, 1.35)  # box scale factor range
    rotation_max: float = 80.0  # degrees; rotation range is [-rotation_max, rotation_max]
    rotation_prob: float = 0.6  # probability of rotating at all
    shift_factor: float = 0.0  # centre shift as a fraction of the box size (0 disables)
    shift_prob: float = 0.0  # probability of shifting
    photometric: bool = True  # albumentations colour/blur/dropout on the crop
    brightness_contrast_prob: float = 0.5  # RandomBrightnessContrast probability
    hue_saturation_prob: float = 0.3  # HueSaturationValue probability
    blur_prob: float = 0.1  # Blur / MotionBlur probability
    coarse_dropout_prob: float = 0.2  # CoarseDropout probability


@dataclass
class TrainConfig:
    epochs: int = 210  # total epochs
    optimizer: str = "adam"  # adam | adamw | sgd
    lr: float = 5e-4  # learning rate at base_batch_size; scaled linearly with the total batch
    base_batch_size: int = 512  # total batch at which `lr` is given
    weight_decay: float = 0.0  # L2 (adam, sgd) or decoupled (adamw) weight decay
    momentum: float = 0.9  # sgd only
    schedule: str = "step"  # step (x lr_gamma at milestones) | cosine
    milestones: tuple[int, ...] = (170, 200)  # epochs of the step decays
    lr_gamma: float = 0.1  # step decay factor
    min_lr_ratio: float = 0.0  # cosine: final lr as a fraction of the initial lr
    warmup_iters: int = 500  # linear warm-up length in iterations
    warmup_factor: float = 0.001  # lr multiplier at iteration 0 of the warm-up
    grad_clip: float = 0.0  # max global gradient norm; 0 disables
    amp: str = "auto"  # auto (bf16 on CUDA if supported, else fp16) | bf16 | fp16 | off (CPU is always off)
    channels_last: bool = True  # memory format of model and input
    compile: bool = False  # torch.compile the model
    sync_bn: bool = False  # SyncBatchNorm under DDP
    seed: int = 0  # base random seed (each rank and worker derives its own)
    deterministic: bool = False  # deterministic algorithms (slower)
    val_interval: int = 10  # evaluate every N epochs (and after the last)
    ohkm: bool = False  # online hard keypoint mining in the loss
    ohkm_topk: int = 8  # joints kept per sample by OHKM
    log_interval: int = 50  # iterations between log lines
    max_iters_per_epoch: int = 0  # cap iterations per epoch (quick runs, tests); 0 means the whole epoch
    bn_recalibration: str = "auto"  # BatchNorm statistics re-estimated on training batches before each evaluation
    #   (keypoints/bn_stats.py): always | never | auto: when epochs x iterations per epoch x the smallest BN momentum
    #   < 50, i.e. the run lasts fewer than 50 BN time constants (short and fine-tuning runs; not the COCO recipe)
    bn_recalibration_batches: int = 50  # training batches forwarded per recalibration (fewer when an epoch is shorter)
    init_from: str = ""  # fine-tuning: model file (checkpoint) whose weights start the run (heatmaps matched by
    #                     keypoint name; optimiser state not carried); "": none. tools/train.py --init-from sets it


@dataclass
class TestConfig:
    boxes: str = "gt"  # person boxes: gt (ground truth) | path to a detections JSON
    det_score_thr: float = 0.0  # drop detector boxes below this score
    flip: bool = True  # flip test
    shift_heatmap: bool = True  # shift flipped heatmaps one column right (the standard, not with UDP)
    refine: str = "standard"  # none | standard (0.25 px towards the higher neighbour) | dark
    kpt_score_thr: float = 0.2  # keypoints above this score enter the instance score
    oks_nms_thr: float = 0.9  # OKS-NMS threshold
    soft_nms: bool = False  # soft OKS-NMS instead of hard
    batch_size: int = 64  # inference batch per process


@dataclass
class VideoConfig:
    """Video and webcam streams only (the demo, PoseEstimator(tracking=True)); never images or evaluation. The
    One-Euro defaults were chosen on a generated clip other than the one docs/video.md reports."""

    smoothing: str = "one-euro"  # none | one-euro: keypoint smoothing per tracked person (keypoints/smoothing.py)
    min_cutoff: float = 0.5  # One-Euro minimum cutoff in Hz: lower is smoother on a still person, with more lag
    beta: float = 0.03  # One-Euro speed coefficient in 1/pixel: the cutoff grows by beta Hz per px/s of speed
    d_cutoff: float = 1.0  # cutoff of the One-Euro speed estimate in Hz
    kpt_thr: float = 0.1  # joints scoring below this count as missing: passed unsmoothed, filter restarted, not matched
    track_thr: float = 0.3  # smallest OKS between a person and a track's predicted pose that continues the track
    max_missed: int = 10  # frames a track survives unmatched before its id is retired


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    aug: AugConfig = field(default_factory=AugConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)
    video: VideoConfig = field(default_factory=VideoConfig)


# ----------------------------------------------------------------------------- conversion


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; allow int->float and sequence->tuple."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ValueError(f"config key '{key}' is a section; expected a mapping, got {value!r}")
        return _from_dict(tp, value, key + ".")
    if origin is tuple:
        args = typing.get_args(tp)
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ValueError(f"config key '{key}' expects a list ({_type_name(tp)}), got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], key) for v in value)
        if len(value) != len(args):
            raise ValueError(f"config key '{key}' expects {len(args)} values, got {len(value)}: {value!r}")
        return tuple(_coerce(v, a, key) for v, a in zip(value, args))
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, key)
            except ValueError:
                pass
        raise ValueError(f"config key '{key}' expects {_type_name(tp)}, got {value!r}")
    if tp is type(None):
        if value is not None:
            raise ValueError(f"config key '{key}' expects null, got {value!r}")
        return None
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"config key '{key}' expects true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"config key '{key}' expects an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):
            try:
                return float(value)  # YAML 1.1 reads "1e-3" as a string
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"config key '{key}' expects a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"config key '{key}' expects a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp!r} for '{key}'")


def _from_dict(cls: type, data: dict, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in valid]
    if unknown:
        raise ValueError(f"unknown config key '{prefix}{unknown[0]}'; valid keys in "
                         f"'{prefix.rstrip('.') or 'config'}': {', '.join(valid)}")
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    return cls(**kwargs)


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def config_to_dict(cfg: Any) -> dict:
    """Plain nested dict of a config (tuples become lists, ready for YAML/JSON)."""
    def convert(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: convert(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple):
            return [convert(x) for x in v]
        return v
    return convert(cfg)


# Value ranges checked when a config is built: (section.key, lowest allowed, highest allowed or None, what it is).
RANGES = (
    ("model.width_mult", 1e-6, None, "a positive multiplier"), ("model.num_keypoints", 1, None, "at least 1"),
    ("data.default_sigma", 1e-6, None, "a positive OKS sigma"), ("model.light_expansion", 1, None, "at least 1"),
    ("model.bn_momentum", 0.0, 1.0, "0 (defaults) or a momentum in (0, 1]"),
    ("model.dyrelu.reduction", 1, None, "at least 1"), ("model.dyrelu.k", 1, None, "at least 1"),
    ("model.dyrelu.tau", 1e-6, None, "positive"), ("model.dyrelu.gamma", 1e-6, None, "positive"),
    ("data.sigma", 1e-6, None, "positive (heatmap cells)"), ("data.padding", 1e-6, None, "positive"),
    ("data.batch_size", 1, None, "at least 1"), ("data.workers", 0, None, "0 (load in the main process) or more"),
    ("aug.flip_prob", 0.0, 1.0, "a probability"), ("aug.half_body_prob", 0.0, 1.0, "a probability"),
    ("aug.upper_body_prob", 0.0, 1.0, "a probability"), ("aug.rotation_prob", 0.0, 1.0, "a probability"),
    ("aug.shift_prob", 0.0, 1.0, "a probability"), ("aug.rotation_max", 0.0, 180.0, "degrees in [0, 180]"),
    ("train.epochs", 1, None, "at least 1"), ("train.lr", 1e-12, None, "positive"),
    ("train.base_batch_size", 1, None, "at least 1"), ("train.weight_decay", 0.0, None, "0 or more"),
    ("train.warmup_iters", 0, None, "0 or more"), ("train.warmup_factor", 1e-12, 1.0, "in (0, 1]"),
    ("train.grad_clip", 0.0, None, "0 (off) or more"), ("train.val_interval", 1, None, "at least 1 epoch"),
    ("train.log_interval", 1, None, "at least 1 iteration"), ("train.max_iters_per_epoch", 0, None, "0 or more"),
    ("train.ohkm_topk", 1, None, "at least 1"), ("test.batch_size", 1, None, "at least 1"),
    ("train.bn_recalibration_batches", 1, None, "at least 1 batch"),
    ("test.det_score_thr", 0.0, None, "0 or more"), ("test.kpt_score_thr", 0.0, None, "0 or more"),
    ("test.oks_nms_thr", 0.0, 1.0, "an OKS in [0, 1]"),
    ("video.min_cutoff", 1e-6, None, "a positive frequency (Hz)"), ("video.beta", 0.0, None, "0 or more (1/pixel)"),
    ("video.d_cutoff", 1e-6, None, "a positive frequency (Hz)"), ("video.kpt_thr", 0.0, 1.0, "a score in [0, 1]"),
    ("video.track_thr", 0.0, 1.0, "an OKS in [0, 1]"), ("video.max_missed", 0, None, "0 or more frames"),
)


def check_ranges(cfg: Config) -> Config:
    """One-line ``ValueError`` for a value outside its range (see :data:`RANGES`) or a non-positive size."""
    for key, low, high, what in RANGES:
        value = cfg
        for part in key.split("."):
            value = getattr(value, part)
        if value < low or (high is not None and value > high):
            raise ValueError(f"config key '{key}' is {value!r}; it must be {what}")
    for key in ("input_size", "heatmap_size"):
        size = getattr(cfg.data, key)
        if min(size) <= 0:
            raise ValueError(f"config key 'data.{key}' is {list(size)}; it must be a positive [width, height]")
    cat = cfg.data.category_id
    if (isinstance(cat, str) and cat != "all") or (isinstance(cat, int) and cat < 0) or \
            (isinstance(cat, tuple) and (not cat or min(cat) < 0 or len(set(cat)) != len(cat))):
        raise ValueError(f"config key 'data.category_id' is {cat!r}; it must be 0 (the file's keypoint category), a "
                         f"category id, a list of distinct ids or \"all\"")
    if cfg.train.bn_recalibration not in ("auto", "always", "never"):
        raise ValueError(f"config key 'train.bn_recalibration' is {cfg.train.bn_recalibration!r}; choose one of "
                         f"auto, always, never")
    lo, hi = cfg.aug.scale_range
    if not 0 < lo <= hi:
        raise ValueError(f"config key 'aug.scale_range' is {[lo, hi]}; it must be [low, high] with 0 < low <= high")
    return cfg


def config_from_dict(data: dict) -> Config:
    """Build a ``Config`` from a (partial) nested dict; missing keys keep their defaults; values are range-checked."""
    return check_ranges(_from_dict(Config, _merge(config_to_dict(Config()), data or {})))


# ----------------------------------------------------------------------------- files and overrides


# The project's configs/ folder (in a checkout; absent from an installed wheel): `_base_` files are looked up there
# too, so a config copied out of configs/ still finds its base.
PROJECT_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _find_base(base: str, including: Path) -> Path:
    """The file a ``_base_`` entry names: tried relative to the including file's folder, then under the project's
    configs/ folder (as written, then as any one file of that name below it); a one-line error lists the places."""
    given = Path(base).expanduser()
    tried = [given] if given.is_absolute() else [including.parent / given, PROJECT_CONFIGS / given]
    for candidate in tried:
        if candidate.is_file():
            return candidate
    if not given.is_absolute() and PROJECT_CONFIGS.is_dir():
        same_name = sorted(PROJECT_CONFIGS.rglob(given.name))
        if len(same_name) == 1:
            return same_name[0]
        tried.append(PROJECT_CONFIGS / "**" / given.name)
    raise FileNotFoundError(f"config '{including}': _base_ file {base!r} not found; looked in "
                            f"{', '.join(str(p) for p in tried)} (a _base_ path is relative to the config that names "
                            f"it, or to the project's configs/ folder)")


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    if path.resolve() in seen:
        raise ValueError(f"config '{path}' includes itself through _base_")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"config '{path}' is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ValueError(f"config '{path}' must hold a mapping of sections, got {type(data).__name__}")
    base = data.pop("_base_", None)
    if base is not None:
        if not isinstance(base, str) or not base:
            raise ValueError(f"config '{path}': _base_ must be a file name, got {base!r}")
        data = _merge(_read_yaml(_find_base(base, path), seen + (path.resolve(),)), data)
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=1e-3"`` -> (["train", "lr"], 0.001); the value is parsed as YAML."""
    if "=" not in text:
        raise ValueError(f"override '{text}' must look like section.key=value (e.g. train.lr=1e-3)")
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else ""
    return key.strip().split("."), value


def apply_overrides(data: dict, overrides: Sequence[str]) -> dict:
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ValueError(f"override '{text}': '{k}' is not a section")
        node[keys[-1]] = value
    return data


def read_config_data(path: str | Path | None = None, overrides: Sequence[str] = ()) -> dict:
    """The keys a YAML file (and its ``_base_`` chain) and ``key=value`` overrides set, as a nested dict (what
    :func:`load_config` puts over the schema defaults; tells a value given from a default left alone)."""
    data = _read_yaml(Path(path)) if path is not None else {}
    return apply_overrides(data, overrides)


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Schema defaults <- YAML file (and its ``_base_`` chain) <- ``key=value`` overrides."""
    return config_from_dict(read_config_data(path, overrides))


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(dump_config(cfg))
