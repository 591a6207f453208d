"""Output files written whole or not at all.

:func:`write_file` writes a temporary file beside the target and renames it
over the target (``os.replace``), so an interrupted write never leaves a
truncated file under the real name.  The rest follows from what the path
names:

- a symbolic link is followed: the file it points to is replaced, the link
  stays;
- the file a standard stream is open on (``/dev/stdout``, whatever it is
  redirected to) is written through that stream, after what the stream
  already holds;
- any other existing non-regular file (``/dev/null``, a named pipe) is
  opened and written in place, never renamed over.

:func:`check_writable` finds, before any long computation, the paths that
:func:`write_file` would fail on.
"""
from __future__ import annotations

import contextlib
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
    if kind == "stream":
        target.flush()
        raw = getattr(target, "buffer", None)
        if raw is None:  # a text-only stream
            write(_TextSink(target))
        else:
            write(raw)
            raw.flush()
        return
    if kind == "special":
        with open(target, "wb") as handle:
            write(handle)
        return
    tmp = _temporary_name(target)
    handle = open(tmp, "xb")  # created here, never an existing file
    replaced = False
    try:
        with handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())  # on disk before the rename makes it the file
        if os.path.isfile(target):  # a replaced file keeps its permissions
            os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))
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
    stream)``, ``("special", path)`` or ``("file", target)``, where
    ``target`` is the regular file to replace (links followed)."""
    path = os.fspath(path)
    if not path:
        raise ValueError("an output path is empty: give a file name")
    stream = _stream_on(path)
    if stream is not None:
        return "stream", stream
    if os.path.isdir(path):
        raise ValueError(f"cannot write {path!r}: it is a directory")
    if os.path.exists(path) and not os.path.isfile(path):  # a device, a pipe
        return "special", path
    target = os.path.realpath(path)
    directory = os.path.dirname(target)
    if not os.path.isdir(directory):
        raise ValueError(f"cannot write {path!r}: directory {directory!r} does not exist")
    if os.path.isdir(target):
        raise ValueError(f"cannot write {path!r}: it is a directory")
    return "file", target


def _stream_on(path: str):
    """``sys.stdout`` or ``sys.stderr`` when it is open on the file ``path``
    names (links followed, ``/dev/stdout`` included)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    for stream in (sys.stdout, sys.stderr):
        try:
            opened = os.fstat(stream.fileno())
        except (AttributeError, OSError, ValueError):  # no file behind it (captured)
            continue
        if (opened.st_dev, opened.st_ino) == (st.st_dev, st.st_ino):
            return stream
    return None


def _temporary_name(target: str) -> str:
    """A new name beside ``target``, short whatever the length of its own."""
    return os.path.join(os.path.dirname(target),
                        TEMPORARY_NAME.format(token=secrets.token_hex(8)))


def _writer(data) -> Callable[[IO[bytes]], None]:
    if callable(data):
        return data
    content = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    return lambda handle: handle.write(content)


class _TextSink:
    """A binary file's ``write`` on a text stream (one with no ``buffer``)."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, content: bytes) -> int:
        self.stream.write(content.decode("utf-8", errors="replace"))
        return len(content)
