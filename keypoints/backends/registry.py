"""The runtime registry: every runtime of the pose network declares itself here, once, from its own module.

A :class:`Runtime` says its name, which model-file kinds it reads (:data:`keypoints.modelfile.KINDS`), which kinds
it is the default runtime for, how it loads a file, how it wraps a live ``nn.Module`` (benchmarks, validation) and,
if it has one, its exporter and the kind that writes. ``load_backend`` (:mod:`keypoints.backends`),
``tools/benchmark.py`` and ``tools/export.py`` only look names up here, so adding a runtime is one new module in
``keypoints/backends/`` that calls :func:`register` (imported automatically by the package) plus its tests.

    rt = get_runtime("onnxruntime")
    backend = rt.load(path, device=..., threads=..., cfg=None, amp_dtype=None)
    backend = rt.wrap(model, info, threads=2, exported=lambda kind: path_of_export)   # benchmarks
    rt.export(model, "model.onnx", info=info, batch="dynamic")                        # tools/export.py
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

__all__ = ["Runtime", "register", "get_runtime", "runtime_names", "default_runtime", "runtimes_reading",
           "exporter_for", "RUNTIMES"]


@dataclass(frozen=True)
class Runtime:
    """One runtime of the pose network.

    ``load(path, *, device, threads, cfg, amp_dtype) -> Backend`` reads a file of a kind in ``reads`` (``cfg``
    replaces a checkpoint's stored config; other kinds ignore it). ``wrap(model, info, *, threads, exported) ->
    Backend`` runs a live eval-mode module (``exported(kind)`` returns the path of that module exported to
    ``kind``, made once and shared between runtimes). ``export(model, path, *, info, **options) -> Path`` writes
    the kind ``writes``. ``requires``: Python modules that must be importable (an optional package).
    """

    name: str
    reads: tuple[str, ...]
    load: Callable[..., Any]
    summary: str
    default_for: tuple[str, ...] = ()
    wrap: Callable[..., Any] | None = None
    export: Callable[..., Path] | None = None
    writes: str | None = None
    requires: tuple[str, ...] = ()
    install: str = ""  # how to install what ``requires`` names

    def available(self) -> bool:
        return all(importlib.util.find_spec(m) is not None for m in self.requires)

    def check_available(self) -> None:
        missing = [m for m in self.requires if importlib.util.find_spec(m) is None]
        if missing:
            raise ValueError(f"the {self.name} runtime needs the {', '.join(missing)} package: "
                             f"{self.install or 'pip install ' + ' '.join(missing)}")


RUNTIMES: dict[str, Runtime] = {}


def register(runtime: Runtime) -> Runtime:
    """Add ``runtime`` (its module calls this at import); a name or a default kind registered twice is an error."""
    if runtime.name in RUNTIMES and RUNTIMES[runtime.name] != runtime:
        raise ValueError(f"runtime {runtime.name!r} is registered twice")
    taken = {k for r in RUNTIMES.values() if r.name != runtime.name for k in r.default_for}
    if set(runtime.default_for) & taken:
        raise ValueError(f"runtime {runtime.name!r}: another runtime is already the default for "
                         f"{sorted(set(runtime.default_for) & taken)}")
    if runtime.writes is not None and runtime.writes not in runtime.reads:
        raise ValueError(f"runtime {runtime.name!r} exports {runtime.writes} files but does not read them")
    RUNTIMES[runtime.name] = runtime
    return runtime


def runtime_names() -> list[str]:
    return sorted(RUNTIMES)


def get_runtime(name: str) -> Runtime:
    if name not in RUNTIMES:
        raise ValueError(f"runtime {name!r} is not valid; choose one of {', '.join(runtime_names())}")
    return RUNTIMES[name]


def runtimes_reading(kind: str) -> list[str]:
    return [name for name in runtime_names() if kind in RUNTIMES[name].reads]


def default_runtime(kind: str) -> Runtime:
    for runtime in RUNTIMES.values():
        if kind in runtime.default_for:
            return runtime
    raise ValueError(f"no runtime reads {kind} files")


def exporter_for(kind: str, runtime: str | None = None) -> Runtime:
    """The runtime that exports ``kind`` files and checks them: ``runtime`` when named (it must write ``kind``),
    else the default runtime of ``kind``."""
    rt = get_runtime(runtime) if runtime is not None else default_runtime(kind)
    if rt.export is None or rt.writes != kind:
        writers = [n for n in runtime_names() if RUNTIMES[n].writes == kind]
        raise ValueError(f"the {rt.name} runtime does not export {kind} files; runtimes that do: "
                         f"{', '.join(writers) or 'none'}")
    return rt
