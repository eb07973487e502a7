"""Model files: the one owner of every file that holds a pose model or weights.

    kind = identify("best.pth")                 # "checkpoint" | "onnx" | "aoti", from the content, never the name
    ckpt = read_checkpoint("best.pth")          # Checkpoint: weights, config, metadata, epoch, optimiser state, ...
    write_checkpoint(ckpt, "outputs/run/last.pth")   # atomic, current format version
    weights = read_state_dict("mobilenet_v3_large-8738ca79.pth", "model.pretrained")   # any torch weights file
    report = load_weights(module, weights, "checkpoint best.pth")                       # strict, one-line errors

**Kinds** (:func:`identify`), told apart by their bytes:

- ``checkpoint``: a PyTorch file (``torch.save``: a zip archive with ``*/data.pkl``, or the legacy pickle format).
  Read with ``weights_only=True`` always: tensors and plain containers, never code. A training checkpoint of this
  project is one holding the schema below; torchvision backbone or detector weights are plain state dicts.
- ``onnx``: an ONNX ``ModelProto`` (protobuf; its top-level fields are checked without the onnx package).
  Loading it runs no code of the file's author.
- ``aoti``: an AOTInductor package (a PT2 zip archive with ``data/aotinductor/``): it holds a compiled shared
  library, so **loading one runs native code from the file**. Loading requires ``trust_code=True``
  (:func:`require_trust`; ``--trust-code`` in the tools).

A file name whose suffix belongs to another kind (``.pth``/``.pt``/``.ckpt``, ``.onnx``, ``.pt2``) is an error that
says what the file is and what to do (:func:`check_suffix`); an output's suffix must be its kind's.

**Checkpoint schema** (format version :data:`FORMAT_VERSION`), a dict: ``format`` ("keypoints-checkpoint"),
``format_version``, ``model`` (state dict of the unwrapped model), ``config`` (the resolved config as a plain dict),
``metadata`` (:meth:`keypoints.metadata.DatasetMeta.to_dict`), ``epoch`` (epochs completed), ``optimizer``,
``scheduler``, ``scaler`` (state dicts or None), ``best_metric``, ``best_metric_name``, ``data`` (fingerprints of the
annotation files trained on, for exact resumes), ``init_from`` (the model file a fine-tuning run started from),
``keypoints_version`` and ``torch_version``. Version 1 (no ``format`` key: checkpoints written before this module
existed, including ``tests/data/checkpoints/quickstart_coco_mini_val.pth``) is migrated on read: a missing
``metadata`` means the COCO person, missing optimiser entries mean "weights only".
"""
from __future__ import annotations

import dataclasses
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn

from .config import Config, config_from_dict
from .metadata import DatasetMeta

__all__ = ["FORMAT_VERSION", "KINDS", "Checkpoint", "identify", "sniff", "check_suffix", "require_trust",
           "read_checkpoint", "write_checkpoint", "read_state_dict", "load_weights", "LoadReport", "describe_kind"]

FORMAT = "keypoints-checkpoint"
FORMAT_VERSION = 2


@dataclass(frozen=True)
class Kind:
    """A kind of model file: its name, the suffixes that name it (first: the one outputs use), a description,
    whether loading it runs code from the file, and what to do with it."""

    name: str
    suffixes: tuple[str, ...]
    description: str
    runs_code: bool = False


KINDS = {
    "checkpoint": Kind("checkpoint", (".pth", ".pt", ".ckpt"), "a PyTorch checkpoint or weights file"),
    "onnx": Kind("onnx", (".onnx",), "an ONNX model"),
    "aoti": Kind("aoti", (".pt2",), "an AOTInductor package (compiled native code)", runs_code=True),
}


def describe_kind(kind: str) -> str:
    return KINDS[kind].description if kind in KINDS else kind


# ----------------------------------------------------------------------------- content sniffing


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


# ModelProto's top-level fields and wire types (onnx.proto3): 0 varint, 2 length-delimited.
_ONNX_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2}


