"""Output files written whole or not at all.

:func:`write_file` writes a temporary file beside the target and renames it
over the target (``os.replace``), so an interrupted write never leaves a
truncated file under the real name.  The rest follows from what the path
names:

- a symbolic link is followed: the file it points to is replaced, the link
  stays;
- the file standard output or error (file descriptor 1 or 2) is open on
  (``/dev/stdout``, wherever it is redirected) is written to that
  descriptor, after what Python's streams on it hold;
- any other existing non-regular file (``/dev/null``, a named pipe) is
  opened and written in place, never renamed over.

Those last two get the content in one piece, made in memory first: a
writer that seeks back (a zip archive) would otherwise garble a stream
opened for appending.

:func:`check_writable` finds, before any long computation, the paths that
:func:`write_file` would fail on.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import secrets
import stat
import sys
from typing import IO, Callable

#: The temporary file's name: a random part, so no two writers share one.
TEMPORARY_NAME = ".contractnet-{token}.tmp"


def write_file(path: str | os.PathLike, data: bytes | str | Callable[[IO[bytes]], None]
               ) -> None:
    """Write ``data`` to ``path``, whole or not at all.

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
        If the path is empty, a directory, or in a missing directory.
    OSError
        If writing fails; no temporary file is left behind.
    """
    kind, target = _destination(path)
    write = _writer(data)
    if kind != "file":  # whole in memory first: a stream or device is written once, in order
        buffer = io.BytesIO()
        write(buffer)
        content = buffer.getvalue()
        if kind == "stream":
            _write_to_fd(target, content)
        else:
            with open(target, "wb") as handle:
                handle.write(content)
        return
    tmp = _temporary_name(target)
    # created here, never an existing file, and no more open than the file it replaces
    kept = stat.S_IMODE(os.stat(target).st_mode) if os.path.isfile(target) else None
    handle = os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                               0o666 if kept is None else kept & 0o777), "wb")
    replaced = False
    try:
        with handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())  # on disk before the rename makes it the file
        if kept is not None:  # a replaced file keeps its permissions
            os.chmod(tmp, kept)
        os.replace(tmp, target)
        replaced = True
    finally:
        if not replaced:
            with contextlib.suppress(OSError):
                os.remove(tmp)


def check_writable(path: str | os.PathLike) -> None:
    """Fail early when :func:`write_file` could not write ``path``.

    Creates and removes a temporary file beside the target, so a directory
    that is read-only or not a place for files (``/proc``) is found out
    now, not after a long run; a stream, device or pipe must be writable.

    Raises
    ------
    ValueError
        Naming the path and what is wrong with it.
    """
    kind, target = _destination(path)
    if kind == "stream":
        return
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
    if path.endswith(("/", os.sep)):
        raise ValueError(f"cannot write {path!r}: a file name cannot end with a separator")
    target = os.path.realpath(path)
    if os.path.islink(target):
        raise ValueError(f"cannot write {path!r}: its symbolic links form a loop")
    directory = os.path.dirname(target)
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
    """File descriptor 1 or 2 when it is open on the file ``path`` names
    (links followed, ``/dev/stdout`` included), whatever ``sys.stdout`` is."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    for fd in (1, 2):
        try:
            opened = os.fstat(fd)
        except OSError:  # closed
            continue
        if (opened.st_dev, opened.st_ino) == (st.st_dev, st.st_ino):
            return fd
    return None


def _write_to_fd(fd: int, content: bytes) -> None:
    """``content`` written to file descriptor ``fd`` after what the Python
    streams on it hold (so the output keeps its order)."""
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None and stream.fileno() == fd:
                stream.flush()
        except (AttributeError, OSError, ValueError):  # no file behind it, or closed
            continue
    view = memoryview(content)
    while view:
        view = view[os.write(fd, view):]


def _temporary_name(target: str) -> str:
    """A new name beside ``target``, short whatever the length of its own."""
    return os.path.join(os.path.dirname(target),
                        TEMPORARY_NAME.format(token=secrets.token_hex(8)))


def _writer(data) -> Callable[[IO[bytes]], None]:
    if callable(data):
        return data
    content = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    return lambda handle: handle.write(content)
