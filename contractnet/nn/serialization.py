"""Save and load parameter dicts as ``.npz``: atomic writes, no pickles.

A save writes a temporary file next to the target and renames it over the
target (:func:`contractnet.files.write_file`), so a crash mid-write never
leaves a truncated file under the real name.  Arrays are written and read
with ``allow_pickle=False``, so loading a file can never run code.

Each array is the archive member ``name + ".npy"``, as :func:`numpy.savez`
writes it, and loading reads the members by their exact names (not through
:class:`numpy.lib.npyio.NpzFile`, whose lookup takes ``"a.npy"`` to mean the
member of ``"a"``), so every name comes back as it was saved.
"""
from __future__ import annotations

import lzma
import os
import tokenize
import zipfile
import zlib
from typing import Mapping

import numpy as np

from ..files import write_file

MEMBER_SUFFIX = ".npy"
#: What reading a damaged archive member raises: a bad header (numpy parses
#: it as Python), a compressed stream that does not decode (bz2 raises
#: OSError), a CRC mismatch, an unknown compression.
_DAMAGED_MEMBER_ERRORS = (ValueError, EOFError, OSError, SyntaxError, tokenize.TokenError,
                          zlib.error, lzma.LZMAError, zipfile.BadZipFile, NotImplementedError)
#: A zip member's flag bit for encryption (zipfile asks for a password).
_ENCRYPTED = 0x1


def save_parameters(params: Mapping[str, np.ndarray], path: str | os.PathLike) -> None:
    """Write ``params`` to ``path`` (exactly that name) as an ``.npz`` archive.

    Parameters
    ----------
    params : mapping of str to ndarray
        Numeric arrays by name: any non-empty string that a zip member name
        can hold (UTF-8, no NUL character, at most 65,531 bytes).
    path : str, bytes or PathLike
        Target file; its directory must exist.  A new file gets the usual
        permissions (``0o666`` less the umask); a file it replaces keeps its
        own; a symbolic link is followed, and a device (``/dev/null``) is
        written in place (:func:`contractnet.files.write_file`).

    Raises
    ------
    ValueError
        If a name is not such a string, or an array is not numeric, or the
        path is empty, a directory or in a missing directory; nothing is
        written.
    OSError
        If writing fails; the file it would replace is left as it was.

    Examples
    --------
    >>> import os, tempfile, numpy as np
    >>> from contractnet.nn import load_parameters, save_parameters
    >>> path = os.path.join(tempfile.mkdtemp(), "w.npz")
    >>> save_parameters({"0.weight": np.ones((2, 2), np.float32)}, path)
    >>> load_parameters(path)["0.weight"].dtype
    dtype('float32')
    """
    if not isinstance(params, Mapping):
        raise ValueError(f"params must be a dict of name -> array, got {type(params).__name__}")
    arrays = {}
    for name, array in params.items():
        if not isinstance(name, str) or not name or "\0" in name:
            raise ValueError(f"parameter names must be non-empty strings without a NUL "
                             f"character, got {name!r}")
        try:  # a zip member name is UTF-8, at most 65535 bytes with its suffix
            fits = len((name + MEMBER_SUFFIX).encode("utf-8")) <= 0xFFFF
        except UnicodeEncodeError:
            fits = False
        if not fits:
            shown = repr(name[:40]) + ("..." if len(name) > 40 else "")
            raise ValueError(f"parameter name {shown} is not UTF-8 text of at most "
                             f"65,531 bytes, which an .npz member name must be")
        try:
            array = np.asarray(array)
        except (ValueError, TypeError) as exc:  # a ragged list, say
            raise ValueError(f"parameter {name!r} is not an array: {exc}") from None
        if not _is_numeric(array.dtype):
            raise ValueError(f"parameter {name!r} has non-numeric dtype {array.dtype}")
        arrays[name] = array
    write_file(path, lambda handle: _write_npz(handle, arrays))


def _write_npz(f, arrays: Mapping[str, np.ndarray]) -> None:
    # Written member by member (as np.savez does) so that any name works,
    # including ones np.savez would take as its own keyword arguments.
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in arrays.items():
            with archive.open(name + MEMBER_SUFFIX, "w", force_zip64=True) as member:
                # C order (np.ascontiguousarray would make a 0-d array 1-d)
                np.lib.format.write_array(member, np.require(array, requirements="C"),
                                          allow_pickle=False)