def _is_onnx(path: Path) -> bool:
    """A protobuf whose top-level fields are all ModelProto fields with their wire types, with a graph (7) and
    ``ir_version`` (1). Reads the tags only (lengths are skipped with seeks), so a large model costs nothing."""
    size = path.stat().st_size
    seen = set()
    with open(path, "rb") as f:
        pos = 0
        while pos < size:
            f.seek(pos)
            head = f.read(20)
            try:
                tag, after = _varint(head, 0)
            except ValueError:
                return False
            number, wire = tag >> 3, tag & 7
            if _ONNX_FIELDS.get(number) != wire:
                return False
            seen.add(number)
            value, after = _varint(head, after)
            pos += after + (value if wire == 2 else 0)
            if pos > size:
                return False
    return {1, 7} <= seen


def sniff(path: str | Path) -> str | None:
    """The model-file kind of an existing file from its content (see the module docstring), or None when it is
    none of them (or unreadable)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return None
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            return None
        if any("/data/aotinductor/" in "/" + n for n in names):
            return "aoti"
        if any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
            return "checkpoint"
        return None
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):  # legacy torch.save (pickle)
        return "checkpoint"
    try:
        return "onnx" if head[:1] == b"\x08" and _is_onnx(path) else None
    except OSError:
        return None


def identify(path: str | Path, what: str = "model file",
             hint: str = "pass a checkpoint written by tools/train.py or a file written by tools/export.py") -> str:
    """The kind of the model file ``path`` (``checkpoint``, ``onnx`` or ``aoti``) from its content; a one-line
    ``FileNotFoundError`` / ``ValueError`` when it is missing or none of them."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}")
    if path.is_dir():
        raise ValueError(f"{what} {path} is a folder; pass a file (a checkpoint written by tools/train.py, or an "
                         f".onnx / .pt2 file written by tools/export.py)")
    kind = sniff(path)
    if kind is None:
        with open(path, "rb") as f:
            head = f.read(16)
        raise ValueError(f"{what} {path} is not a model file this project reads (neither a PyTorch checkpoint, an "
                         f"ONNX model nor an AOTInductor package; it starts with {head[:8]!r}); {hint}")
    return kind


def kind_of_suffix(path: str | Path) -> str | None:
    """The kind a file name claims by its suffix, or None for a suffix no kind uses."""
    suffix = Path(path).suffix.lower()
    return next((k.name for k in KINDS.values() if suffix in k.suffixes), None)


def check_suffix(path: str | Path, kind: str, *, output: bool = False, flag: str = "model file") -> None:
    """One-line ``ValueError`` when ``path``'s name claims another kind than ``kind`` (its content, or for an
    ``output`` the format about to be written). Inputs with a suffix no kind uses are accepted by content;
    outputs must carry a suffix of their kind."""
    claimed = kind_of_suffix(path)
    expected = KINDS[kind].suffixes if kind in KINDS else ()
    if output:
        if Path(path).suffix.lower() not in expected:
            raise ValueError(f"{flag} {path}: this writes {describe_kind(kind)}, which is named *{expected[0]}; "
                             f"use a name ending in {' or '.join(expected)}")
        return
    if claimed is not None and claimed != kind:
        raise ValueError(f"{flag} {path} is {describe_kind(kind)} by its content, but its name says "
                         f"{describe_kind(claimed)} ({Path(path).suffix}); rename it to "
                         f"{Path(path).with_suffix(expected[0]).name}")


def require_trust(path: str | Path, kind: str, trust_code: bool) -> None:
    """The trust rule: a kind whose loading runs code from the file (``aoti``) needs ``trust_code=True``."""
    if KINDS.get(kind) is not None and KINDS[kind].runs_code and not trust_code:
        raise ValueError(f"{path} is {describe_kind(kind)}: loading it runs the native code inside it, so it is "
                         f"loaded only when you trust who made it: pass --trust-code (trust_code=True in Python); "
                         f"checkpoints and ONNX files load without running code")


# ----------------------------------------------------------------------------- torch files


