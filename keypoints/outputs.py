"""The output policy: how every file the project writes is written, and which paths it may write to.

Rules (one place, used by every tool):

1. **Atomic**: a file is written to a temporary sibling (``<name>.<random>.partial<suffix>``, same folder, same
   suffix so suffix-sensitive writers such as OpenCV and AOTInductor accept it) and renamed over the target only
   when complete (:func:`atomic_path`, :func:`write_text`, :func:`write_json`). An error or Ctrl-C before that
   leaves the previous file untouched and removes the temporary one; a process killed outright can leave a
   ``.partial`` file, which :func:`remove_partials` deletes when the next run starts.
2. **Never an input**: an output may not be, or (for folders) contain, an input of the same command
   (:func:`check_output` with ``inputs``): same path, same file through a link, or an input inside an output
   folder.
3. **Never another kind**: an existing file is replaced only by a file of the same kind (a results JSON never
   replaces a checkpoint, an ONNX export never replaces a JSON); the kind is read from the content.
4. **Replaced only when asked**: an existing output of the same kind is replaced only with ``overwrite=True``
   (``--overwrite`` in the tools).
5. **Names from data stay inside**: a file or run name taken from data (an image name, a sweep's run name) must be
   one plain path component (:func:`child_path`): no ``..``, no separators, not absolute.
6. **Only plain files and folders, named for what they hold**: an existing output that is a device, a pipe or a
   socket (``/dev/null``, a FIFO) is refused (renaming over it would replace the device node; reading its kind could
   block); two outputs of one command may not be the same path (:func:`distinct_outputs`); a file output spelled
   with a trailing separator (a folder name), one under a broken link, one whose temporary name would be too long,
   and a non-model output with a model file's suffix (results written to ``best.pth``) are refused.

Violations raise a one-line ``ValueError`` naming the flag and what to do, before any work is done. Folders a
command owns (a training run, an ablation sweep) are created and probed by :func:`check_output_dir`.
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import secrets
import socket
import stat
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

__all__ = ["FolderLock", "atomic_path", "write_text", "write_json", "check_output", "child_path", "remove_partials",
           "content_kind", "same_file", "PARTIAL", "partial_path", "commit_partial", "discard_partial",
           "distinct_outputs", "check_output_dir"]

PARTIAL = ".partial"  # marks temporary files of atomic writes
_TOKEN = 8  # hex digits of the random part of a temporary name
NAME_MAX = 255  # bytes of one file name on Linux, macOS and Windows file systems
_MODEL_KINDS = ("checkpoint", "onnx", "aoti")  # keypoints.modelfile's kinds: their writers name the files


def _partial_name(path: Path) -> Path:
    return path.with_name(f"{path.stem}.{secrets.token_hex(_TOKEN // 2)}{PARTIAL}{path.suffix}")


def partial_path(path: str | Path) -> Path:
    """A fresh temporary name beside ``path`` (same suffix) for a writer that cannot run inside :func:`atomic_path`
    (a video written frame by frame in a loop); finish with :func:`commit_partial` or :func:`discard_partial`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _partial_name(path)


def _written(tmp: Path) -> Path | None:
    """The file a writer made of ``tmp``: ``tmp`` itself, or ``tmp`` with another suffix (a writer that falls back to
    another container, e.g. OpenCV's MJPG .avi when it has no mp4v encoder); None if nothing was written."""
    if tmp.exists():
        return tmp
    return next((p for p in tmp.parent.glob(glob.escape(tmp.stem) + ".*") if p.is_file()), None)


