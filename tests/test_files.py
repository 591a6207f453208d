"""Output files: written whole or not at all, links followed, streams and
devices written in place (contractnet.files)."""
from __future__ import annotations

import json
import math
import os
import stat
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from contractnet import files
from contractnet.files import check_writable, json_text, write_file

needs_dev_stdout = pytest.mark.skipif(not os.path.exists("/dev/stdout"),
                                      reason="no /dev/stdout here")


def run_python(code: str, cwd, **options) -> subprocess.CompletedProcess:
    """``python -c code`` in a child process, in ``cwd``."""
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, **options)


def test_a_file_is_replaced_whole_and_keeps_its_mode(tmp_path) -> None:
    path = tmp_path / "r.md"
    write_file(path, "first")
    os.chmod(path, 0o640)
    write_file(path, "second")
    assert path.read_text() == "second"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert os.listdir(tmp_path) == ["r.md"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path) -> None:
    path = tmp_path / "r.md"
    path.write_text("old")

    def fail_midway(handle) -> None:
        handle.write(b"half")
        raise OSError(28, "No space left on device")
    with pytest.raises(OSError, match="No space"):
        write_file(path, fail_midway)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["r.md"]


def test_a_failed_rename_leaves_no_temporary_file(tmp_path, monkeypatch) -> None:
    def refuse(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(files.os, "replace", refuse)
    with pytest.raises(OSError, match="No space"):
        write_file(tmp_path / "r.md", "text")
    assert os.listdir(tmp_path) == []


def test_temporary_names_are_short_and_never_shared(tmp_path) -> None:
    target = str(tmp_path / ("r" * 250))
    names = {files._temporary_name(target) for _ in range(100)}
    assert len(names) == 100
    assert all(len(os.path.basename(n)) < 40 for n in names)
    write_file(target, "a long name that fits is written")
    assert os.listdir(tmp_path) == ["r" * 250]


def test_a_link_is_followed_and_its_target_replaced(tmp_path) -> None:
    target = tmp_path / "target.json"
    target.write_text("old")
    os.chmod(target, 0o600)
    link = tmp_path / "link.json"
    link.symlink_to(target)
    write_file(link, "new")
    assert link.is_symlink() and target.read_text() == "new"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "target.json"]


def test_a_dangling_link_creates_its_target(tmp_path) -> None:
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "made.json")
    check_writable(link)
    write_file(link, "made")
    assert (tmp_path / "made.json").read_text() == "made" and link.is_symlink()
    missing = tmp_path / "to-nowhere.json"
    missing.symlink_to(tmp_path / "no" / "such" / "file.json")
    with pytest.raises(ValueError, match="does not exist"):
        check_writable(missing)


def test_a_device_is_written_in_place_never_renamed_over(monkeypatch) -> None:
    def refuse(src, dst):
        raise AssertionError(f"renamed {src} over {dst}")
    monkeypatch.setattr(files.os, "replace", refuse)
    check_writable(os.devnull)
    write_file(os.devnull, "discarded")
    assert not os.path.isfile(os.devnull)


@needs_dev_stdout
@pytest.mark.parametrize("redirect", ["file", "pipe"])
def test_dev_stdout_is_written_through_the_stream_after_what_it_holds(tmp_path,
                                                                      redirect) -> None:
    code = ("import sys; from contractnet.files import write_file, check_writable\n"
            "print('before', flush=False); check_writable('/dev/stdout')\n"
            "write_file('/dev/stdout', '{\"json\": 1}\\n'); print('after')\n")
    if redirect == "file":
        out = tmp_path / "out.txt"
        with open(out, "w") as handle:
            run_python(code, tmp_path, stdout=handle, check=True)
        text = out.read_text()
        assert os.listdir(tmp_path) == ["out.txt"]
    else:
        text = run_python(code, tmp_path, stdout=subprocess.PIPE, check=True, text=True).stdout
    assert text == 'before\n{"json": 1}\nafter\n'


@needs_dev_stdout
def test_dev_stdout_is_fd_1_even_when_sys_stdout_is_redirected(tmp_path) -> None:
    code = ("import contextlib, io, sys; from contractnet.files import write_file\n"
            "sys.__stdout__.write('before\\n')\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    write_file('/dev/stdout', 'DATA\\n')\n"
            "print('after')\n")
    out = tmp_path / "out.txt"
    with open(out, "w") as handle:
        run_python(code, tmp_path, stdout=handle, check=True)
    assert out.read_text() == "before\nDATA\nafter\n"


@needs_dev_stdout
def test_an_archive_saved_to_stdout_appended_to_a_file_is_whole(tmp_path) -> None:
    code = ("import numpy as np; from contractnet import nn\n"
            "nn.save_parameters({'w': np.arange(3.0), 'b': np.ones(2)}, '/dev/stdout')\n")
    out = tmp_path / "w.npz"
    with open(out, "ab") as handle:  # as '>>' opens it: every write goes to the end
        run_python(code, tmp_path, stdout=handle, check=True)
    from contractnet import nn
    back = nn.load_parameters(out)
    assert back["w"].tolist() == [0.0, 1.0, 2.0] and back["b"].tolist() == [1.0, 1.0]


