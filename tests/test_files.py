"""Output files: written whole or not at all, links followed, streams and
devices written in place (contractnet.files)."""
from __future__ import annotations

import json
import math
import os
import stat
import subprocess
import sys

import pytest

from contractnet import files
from contractnet.files import check_writable, json_text, write_file


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


@pytest.mark.parametrize("redirect", ["file", "pipe"])
def test_dev_stdout_is_written_through_the_stream_after_what_it_holds(tmp_path,
                                                                      redirect) -> None:
    if not os.path.exists("/dev/stdout"):
        pytest.skip("no /dev/stdout here")
    code = ("import sys; from contractnet.files import write_file, check_writable\n"
            "print('before', flush=False); check_writable('/dev/stdout')\n"
            "write_file('/dev/stdout', '{\"json\": 1}\\n'); print('after')\n")
    if redirect == "file":
        out = tmp_path / "out.txt"
        with open(out, "w") as handle:
            subprocess.run([sys.executable, "-c", code], stdout=handle, check=True)
        text = out.read_text()
        assert os.listdir(tmp_path) == ["out.txt"]
    else:
        text = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE,
                              check=True, text=True).stdout
    assert text == 'before\n{"json": 1}\nafter\n'


def test_bad_paths_are_refused_before_anything_is_written(tmp_path) -> None:
    with pytest.raises(ValueError, match="an output path is empty"):
        check_writable("")
    with pytest.raises(ValueError, match="it is a directory"):
        check_writable(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        write_file(tmp_path / "no" / "r.md", "text")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ValueError, match="cannot write .*Permission denied"):
            check_writable(locked / "r.md")
    assert sorted(p.name for p in tmp_path.iterdir()) in ([], ["locked"])


def test_json_text_writes_null_for_nan_and_infinity_at_any_depth() -> None:
    value = {"a": math.nan, "b": [1.0, math.inf, (-math.inf, 2)], "c": {"d": [math.nan]}}
    assert json.loads(json_text(value)) == {"a": None, "b": [1.0, None, [None, 2]],
                                            "c": {"d": [None]}}
