"""Save and load parameter dicts as ``.npz``: atomic writes, no pickles.

A save writes a temporary file next to the target and renames it over the
target (``os.replace``), so a crash mid-write never leaves a truncated file
under the real name.  Arrays are written with ``allow_pickle=False`` and
read with ``allow_pickle=False``, so loading a file can never run code.
"""
from __future__ import annotations

import os
import tempfile
import zipfile
from typing import Mapping

import numpy as np


def save_parameters(params: Mapping[str, np.ndarray], path: str | os.PathLike) -> None:
    """Write ``params`` to ``path`` (exactly that name) as an ``.npz`` archive.

    Parameters
    ----------
    params : mapping of str to ndarray
        Numeric arrays by name (dotted names are fine).
    path : str or PathLike
        Target file; its directory must exist.

    Raises
    ------
    ValueError
        If a name is empty or an array is not numeric; nothing is written.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "w.npz")
    >>> save_parameters({"0.weight": np.ones((2, 2), np.float32)}, path)
    >>> load_parameters(path)["0.weight"].dtype
    dtype('float32')
    """
    arrays = {}
    for name, array in params.items():
        array = np.asarray(array)
        if not isinstance(name, str) or not name:
            raise ValueError(f"parameter names must be non-empty strings, got {name!r}")
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
            raise ValueError(f"parameter {name!r} has non-numeric dtype {array.dtype}")
        arrays[name] = array
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                               dir=directory)
    replaced = False
    try:
        with os.fdopen(fd, "wb") as f:
            _write_npz(f, arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        replaced = True
    finally:
        if not replaced:
            os.unlink(tmp)


def _write_npz(f, arrays: Mapping[str, np.ndarray]) -> None:
    # Written member by member (as np.savez does) so that any name works,
    # including ones np.savez would take as its own keyword arguments.
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in arrays.items():
            with archive.open(name + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array),
                                          allow_pickle=False)


def load_parameters(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read an ``.npz`` archive written by :func:`save_parameters`.

    Returns
    -------
    dict of str to ndarray

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not an ``.npz`` archive or holds pickled objects.
    """
    path = os.fspath(path)
    try:
        data = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"{path!r} is not a readable .npz archive: {exc}") from exc
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{path!r} is a single .npy array, not an .npz archive of parameters")
    with data:
        try:
            return {name: data[name] for name in data.files}
        except (zipfile.BadZipFile, EOFError) as exc:
            raise ValueError(f"{path!r} is a damaged .npz archive: {exc}") from exc