def test_a_temporary_file_is_no_more_open_than_the_file_it_replaces(tmp_path) -> None:
    path = tmp_path / "secret.json"
    path.write_text("old")
    os.chmod(path, 0o600)
    seen = []
    write_file(path, lambda handle: seen.append(stat.S_IMODE(os.fstat(handle.fileno()).st_mode)))
    assert seen and seen[0] & ~0o600 == 0
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_a_file_another_user_owns_in_a_sticky_directory_is_refused_early(tmp_path,
                                                                        monkeypatch) -> None:
    sticky = tmp_path / "shared"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    (sticky / "theirs.json").write_text("theirs")
    other = os.stat(sticky).st_uid + 1  # owns neither the file nor the directory
    monkeypatch.setattr(files.os, "geteuid", lambda: other)
    with pytest.raises(ValueError, match="another user owns it"):
        check_writable(sticky / "theirs.json")
    check_writable(sticky / "new.json")  # a new file is fine
    os.chmod(sticky, 0o777)
    check_writable(sticky / "theirs.json")  # not sticky: the directory's write right is enough


def test_an_archive_for_a_device_is_not_held_in_memory() -> None:
    from contractnet import nn
    params = {"w": np.zeros(12_000_000)}  # 96 MB; numpy writes it in 16 MB pieces
    tracemalloc.start()
    try:
        nn.save_parameters(params, os.devnull)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 48_000_000  # a piece or two, not the whole


def test_a_failed_writer_sends_nothing_to_a_descriptor(tmp_path) -> None:
    code = ("from contractnet.files import write_file\n"
            "def fail(handle):\n    handle.write(b'half'); raise RuntimeError('stop')\n"
            "try:\n    write_file('/dev/stdout', fail)\n"
            "except RuntimeError:\n    print('refused')\n")
    out = run_python(code, tmp_path, stdout=subprocess.PIPE, check=True, text=True).stdout
    assert out == "refused\n"


def test_a_descriptor_open_only_for_reading_is_no_output_stream(tmp_path) -> None:
    code = ("from contractnet.files import check_writable, write_file\n"
            "check_writable('/dev/null'); write_file('/dev/null', 'x'); print('ok')\n")
    result = run_python(code, tmp_path, stdout=subprocess.PIPE, text=True,
                        stdin=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                        preexec_fn=lambda: os.dup2(os.open(os.devnull, os.O_RDONLY), 2))
    assert result.stdout == "ok\n" and result.returncode == 0


@needs_dev_stdout
def test_a_closed_standard_output_is_named(tmp_path) -> None:
    code = ("import os, sys; from contractnet.files import write_file\n"
            "os.close(1)\n"
            "try:\n    write_file('/dev/stdout', 'x')\n"
            "except ValueError as exc:\n    sys.stderr.write(str(exc))\n")
    result = run_python(code, tmp_path, stderr=subprocess.PIPE, text=True)
    assert "names file descriptor 1, which is not open for writing" in result.stderr
    assert os.listdir(tmp_path) == []


def test_a_failure_opening_the_temporary_file_leaves_nothing(tmp_path, monkeypatch) -> None:
    def broken_open(*args, **kwargs):
        raise MemoryError
    monkeypatch.setattr(files, "open", broken_open, raising=False)
    with pytest.raises(MemoryError):
        write_file(tmp_path / "r.md", "text")
    assert os.listdir(tmp_path) == []


def test_a_temporary_file_that_cannot_be_made_is_reported_by_the_target_name(
        tmp_path, monkeypatch) -> None:
    def refused(name, flags, mode=0o777):
        raise PermissionError(13, "Permission denied", name)
    monkeypatch.setattr(files.os, "open", refused)
    target = tmp_path / "weights.npz"
    with pytest.raises(PermissionError) as info:
        write_file(target, b"data")
    assert info.value.filename == str(target) and ".tmp" not in str(info.value)
    assert "Permission denied" in str(info.value)
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(not os.path.exists("/dev/fd"), reason="no /dev/fd here")
def test_a_descriptor_named_by_path_is_written_after_what_it_holds(tmp_path) -> None:
    log = tmp_path / "log.txt"
    with open(log, "w") as handle:
        handle.write("before\n")
        handle.flush()
        fd = handle.fileno()
        code = (f"from contractnet.files import check_writable, write_file\n"
                f"check_writable('/dev/fd/{fd}'); write_file('/dev/fd/{fd}', 'json\\n')\n")
        run_python(code, tmp_path, pass_fds=(fd,), check=True)
        handle.write("after\n")
    assert log.read_text() == "before\njson\nafter\n"
    assert os.listdir(tmp_path) == ["log.txt"]


