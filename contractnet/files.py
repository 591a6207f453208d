"""Output files written whole or not at all.

:func:`write_file` writes a temporary file beside the target and renames it
over the target (``os.replace``), so an interrupted write never leaves a
truncated file under the real name.  The rest follows from what the path
names:

- a symbolic link is followed: the file it points to is replaced, the link
  stays;
- the file that standard output or error (file descriptor 1 or 2, open for
  writing) is open on, such as ``/dev/stdout`` wherever it is redirected,
  is written to that descriptor, after what Python's streams on it hold.
  It goes to the descriptor itself, so a capture of ``sys.stdout``
  (``contextlib.redirect_stdout``, pytest's ``capsys``) does not see it;
- any other existing non-regular file (``/dev/null``, a named pipe) is
  opened and written in place, never renamed over.

These last two cannot be written atomically, and they are written as a
stream: a writer that would seek back to fill in a header (a zip archive)
is shown a file it cannot seek, so it writes straight through; seeking in a
file opened for appending would garble it.

:func:`check_writable` finds, before any long computation, the paths that
:func:`write_file` would fail on.
"""
from __future__ import annotations

import contextlib
import fcntl
import io
import json
import math
import os
import secrets
import select
import stat
import sys
from typing import IO, Callable

#: The temporary file's name: a random part, so no two writers share one.
TEMPORARY_NAME = ".contractnet-{token}.tmp"


def write_file(path: str | os.PathLike, data: bytes | str | Callable[[IO[bytes]], None]
               ) -> None:
    """Write ``data`` to ``path``: a regular file whole or not at all.

    Parameters
    ----------
    path : str or PathLike
        The target (see the module's notes on links, streams and devices).
        A file it replaces keeps its permissions; a new one gets ``0o666``
        less the umask.
    data : bytes, str or callable
        The content (text is written as UTF-8), or a function that writes
        it to the binary file object it is given.

    Raises
    ------
    ValueError
        If the path is empty, not a file name, a directory, in a missing
        directory, or a closed file descriptor (see :func:`check_writable`).
    OSError
        If writing fails; a regular file is then left as it was, with no
        temporary file beside it.
    """
    kind, target = _destination(path)
    write = _writer(data)
    if kind == "stream":
        _flush_streams_on(target)
        write(_Unseekable(lambda content: _write_to_fd(target, content)))
        return
    if kind == "special":
        with open(target, "wb", buffering=0) as handle:
            write(_Unseekable(lambda content: _write_to_fd(handle.fileno(), content)))
        return
    kept = stat.S_IMODE(os.stat(target).st_mode) if os.path.isfile(target) else None
    # created here, never an existing file, and no more open than the file it replaces
    mode = 0o666 if kept is None else kept & 0o777
    tmp = _temporary_name(target)
    handle = None
    replaced = False
    try:
        handle = open(tmp, "xb", opener=lambda name, flags: os.open(name, flags, mode))
        with handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())  # on disk before the rename makes it the file
        if kept is not None:  # a replaced file keeps its permissions
            os.chmod(tmp, kept)
        os.replace(tmp, target)
        replaced = True
    finally:
        if handle is not None and not replaced:
            with contextlib.suppress(OSError):
                os.remove(tmp)


def check_writable(path: str | os.PathLike) -> None:
    """Fail early when :func:`write_file` could not write ``path``.

    Creates and removes a temporary file beside the target, so a directory
    that is read-only or not a place for files (``/proc``) is found out
    now, not after a long run; a device or pipe must be writable, and a
    file another user owns in a sticky directory (``/tmp``) is refused, as
    it could not be renamed over.

    Raises
    ------
    ValueError
        Naming the path and what is wrong with it.
    """
    kind, target = _destination(path)
    if kind == "stream":
        return  # open for writing, or it would not count as a stream
    if kind == "special":
        if not os.access(target, os.W_OK):
            raise ValueError(f"cannot write {os.fspath(path)!r}: permission denied")
        return
    probe = _temporary_name(target)
    try:
        with open(probe, "xb"):
            pass
        os.remove(probe)
    except OSError as exc:
        raise ValueError(f"cannot write {os.fspath(path)!r}: {exc.strerror or exc}") from None
    if not _may_replace(target):
        raise ValueError(f"cannot write {os.fspath(path)!r}: another user owns it, in a "
                         "directory where only a file's owner may replace it")