def load_parameters(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read an ``.npz`` archive written by :func:`save_parameters` (or by
    :func:`numpy.savez` with numeric arrays).

    Parameters
    ----------
    path : str, bytes or PathLike
        The archive, read under exactly that name.

    Returns
    -------
    dict of str to ndarray
        One entry per member ``name.npy``, keyed by ``name``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    TypeError
        If ``path`` is not a str, bytes or PathLike.
    ValueError
        If ``path`` is a directory, or the file is not an ``.npz`` archive,
        is damaged, holds a member that is not an ``.npy`` array or a name
        twice, holds pickled objects, or holds an array that is not
        numeric (what :func:`save_parameters` refuses to write).
    """
    path = os.fsdecode(os.fspath(path))  # zipfile takes anything but a str for a file object
    if os.path.isdir(path):
        raise ValueError(f"{path!r} is a directory, not an .npz archive of parameters")
    try:
        with zipfile.ZipFile(path) as archive:
            listed = _listed_members(path)
            if listed is not None and listed != len(archive.infolist()):
                raise ValueError(f"{path!r} is a damaged .npz archive: its end record lists "
                                 f"{listed} members but its directory holds "
                                 f"{len(archive.infolist())}")
            return _read_npz(archive, path)
    except zipfile.BadZipFile as exc:
        with open(path, "rb") as f:
            single = f.read(len(np.lib.format.MAGIC_PREFIX)) == np.lib.format.MAGIC_PREFIX
        if single:
            raise ValueError(f"{path!r} is a single .npy array, not an .npz archive of "
                             f"parameters") from exc
        raise ValueError(f"{path!r} is not a readable .npz archive: {exc}") from exc
    except (EOFError, NotImplementedError) as exc:  # the central directory
        raise ValueError(f"{path!r} is a damaged or unsupported .npz archive: {exc}") from exc


#: The zip end-of-central-directory record: its signature, its least size
#: (no comment), and where it holds the total count of members.
_END_SIGNATURE, _END_SIZE, _END_TOTAL = b"PK\x05\x06", 22, slice(10, 12)


def _listed_members(path: str) -> int | None:
    """How many members the archive's end record says it has; None where it
    does not say (a zip64 archive, or no record found).

    :mod:`zipfile` trusts the central directory: a damaged comment length in
    one of its entries can swallow the entries after it, which would then
    be silently missing.  The end record's count catches that.
    """
    with open(path, "rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        tail = min(size, _END_SIZE + 0xFFFF)  # the record, and a comment of at most 64 KiB
        handle.seek(size - tail)
        data = handle.read(tail)
    at = data.rfind(_END_SIGNATURE)
    if at < 0 or len(data) - at < _END_SIZE:
        return None
    total = int.from_bytes(data[at:][_END_TOTAL], "little")
    return None if total == 0xFFFF else total  # 0xFFFF: the count is in a zip64 record


def _read_npz(archive: zipfile.ZipFile, path: str) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for member in archive.namelist():
        name = member[:-len(MEMBER_SUFFIX)]
        if not member.endswith(MEMBER_SUFFIX) or not name:
            raise ValueError(f"{path!r} holds the member {member!r}, which is not a "
                             f"'<name>{MEMBER_SUFFIX}' array: not an archive of parameters")
        if name in arrays:
            raise ValueError(f"{path!r} holds the parameter {name!r} twice")
        if archive.getinfo(member).flag_bits & _ENCRYPTED:  # a password, or a damaged bit
            raise ValueError(f"{path!r}: member {member!r} cannot be read: it is marked as "
                             f"encrypted (parameters are never saved so; is the file damaged?)")
        try:
            with archive.open(member) as f:
                arrays[name] = np.lib.format.read_array(f, allow_pickle=False)
                # read to its end, where zipfile checks the CRC: a damaged header may
                # claim fewer bytes than the member holds (a smaller shape)
                if f.read(1):
                    raise ValueError("it holds more bytes than its array header claims")
        except _DAMAGED_MEMBER_ERRORS as exc:  # not an .npy array, pickled, damaged
            raise ValueError(f"{path!r}: member {member!r} cannot be read: "
                             f"{type(exc).__name__}: {exc}") from exc
        except MemoryError as exc:  # its header claims more than this machine holds
            raise ValueError(f"{path!r}: member {member!r} is too large to load: "
                             f"{exc}") from exc
        if not _is_numeric(arrays[name].dtype):
            raise ValueError(f"{path!r}: parameter {name!r} has non-numeric dtype "
                             f"{arrays[name].dtype}")
    return arrays


def _is_numeric(dtype: np.dtype) -> bool:
    """What a parameter file may hold: numbers and bools."""
    return np.issubdtype(dtype, np.number) or dtype == np.bool_