def _torch_load(path: Path, what: str) -> Any:
    """``torch.load(..., weights_only=True)`` of a file known to be a PyTorch file; one-line errors."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - unpickling errors of every kind mean "not a safe weights file"
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            first = "it holds Python objects other than tensors and plain containers, which are never unpickled"
        raise ValueError(f"cannot read {what} {path}: {first}") from None


def _read_torch(path: str | Path, what: str, hint: str | None = None) -> Any:
    path = Path(path)
    kind = identify(path, what, *([hint] if hint else []))
    if kind != "checkpoint":
        hint = {"onnx": "an exported model runs with --backend onnxruntime/openvino, it cannot be read as weights",
                "aoti": "a compiled package runs with --backend compiled, it cannot be read as weights"}[kind]
        raise ValueError(f"{what} {path} is {describe_kind(kind)}, not a PyTorch file ({hint}); pass the .pth "
                         f"checkpoint it was exported from")
    check_suffix(path, kind, flag=what)
    return _torch_load(path, what)


def read_state_dict(path: str | Path, what: str = "weights file") -> dict[str, torch.Tensor]:
    """Tensors of a PyTorch weights file (a state dict, a ``{"model": ...}`` / ``{"state_dict": ...}`` wrapper, or
    a checkpoint of this project: its model weights), read safely (``weights_only``)."""
    state = _read_torch(path, what, "pass a PyTorch weights file (a state dict saved with torch.save)")
    if isinstance(state, dict):
        for key in ("model", "state_dict"):
            if isinstance(state.get(key), dict) and all(isinstance(v, torch.Tensor) for v in state[key].values()):
                state = state[key]
                break
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{what} {path} holds no state dict (a mapping of names to tensors)")
    return state


@dataclass
class Checkpoint:
    """A training checkpoint in memory (see the module docstring for the file schema)."""

    weights: dict[str, torch.Tensor]
    config: dict  # the resolved config as a plain dict (keypoints.config.config_to_dict)
    metadata: DatasetMeta
    epoch: int = 0  # epochs completed
    optimizer: dict | None = None
    scheduler: dict | None = None
    scaler: dict | None = None
    best_metric: float | None = None
    best_metric_name: str = "AP"
    data: dict = field(default_factory=dict)  # fingerprints of the annotation files trained on
    init_from: dict | None = None  # the model file a fine-tuning run started from (path, kind, epoch, keypoints)
    version: int = FORMAT_VERSION  # the format version the file was written in (migrated in memory)
    source: str = ""  # where it was read from

    @property
    def cfg(self) -> Config:
        """The stored config as a :class:`~keypoints.config.Config` (schema defaults for keys it lacks)."""
        return config_from_dict(self.config)

    @property
    def has_training_state(self) -> bool:
        return self.optimizer is not None and self.scheduler is not None

    def to_state(self) -> dict[str, Any]:
        """The dict written to disk (current format version)."""
        import keypoints

        return {"format": FORMAT, "format_version": FORMAT_VERSION, "model": self.weights, "config": self.config,
                "metadata": self.metadata.to_dict(), "epoch": int(self.epoch), "optimizer": self.optimizer,
                "scheduler": self.scheduler, "scaler": self.scaler, "best_metric": self.best_metric,
                "best_metric_name": self.best_metric_name, "data": self.data, "init_from": self.init_from,
                "keypoints_version": str(keypoints.__version__), "torch_version": str(torch.__version__)}

    @classmethod
    def from_state(cls, state: Any, source: str = "checkpoint") -> "Checkpoint":
        """Inverse of :meth:`to_state`, migrating older format versions; one-line ``ValueError`` otherwise."""
        if not isinstance(state, dict) or "model" not in state or "config" not in state:
            raise ValueError(f"{source} is a PyTorch file but not a pose checkpoint of this project (no 'model' and "
                             f"'config' entries); pass a file written by tools/train.py (last.pth or best.pth)")
        version = 1 if "format" not in state else state.get("format_version")
        if "format" in state and state["format"] != FORMAT:
            raise ValueError(f"{source} is a {state['format']!r} file, not a {FORMAT}")
        if not isinstance(version, int) or version < 1:
            raise ValueError(f"{source} has an unreadable format version {version!r}")
        if version > FORMAT_VERSION:
            raise ValueError(f"{source} was written in checkpoint format {version} by a newer keypoints (this one "
                             f"reads up to {FORMAT_VERSION}); upgrade keypoints")
        if not isinstance(state["model"], dict) or not isinstance(state["config"], dict):
            raise ValueError(f"{source}: 'model' and 'config' must be mappings")
        metadata = DatasetMeta.coco_person() if state.get("metadata") is None else \
            DatasetMeta.from_dict(state["metadata"], source)  # version 1 before metadata was stored: COCO person
        return cls(weights=state["model"], config=state["config"], metadata=metadata,
                   epoch=int(state.get("epoch", 0) or 0), optimizer=state.get("optimizer"),
                   scheduler=state.get("scheduler"), scaler=state.get("scaler"), best_metric=state.get("best_metric"),
                   best_metric_name=state.get("best_metric_name", "AP"), data=dict(state.get("data") or {}),
                   init_from=state.get("init_from"), version=version, source=source)

    def weights_only(self) -> "Checkpoint":
        """A copy without the optimiser, scheduler and scaler state (what a released model needs)."""
        return dataclasses.replace(self, optimizer=None, scheduler=None, scaler=None)


def read_checkpoint(path: str | Path) -> Checkpoint:
    """The training checkpoint at ``path`` (any format version; migrated); one-line errors for anything else."""
    return Checkpoint.from_state(_read_torch(path, "checkpoint"), f"checkpoint {path}")


def write_checkpoint(checkpoint: Checkpoint, path: str | Path) -> Path:
    """Write ``checkpoint`` to ``path`` atomically in the current format (:func:`keypoints.outputs.atomic_path`)."""
    from .outputs import atomic_path

    path = Path(path)
    check_suffix(path, "checkpoint", output=True, flag="checkpoint")
    buffer = io.BytesIO()
    torch.save(checkpoint.to_state(), buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return path


# ----------------------------------------------------------------------------- fitting weights to a module


@dataclass
class LoadReport:
    """What :func:`load_weights` did: tensors loaded, incoming keys skipped, module keys kept at initialisation."""

    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return f"loaded {len(self.loaded)} tensors, skipped {len(self.skipped)}, kept {len(self.kept)} at init"


def load_weights(module: nn.Module, state_dict: dict[str, torch.Tensor], source: str, *,
                 skip: Callable[[str], bool] | None = None, keep: Callable[[str], bool] | None = None,
                 hint: str = "use the config the weights were trained with") -> LoadReport:
    """Load ``state_dict`` into ``module``: every module key must be given (except those ``keep`` accepts, which
    keep their initialisation) and every given key must be the module's with its shape (except those ``skip``
    accepts, which are ignored). Otherwise a one-line ``ValueError`` naming ``source``, the first mismatches and
    ``hint``; nothing is loaded then."""
    own = module.state_dict()
    skip = skip or (lambda key: False)
    keep = keep or (lambda key: False)
    incoming = {k: v for k, v in state_dict.items() if not (k not in own and skip(k))}
    skipped = [k for k in state_dict if k not in incoming]
    missing = [k for k in own if k not in incoming and not keep(k)]
    unexpected = [k for k in incoming if k not in own]
    shapes = [k for k in incoming if k in own and tuple(own[k].shape) != tuple(incoming[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if shapes:
            k = shapes[0]
            parts.append(f"{len(shapes)} with other shapes (e.g. {k}: {tuple(incoming[k].shape)} vs "
                         f"{tuple(own[k].shape)})")
        raise ValueError(f"{source} does not fit the model: {'; '.join(parts)}; {hint}")
    module.load_state_dict(incoming, strict=False)
    return LoadReport(loaded=sorted(incoming), skipped=skipped, kept=[k for k in own if k not in incoming])


def strip_prefixes(state_dict: dict[str, torch.Tensor], prefixes: Iterable[str]) -> dict[str, torch.Tensor]:
    """Keys without the wrapper prefixes ``prefixes`` (``module.`` of DDP, ``_orig_mod.`` of torch.compile, ...)."""
    out = {}
    for key, value in state_dict.items():
        for prefix in prefixes:
            key = key.removeprefix(prefix)
        out[key] = value
    return out