def commit_partial(tmp: str | Path, path: str | Path) -> Path | None:
    """Replace ``path`` by the finished temporary file ``tmp`` (flushed, then ``os.replace``: atomic on one file
    system). A writer that changed the suffix replaces ``path`` with that suffix. Returns the path written (None when
    nothing was written: ``path`` is left as it was)."""
    tmp, path = Path(tmp), Path(path)
    written = _written(tmp)
    if written is None:
        return None
    with contextlib.suppress(OSError):  # flush the data before the rename makes it visible
        fd = os.open(written, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    target = path if written == tmp else path.with_suffix(written.suffix)
    os.replace(written, target)
    return target


def discard_partial(tmp: str | Path) -> None:
    """Delete what a writer made of ``tmp`` (an error before it finished: the previous file stays)."""
    written = _written(Path(tmp))
    if written is not None:
        written.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | Path, keep_on_interrupt: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix) to write the file to; on a normal exit it replaces
    ``path`` (``os.replace``: atomic on one file system), on an exception (Ctrl-C included) it is deleted and
    ``path`` keeps its previous content. The caller's writer may create the temporary file or not (nothing written:
    ``path`` is left as it was). ``keep_on_interrupt``: on Ctrl-C the file written so far replaces ``path`` (the
    writer must have closed it: a video of the frames done) before the interrupt goes on."""
    path = Path(path)
    tmp = partial_path(path)
    try:
        yield tmp
    except KeyboardInterrupt:
        if keep_on_interrupt:
            commit_partial(tmp, path)
        raise
    else:
        commit_partial(tmp, path)
    finally:
        discard_partial(tmp)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, data: Any, indent: int | None = 2) -> Path:
    """Write ``data`` as JSON to ``path`` atomically (NaN/infinity refused: they are not JSON)."""
    return write_text(path, json.dumps(data, indent=indent, allow_nan=False))


def remove_partials(folder: str | Path) -> list[Path]:
    """Delete the temporary files of interrupted atomic writes (``*.partial*``) directly in ``folder``; returns
    them. Call it before a run writes into a folder it owns."""
    removed = []
    folder = Path(folder)
    if folder.is_dir():
        for tmp in folder.glob(f"*{PARTIAL}*"):
            stem = tmp.name.split(PARTIAL)[0]
            if tmp.is_file() and len(stem.rsplit(".", 1)) == 2 and len(stem.rsplit(".", 1)[1]) == _TOKEN:
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    return removed


# ----------------------------------------------------------------------------- what a file is


_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"BM", b"GIF8", b"RIFF", b"II*\x00", b"MM\x00*")


def content_kind(path: str | Path) -> str:
    """What an existing file holds, read from its first bytes (and, for model files, from
    :func:`keypoints.modelfile.identify`): ``checkpoint`` (any PyTorch file), ``onnx``, ``aoti``, ``json``,
    ``image``, ``video``, ``text``, ``empty`` or ``binary``; ``folder`` for a directory."""
    path = Path(path)
    if path.is_dir():
        return "folder"
    with open(path, "rb") as f:
        head = f.read(512)
    if not head:
        return "empty"
    from .modelfile import sniff

    kind = sniff(path)
    if kind is not None:
        return kind
    if head.startswith(_IMAGE_MAGIC) and not (head.startswith(b"RIFF") and head[8:12] == b"AVI "):
        return "image"
    if head[4:8] == b"ftyp" or head.startswith(b"\x1a\x45\xdf\xa3") or head[8:12] == b"AVI ":
        return "video"
    stripped = head.lstrip()
    try:
        stripped.decode("utf-8")
    except UnicodeDecodeError:
        return "binary"
    return "json" if stripped[:1] in (b"{", b"[") else "text"


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two existing paths are the same file (links and different spellings included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def _cannot_write(folder: Path) -> str | None:
    """Why no file can be created in ``folder`` (permissions, a read-only or virtual file system such as /proc),
    found by creating and deleting a probe file there (``os.access`` says yes to root and to read-only mounts of
    some kinds); None when one can."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        return e.strerror or type(e).__name__
    return None


def _inside(inner: Path, outer: Path) -> bool:
    inner, outer = inner.resolve(), outer.resolve()
    return inner == outer or outer in inner.parents


def check_output(path: str | Path, *, flag: str, kind: str, inputs: Iterable[str | Path | None] = (),
                 overwrite: bool = False, folder: bool = False) -> Path:
    """Check an output path against the rules of this module before any work; returns it as a ``Path``.

    ``kind``: what will be written (``json``, ``image``, ``video``, ``onnx``, ``aoti``, ``checkpoint``, ``text``,
    ``csv``, ...; ``folder`` with ``folder=True``); ``inputs``: the command's input files and folders (None entries
    are skipped). A folder output may exist (files go into it); its own files follow the rules when written.
    Raises a one-line ``ValueError`` naming ``flag``.
    """
    text = str(path)
    if not folder and text.endswith(("/", os.sep)):
        raise ValueError(f"{flag} {text} ends with a separator, so it names a folder; this command writes a {kind} "
                         f"file there: pass a file name")
    path = Path(path)
    if PARTIAL not in path.name and len(os.fsencode(path.name)) + len(f".{'0' * _TOKEN}{PARTIAL}") > NAME_MAX:
        raise ValueError(f"{flag}: the file name {path.name[:40]}... is too long ({len(os.fsencode(path.name))} "
                         f"bytes; at most {NAME_MAX - 9 - len(PARTIAL)}): choose a shorter name")
    for given in inputs:
        if given is None or str(given).isdigit() and not Path(str(given)).exists():  # camera index, not a path
            continue
        given = Path(given)
        if not given.exists():
            continue
        if path.exists() and same_file(path, given):
            raise ValueError(f"{flag} {path} is an input of this command ({given}); writing it would destroy the "
                             f"input: choose another output path")
        if folder and _inside(given, path) and given.is_file():
            raise ValueError(f"{flag} folder {path} holds the input {given}; files written there could replace "
                             f"inputs: choose another output folder")
        if folder and given.is_dir() and _inside(given, path):
            raise ValueError(f"{flag} folder {path} holds the input folder {given}; choose another output folder")
        if folder and given.is_dir() and path.resolve() == given.resolve():
            raise ValueError(f"{flag} {path} is the input folder; choose another output folder")
    if not folder and kind not in _MODEL_KINDS:
        from .modelfile import KINDS, kind_of_suffix

        claimed = kind_of_suffix(path)
        if claimed is not None:  # a results JSON named best.pth would be taken for a model file later
            raise ValueError(f"{flag} {path} has the suffix of {KINDS[claimed].description}, but this command writes "
                             f"a {kind} file there: choose a name with a {kind} suffix")
    if not folder and path.is_symlink():  # the rename would replace the link itself, not the file it names
        raise ValueError(f"{flag} {path} is a symbolic link (to {os.readlink(path)}); writing would replace the link, "
                         f"not its file: pass the file's own path or another one")
    nearest = Path(".")
    for parent in path.parents:
        if parent.is_symlink() and not parent.exists():
            raise ValueError(f"{flag} {path} is under the broken link {parent} (to {os.readlink(parent)}); fix the "
                             f"link or choose another path")
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"{flag} {path} is under the file {parent}; choose a path in a folder")
        if parent.exists():
            nearest = parent
            break
    probe = path if folder and path.is_dir() else nearest
    reason = _cannot_write(probe)
    if reason:
        raise ValueError(f"{flag} {path} cannot be written ({reason}); folder {probe} takes no new files: choose a "
                         f"writable folder")
    if not path.exists():
        return path
    mode = path.stat().st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise ValueError(f"{flag} {path} is not a regular file (a device, pipe or socket); writing would replace it: "
                         f"choose a file path")
    existing = content_kind(path)
    if folder:
        if existing != "folder":
            raise ValueError(f"{flag} {path} is an existing {existing} file; pass a folder path")
        return path
    if existing == "folder":
        raise ValueError(f"{flag} {path} is a folder; pass a file name")
    if existing not in (kind, "empty") and not (kind in ("text", "csv") and existing in ("text", "json")):
        raise ValueError(f"{flag} {path} is an existing {existing} file; this command writes {kind} there and "
                         f"never replaces a file of another kind: choose another path")
    if not overwrite:
        raise ValueError(f"{flag} {path} exists; pass --overwrite to replace it, or choose another path")
    return path


