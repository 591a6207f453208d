"""Output files written whole or not at all.

:func:`write_file` writes a temporary file beside the target and renames it
over the target (``os.replace``), so an interrupted write never leaves a
truncated file under the real name.  The rest follows from what the path
names:

- a symbolic link is followed: the file it points to is replaced, the link
  stays;
- a path naming an open file descriptor (``/dev/stdout``, ``/dev/fd/3``,
  ``/proc/self/fd/3``), or naming the file that standard output or error
  is open on, is written to that descriptor, after what Python's streams
  on it hold.  It goes to the descriptor itself, so a capture of
  ``sys.stdout`` (``contextlib.redirect_stdout``, pytest's ``capsys``)
  does not see it;
- any other existing non-regular file (``/dev/null``, a named pipe) is
  opened and written in place, never renamed over.

These last two cannot be replaced atomically.  Their content is made whole
first, in a spool file (memory up to :data:`SPOOL_IN_MEMORY`, then an
anonymous temporary file), and then sent in order: a writer that seeks back
to fill in a header (a zip archive, a TIFF image) gets a file it can seek,
a failed writer sends nothing, and a file opened for appending is not
garbled.

:func:`check_writable` finds, before any long computation, the paths that
:func:`write_file` would fail on.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import select
import stat
import sys
import tempfile
from typing import IO, Callable

try:
    import fcntl
except ImportError:  # not on Windows
    fcntl = None

#: The temporary file's name: a random part, so no two writers share one.
TEMPORARY_NAME = ".contractnet-{token}.tmp"
#: Content for a descriptor or device is held in memory up to this size, then
#: in an anonymous temporary file.
SPOOL_IN_MEMORY = 1 << 20
SEND_CHUNK = 1 << 20


def write_file(path: str | os.PathLike, data: bytes | str | Callable[[IO[bytes]], None]
               ) -> None:
    """Write ``data`` to ``path``: a regular file whole or not at all.

    Parameters
    ----------
    path : str, bytes or PathLike
        The target (see the module's notes on links, streams and devices).
        A file it replaces keeps its permission bits (not its owner: the
        new file is this process's); a new one gets ``0o666`` less the umask.
    data : bytes (or another buffer), str or callable
        The content (text is written as UTF-8), or a function that writes
        it to the binary file object it is given.

    Raises
    ------
    ValueError
        If the path is empty, not a file name, a directory, a socket, in a
        missing directory, or a file descriptor not open for writing.
    TypeError
        If ``data`` is none of these (nothing is written).
    OSError
        If writing fails; a regular file is then left as it was, with no
        temporary file beside it.
    """
    write = _writer(data)
    kind, target = _destination(path)
    if kind != "file":  # made whole first, in a spool file, then sent in order
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
            write(spool)
            spool.seek(0)
            if kind == "stream":
                _flush_streams_on(target)
                _send(spool, target)
            else:
                with open(target, "wb", buffering=0) as handle:
                    _send(spool, handle.fileno())
        return
    _check_name_length(target)  # else found only by the final rename, after the writing
    kept = stat.S_IMODE(os.stat(target).st_mode) if os.path.isfile(target) else None
    # created here, never an existing file, and no more open than the file it replaces
    mode = 0o666 if kept is None else kept & 0o777
    tmp = _temporary_name(target)
    handle = None
    replaced = False
    try:
        try:
            handle = open(tmp, "xb", opener=lambda name, flags: os.open(name, flags, mode))
        except OSError as exc:  # named by the file asked for, not the temporary one
            raise type(exc)(exc.errno, f"{exc.strerror} (creating a temporary file beside "
                                       f"it, to write it whole)", os.fspath(path)) from None
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
    _check_name_length(target)  # the probe's own name is short: it cannot tell
    probe = _temporary_name(target)
    try:  # the file is written beside its target, then renamed over it
        with open(probe, "xb"):
            pass
    except OSError as exc:
        raise ValueError(f"cannot write {os.fspath(path)!r}: no file can be created in "
                         f"{os.path.dirname(target)!r} ({exc.strerror or exc})") from None
    try:
        os.remove(probe)
    except OSError as exc:
        raise ValueError(f"cannot write {os.fspath(path)!r}: a trial file beside it could "
                         f"not be removed ({exc.strerror or exc})") from None
    if not _may_replace(target):
        raise ValueError(f"cannot write {os.fspath(path)!r}: another user owns it, in a "
                         "directory where only a file's owner may replace it")


def _check_name_length(target: str) -> None:
    """Refuse a file name longer than its directory allows (``NAME_MAX``),
    which only the final rename would otherwise find out."""
    if os.path.lexists(target):
        return
    folder, name = os.path.split(target)
    try:
        longest = os.pathconf(folder or os.curdir, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # not known here (or not POSIX)
        return
    length = len(os.fsencode(name))
    if longest > 0 and length > longest:
        raise ValueError(f"cannot write {target!r}: its file name is {length} bytes long, "
                         f"more than the {longest} its directory allows")


def replaced_file(path: str | os.PathLike) -> str | None:
    """The regular file :func:`write_file` would replace at ``path`` (links
    followed), or None when it writes in place (a descriptor, a device)."""
    kind, target = _destination(path)
    return target if kind == "file" else None


def json_text(value, indent: int | None = None) -> str:
    """``value`` as JSON, every nan or infinite float value (inside dicts,
    lists and tuples too) written as ``null``: JSON has neither."""
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
    path = os.fsdecode(os.fspath(path))
    if not path:
        raise ValueError("an output path is empty: give a file name")
    try:
        return _classify(path)
    except OSError as exc:  # a working directory that was removed, say
        raise ValueError(f"cannot write {path!r}: {exc.strerror or exc}") from None


def _classify(path: str):
    fd = _stream_on(path)
    if fd is not None:
        return "stream", fd
    if os.path.isdir(path):
        raise ValueError(f"cannot write {path!r}: it is a directory")
    if os.path.exists(path) and not os.path.isfile(path):  # a device, a pipe
        if stat.S_ISSOCK(os.stat(path).st_mode):
            raise ValueError(f"cannot write {path!r}: it is a socket")
        return "special", path
    # as the system reads the path: "name/", "name/." and "missing/../new" are no files
    if os.path.basename(path) in ("", os.curdir, os.pardir):
        raise ValueError(f"cannot write {path!r}: it does not end in a file name")
    written = os.path.dirname(path) or os.curdir
    if not os.path.isdir(written):
        what = "is not a directory" if os.path.exists(written) else "does not exist"
        raise ValueError(f"cannot write {path!r}: {written!r} {what}")
    target = os.path.realpath(path)
    if os.path.islink(target):
        raise ValueError(f"cannot write {path!r}: its symbolic links form a loop")
    directory = os.path.dirname(target)
    if not os.path.isdir(directory):
        raise ValueError(f"cannot write {path!r}: {directory!r} does not exist")
    if os.path.isdir(target):
        raise ValueError(f"cannot write {path!r}: it is a directory")
    return "file", target


def _may_replace(target: str) -> bool:
    """Whether this process may rename a file over ``target``: in a sticky
    directory (``/tmp``) only the owner of the file or of the directory can."""
    uid = os.geteuid()
    if not os.path.exists(target) or uid == 0:
        return True
    folder = os.stat(os.path.dirname(target))
    return not folder.st_mode & stat.S_ISVTX or uid in (folder.st_uid, os.stat(target).st_uid)


def _stream_on(path: str) -> int | None:
    """The file descriptor ``path`` writes to: one it names (``/dev/stdout``,
    ``/dev/fd/3``), else 1 or 2 when open for writing on the file ``path``
    names, whatever ``sys.stdout`` is."""
    fd = _descriptor_named(path)
    if fd is not None:
        if not _open_for_writing(fd):
            raise ValueError(f"cannot write {path!r}: it names file descriptor {fd}, "
                             "which is not open for writing")
        return fd
    try:
        st = os.stat(path)
    except OSError:
        return None
    for fd in (1, 2):
        if _open_for_writing(fd):
            opened = os.fstat(fd)
            if (opened.st_dev, opened.st_ino) == (st.st_dev, st.st_ino):
                return fd
    return None


#: A path naming a file descriptor of this process, ``pid`` given for ``/proc/<pid>``.
_DESCRIPTOR = re.compile(r"/(?:dev|proc/(?P<pid>self|\d+))/fd/(?P<fd>\d+)")


def _descriptor_named(path: str) -> int | None:
    """The descriptor ``path`` names, through links (``/dev/stdout`` is a link
    to ``/proc/self/fd/1``); None for a path that names none."""
    for _ in range(40):  # the system's own limit on links in a row
        path = os.path.normpath(os.path.join(os.getcwd(), path) if not os.path.isabs(path)
                                else path)
        found = _DESCRIPTOR.fullmatch(path)
        if found:
            pid = found.group("pid")
            if pid is None or pid == "self" or int(pid) == os.getpid():
                return int(found.group("fd"))
            return None
        if not os.path.islink(path):
            return None
        path = os.path.join(os.path.dirname(path), os.readlink(path))
    return None


def _open_for_writing(fd: int) -> bool:
    try:
        if fcntl is None:  # where the access mode cannot be read: open is enough
            return os.fstat(fd) is not None
        return fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE != os.O_RDONLY
    except OSError:  # closed
        return False


def _flush_streams_on(fd: int) -> None:
    """Flush Python's streams on ``fd``, so that what they hold comes first."""
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None and stream.fileno() == fd:
                stream.flush()
        except (AttributeError, OSError, ValueError):  # no file behind it, or closed
            continue


def _send(spool: IO[bytes], fd: int) -> None:
    """All of ``spool``, from where it stands, written to ``fd`` in order,
    waiting where ``fd`` does not block."""
    for chunk in iter(lambda: spool.read(SEND_CHUNK), b""):
        view = memoryview(chunk)
        while view:
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                select.select([], [fd], [])


def _temporary_name(target: str) -> str:
    """A new name beside ``target``, short whatever the length of its own."""
    return os.path.join(os.path.dirname(target),
                        TEMPORARY_NAME.format(token=secrets.token_hex(8)))


def _writer(data) -> Callable[[IO[bytes]], None]:
    if callable(data):
        return data
    if isinstance(data, str):
        content = data.encode("utf-8")
    else:  # any buffer (bytes, bytearray, an array's memory); bytes(3) would be three zeros
        try:
            content = bytes(memoryview(data))
        except TypeError:
            raise TypeError(f"the content to write must be bytes (or another buffer), str "
                            f"or a function writing to a file, got {type(data).__name__}"
                            ) from None
    return lambda handle: handle.write(content)