def json_text(value, indent: int | None = None) -> str:
    """``value`` as JSON, every nan or infinite float (inside dicts, lists
    and tuples too) written as ``null``: JSON has neither."""
    return json.dumps(_finite(value), indent=indent, allow_nan=False)


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _destination(path: str | os.PathLike):
    """How ``path`` is written, found with nothing created: ``("stream",
    fd)``, ``("special", path)`` or ``("file", target)``, where ``target``
    is the regular file to replace (links followed)."""
    path = os.fspath(path)
    if not path:
        raise ValueError("an output path is empty: give a file name")
    fd = _stream_on(path)
    if fd is not None:
        return "stream", fd
    if os.path.isdir(path):
        raise ValueError(f"cannot write {path!r}: it is a directory")
    if os.path.exists(path) and not os.path.isfile(path):  # a device, a pipe
        return "special", path
    # as the system reads the path: "name/", "name/." and "missing/../new" are no files
    if os.path.basename(path) in ("", os.curdir, os.pardir):
        raise ValueError(f"cannot write {path!r}: it does not end in a file name")
    written = os.path.dirname(path) or os.curdir
    if not os.path.isdir(written):
        raise ValueError(f"cannot write {path!r}: directory {written!r} does not exist")
    target = os.path.realpath(path)
    if os.path.islink(target):
        raise ValueError(f"cannot write {path!r}: its symbolic links form a loop")
    directory = os.path.dirname(target)
    if os.path.basename(directory) == "fd" and directory.startswith("/proc/"):
        raise ValueError(f"cannot write {path!r}: it names a file descriptor that is "
                         "not open")
    if not os.path.isdir(directory):
        raise ValueError(f"cannot write {path!r}: directory {directory!r} does not exist")
    if os.path.isdir(target):
        raise ValueError(f"cannot write {path!r}: it is a directory")
    return "file", target


def _may_replace(target: str) -> bool:
    """Whether this process may rename a file over ``target``: in a sticky
    directory (``/tmp``) only the owner of the file or of the directory can."""
    if not os.path.exists(target) or os.geteuid() == 0:
        return True
    folder = os.stat(os.path.dirname(target))
    uid = os.geteuid()
    return not folder.st_mode & stat.S_ISVTX or uid in (folder.st_uid, os.stat(target).st_uid)


def _stream_on(path: str) -> int | None:
    """File descriptor 1 or 2 when it is open for writing on the file
    ``path`` names (links followed, ``/dev/stdout`` included), whatever
    ``sys.stdout`` is."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    for fd in (1, 2):
        try:
            opened = os.fstat(fd)
            writable = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE != os.O_RDONLY
        except OSError:  # closed
            continue
        if writable and (opened.st_dev, opened.st_ino) == (st.st_dev, st.st_ino):
            return fd
    return None


def _flush_streams_on(fd: int) -> None:
    """Flush Python's streams on ``fd``, so that what they hold comes first."""
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None and stream.fileno() == fd:
                stream.flush()
        except (AttributeError, OSError, ValueError):  # no file behind it, or closed
            continue


def _write_to_fd(fd: int, content: bytes) -> int:
    """All of ``content`` written to ``fd``, waiting where it does not block."""
    view = memoryview(content)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            select.select([], [fd], [])
    return len(content)


def _temporary_name(target: str) -> str:
    """A new name beside ``target``, short whatever the length of its own."""
    return os.path.join(os.path.dirname(target),
                        TEMPORARY_NAME.format(token=secrets.token_hex(8)))


def _writer(data) -> Callable[[IO[bytes]], None]:
    if callable(data):
        return data
    content = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    return lambda handle: handle.write(content)


class _Unseekable:
    """A file that can only be written to, in order (see the module's notes)."""

    def __init__(self, write: Callable[[bytes], int | None]) -> None:
        self._write = write

    def write(self, content) -> int:
        content = bytes(content)
        self._write(content)
        return len(content)

    def flush(self) -> None:
        pass

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:  # matplotlib's PDF writer, zipfile: then they buffer or stream
        raise io.UnsupportedOperation("an output stream has no position")

    def seek(self, *args) -> int:
        raise io.UnsupportedOperation("an output stream cannot seek")

    def writable(self) -> bool:
        return True