def child_path(folder: str | Path, name: str, what: str = "name") -> Path:
    """``folder / name`` for a ``name`` that comes from data (an image file name, a run name); a one-line
    ``ValueError`` unless it is one plain path component, so nothing is written outside ``folder``."""
    text = str(name)
    if (not text or text in (".", "..") or "/" in text or "\\" in text or "\x00" in text
            or Path(text).is_absolute() or Path(text).name != text):
        raise ValueError(f"{what} {text!r} is not a plain file or folder name (no '..', no separators); it would "
                         f"be written outside {folder}")
    return Path(folder) / text


def distinct_outputs(outputs: dict[str, str | Path | None]) -> None:
    """Refuse two outputs of one command at the same path (``{flag: path}``; None entries skipped): the second write
    would replace the first. Spellings, links and existing files are compared as :func:`same_file` does."""
    seen: list[tuple[str, Path]] = []
    for flag, path in outputs.items():
        if path is None:
            continue
        path = Path(path)
        for other_flag, other in seen:
            if path.resolve() == other.resolve() or (path.exists() and other.exists() and same_file(path, other)):
                raise ValueError(f"{flag} and {other_flag} are the same file ({path}); the second would replace the "
                                 f"first: choose two paths")
        seen.append((flag, path))


def check_output_dir(path: str | Path, flag: str = "--output-dir", inputs: Iterable[str | Path | None] = ()) -> Path:
    """Create the folder ``path`` (and its parents) that a command owns (a training run, an ablation sweep) and prove
    it writable by writing and removing a probe file, so that a bad output path fails at once with one line instead
    of after data loading or a first epoch. ``inputs``: the command's input files and folders, which the folder may
    not be or hold (:func:`check_output` with ``folder=True``).

    Raises ValueError naming ``flag`` when ``path`` or one of its parents is a regular file, or when the folder
    cannot be created or written (permissions, read-only file system; as root, permissions are not a limit).
    """
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            what = "is a file" if p == path else f"is under the file {p}"
            raise ValueError(f"{flag} {path} {what}; choose a folder path")
    check_output(path, flag=flag, kind="folder", inputs=inputs, folder=True)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ValueError(f"{flag} {path} cannot be written ({e.strerror or type(e).__name__}); "
                         f"choose a writable folder") from None
    return path


class FolderLock:
    """One writer per folder: an exclusive ``flock`` on the folder itself, which the operating system releases when
    the process ends however it ends (a crash never leaves it locked). While it is held, ``folder/info_name`` says
    who holds it (pid, host, start) for the error of a second process: ``busy(folder, holder)`` words that one-line
    ValueError. No lock where ``fcntl`` is missing (not POSIX)."""

    def __init__(self, folder: str | Path, info_name: str, busy: Callable[[Path, str], str]) -> None:
        self.folder, self.fd, self.busy = Path(folder), None, busy
        self.info = self.folder / info_name

    def acquire(self) -> "FolderLock":
        try:
            import fcntl
        except ImportError:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = self.info.read_text().strip() if self.info.is_file() else "another process"
            raise ValueError(self.busy(self.folder, holder)) from None
        self.fd = fd
        self.info.write_text(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        return self

    def release(self) -> None:
        if self.fd is not None:
            self.info.unlink(missing_ok=True)
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