def test_a_writer_that_seeks_back_works_on_a_pipe(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    pytest.importorskip("PIL")
    code = ("import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt\n"
            "from contractnet.files import write_file\n"
            "fig = plt.figure(figsize=(1, 1)); plt.plot([1, 2])\n"
            "for fmt in ('tiff', 'pdf'):\n"
            "    write_file('/dev/stdout', lambda h: fig.savefig(h, format=fmt))\n")
    out = run_python(code, tmp_path, stdout=subprocess.PIPE, check=True).stdout
    assert out[:4] in (b"II*\x00", b"MM\x00*") and b"%PDF-" in out and out.rstrip().endswith(
        b"%%EOF")


def test_a_removed_working_directory_or_a_socket_is_a_clear_refusal(tmp_path) -> None:
    import socket
    gone = tmp_path / "gone"
    gone.mkdir()
    here = os.getcwd()
    os.chdir(gone)
    try:
        os.rmdir(gone)
        with pytest.raises(ValueError, match="cannot write 'r.json'"):
            check_writable("r.json")
    finally:
        os.chdir(here)
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "s.sock"))
        with pytest.raises(ValueError, match="it is a socket"):
            check_writable(tmp_path / "s.sock")


def test_a_bytes_path_is_a_path_and_a_file_is_no_directory(tmp_path) -> None:
    write_file(os.fsencode(tmp_path / "b.json"), "{}")
    assert (tmp_path / "b.json").read_text() == "{}"
    with pytest.raises(ValueError, match="b.json' is not a directory"):
        check_writable(tmp_path / "b.json" / "x")


def test_a_file_name_too_long_for_its_directory_is_refused_early(tmp_path) -> None:
    target = tmp_path / ("n" * 300 + ".npz")  # past NAME_MAX (255 bytes on Linux)
    with pytest.raises(ValueError, match="its file name is 304 bytes long, more than the"):
        check_writable(target)
    with pytest.raises(ValueError, match="its file name is 304 bytes long"):
        write_file(target, b"data")
    check_writable(tmp_path / ("n" * 100 + ".npz"))
    assert list(tmp_path.iterdir()) == []


def test_content_that_is_not_bytes_text_or_a_writer_is_refused(tmp_path) -> None:
    for data in (3, [1, 2], None):  # bytes() would make zeros of an int, bytes of a list
        with pytest.raises(TypeError, match=r"must be bytes \(or another buffer\), str or a"):
            write_file(tmp_path / "x.bin", data)
    assert list(tmp_path.iterdir()) == []
    write_file(tmp_path / "x.bin", bytearray(b"ab"))
    write_file(tmp_path / "y.bin", memoryview(b"cd"))
    write_file(tmp_path / "z.bin", np.array([1, 2], np.uint8))  # an array's memory
    assert b"".join((tmp_path / n).read_bytes() for n in ("x.bin", "y.bin", "z.bin")) == \
        b"abcd\x01\x02"


def test_bad_paths_are_refused_before_anything_is_written(tmp_path) -> None:
    with pytest.raises(ValueError, match="an output path is empty"):
        check_writable("")
    with pytest.raises(ValueError, match="it is a directory"):
        check_writable(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        write_file(tmp_path / "no" / "r.md", "text")
    (tmp_path / "t.txt").write_text("kept")
    for name in ("newname/", "t.txt/", "newname/.", "t.txt/.", "t.txt/.."):
        with pytest.raises(ValueError, match="does not end in a file name"):
            write_file(f"{tmp_path}/{name}", "text")
    with pytest.raises(ValueError, match="does not exist"):  # as the system reads it
        check_writable(f"{tmp_path}/missing/../new")
    (tmp_path / "loop-a").symlink_to(tmp_path / "loop-b")
    (tmp_path / "loop-b").symlink_to(tmp_path / "loop-a")
    with pytest.raises(ValueError, match="form a loop"):
        check_writable(tmp_path / "loop-a")
    assert (tmp_path / "loop-a").is_symlink() and (tmp_path / "t.txt").read_text() == "kept"
    for name in ("t.txt", "loop-a", "loop-b"):
        os.remove(tmp_path / name)
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ValueError, match="cannot write .*Permission denied"):
            check_writable(locked / "r.md")
    assert sorted(p.name for p in tmp_path.iterdir()) in ([], ["locked"])


@pytest.mark.skipif(not os.path.isfile("/proc/version"), reason="needs Linux's /proc")
def test_a_file_in_a_directory_that_takes_no_new_file_is_refused_by_that_cause() -> None:
    with pytest.raises(ValueError, match="'/proc/version': no file can be created in '/proc'"):
        check_writable("/proc/version")


def test_json_text_writes_null_for_nan_and_infinity_at_any_depth() -> None:
    value = {"a": math.nan, "b": [1.0, math.inf, (-math.inf, 2)], "c": {"d": [math.nan]}}
    assert json.loads(json_text(value)) == {"a": None, "b": [1.0, None, [None, 2]],
                                            "c": {"d": [None]}}
