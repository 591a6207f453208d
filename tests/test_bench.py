"""Tests for ``contractnet bench`` and its timing, preset, method and report helpers.

Tiny shapes and one repeat throughout; nothing here asserts on a time.
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import math
import os
import pathlib
import sys

import numpy as np
import pytest

import contractnet as cn
from contractnet import bench, bench_timing, cli
from contractnet.bench_lowrank import (CP_SPEC, TUCKER_SPEC, gradient_spec, lowrank_heads,
                                       path_flops)
from contractnet.bench_methods import (CONV_METHODS, HEAD_METHODS, Method, conv_problem,
                                       head_problem)
from contractnet.bench_presets import (PRESETS, QUICK_PRESETS, ConvShape, HeadShape,
                                       parse_shape, select_shapes)
from contractnet.bench_report import plain_table
from contractnet.bench_timing import (OtherLoad, compare_pair, interleave, paired_ratio,
                                      peak_memory, round_order)

TINY_HEAD = "2,2,2,3,4"
TINY_CONV = "2,5,5,2,3,3,3,1,1"


def bench_args(*argv: str) -> argparse.Namespace:
    """Parse ``contractnet bench`` arguments the way the dispatcher does."""
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser.parse_args(list(argv))


def run_bench(*argv: str) -> int:
    return bench.run(bench_args(*argv, "--repeat", "1", "--no-progress"))


# ------------------------------------------------------------------ files
def test_head_json_csv_plot_read_back(tmp_path: pathlib.Path, capsys) -> None:
    out = {ext: tmp_path / f"r.{ext}" for ext in ("json", "csv", "png", "md")}
    status = run_bench("head", "--shape", TINY_HEAD, "--peers", "einsum", "opt_einsum",
                       "--json", str(out["json"]), "--csv", str(out["csv"]),
                       "--plot", str(out["png"]), "--markdown", str(out["md"]))
    assert status == 0
    payload = json.loads(out["json"].read_text())
    records = payload["records"]
    assert {(r["method"], r["pass"]) for r in records} == {
        (m, p) for m in ("flatten", "contractnet", "einsum", "opt_einsum")
        for p in ("forward", "forward+backward")}
    for r in records:
        assert r["status"] == "ok" and r["repeats"] == 1
        assert r["max_abs_diff"] < 1e-5
        assert r["dims"] == "B=2 N=2 M=2 D=3 K=4"
        assert r["cores"] and r["blas"] and r["numpy"] == np.__version__
        assert r["gflop"] == pytest.approx((1 if r["pass"] == "forward" else 3) * 2 * 2 * 12 * 4
                                           / 1e9)
    flatten = [r for r in records if r["method"] == "flatten"]
    assert all(r["ratio"] == 1.0 for r in flatten)
    rows = list(csv.DictReader(out["csv"].open()))
    assert len(rows) == len(records)
    assert {row["method"] for row in rows} == {r["method"] for r in records}
    assert out["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| case | pass | method | GFLOP |" in out["md"].read_text()
    assert "max \\|diff\\|" in out["md"].read_text()
    assert "flatten" in capsys.readouterr().out


def test_conv_records_agree_with_im2col(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "conv.json"
    assert run_bench("conv", "--shape", TINY_CONV, "--peers", "none", "--json", str(path)) == 0
    records = json.loads(path.read_text())["records"]
    assert {r["method"] for r in records} == {"im2col", "contractnet"}
    assert all(r["status"] == "ok" and r["max_abs_diff"] < 1e-5 for r in records)


def test_heads_records_params_and_flops(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "heads.json"
    assert run_bench("heads", "--shape", TINY_HEAD, "--ranks", "2", "--json", str(path)) == 0
    records = json.loads(path.read_text())["records"]
    params = {r["method"]: r["params"] for r in records}
    assert params == {"full": 2 * 2 * 3 * 4, "cp-r2": (2 + 2 + 3 + 4) * 2,
                      "tucker-r2": 2 * 2 + 2 * 2 + 3 * 2 + 2 * 2 * 2 * 4}
    assert all(r["status"] == "ok" for r in records)
    full_forward = next(r for r in records if r["method"] == "full" and r["pass"] == "forward")
    assert full_forward["gflop"] == pytest.approx(2 * 2 * 12 * 4 / 1e9)


def test_ranks_given_twice_are_all_measured(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "heads.json"
    assert run_bench("heads", "--shape", TINY_HEAD, "--ranks", "1", "--ranks", "2", "3",
                     "--peers", "none", "--json", str(path)) == 0
    methods = {r["method"] for r in json.loads(path.read_text())["records"]}
    assert methods == {"full"} | {f"{h}-r{r}" for h in ("cp", "tucker") for r in (1, 2, 3)}
    assert bench_args("heads").ranks is None  # the defaults are not extended
    assert bench._ranks(bench_args("heads")) == list(bench.DEFAULT_RANKS)


@pytest.mark.parametrize("argv, note", [
    (["head", "--ranks", "4"], "--ranks applies to 'bench heads' only: ignored"),
    (["conv", "--shape", TINY_CONV, "--peers", "einsum", "opt_einsum"],
     "--peers einsum opt_einsum: no such method in 'bench conv': ignored"),
    (["heads", "--ranks", "1", "--peers", "torch"],
     "--peers torch: no such method in 'bench heads': ignored"),
    (["head", "--shape", TINY_HEAD, "--shape", TINY_CONV],
     f"--shape {TINY_CONV} is a conv shape, which no 'bench head' case takes: ignored"),
    (["conv", "--shape", TINY_CONV, "--shape", TINY_HEAD],
     f"--shape {TINY_HEAD} is a head shape, which no 'bench conv' case takes: ignored"),
])
def test_an_option_no_kind_run_uses_gets_a_note(tmp_path: pathlib.Path, argv, note) -> None:
    if "--shape" not in argv:
        argv = argv + ["--shape", TINY_HEAD]
    path = tmp_path / "r.json"
    assert run_bench(*argv, "--json", str(path)) == 0
    assert note in json.loads(path.read_text())["notes"]


def test_options_every_kind_run_uses_get_no_note(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "r.json"
    assert run_bench("all", "--shape", TINY_HEAD, "--shape", TINY_CONV, "--ranks", "1",
                     "--peers", "einsum", "--json", str(path)) == 0
    assert not [n for n in json.loads(path.read_text())["notes"] if "ignored" in n]


def test_torch_head_peer_runs_in_float64(tmp_path: pathlib.Path) -> None:
    pytest.importorskip("torch")
    path = tmp_path / "r.json"
    assert run_bench("head", "--shape", TINY_HEAD, "--peers", "torch", "--dtype", "float64",
                     "--json", str(path)) == 0
    torch_records = [r for r in json.loads(path.read_text())["records"]
                     if r["method"] == "torch"]
    assert len(torch_records) == 2 and all(r["status"] == "ok" for r in torch_records)


def test_float64_and_threads(tmp_path: pathlib.Path) -> None:
    pytest.importorskip("threadpoolctl")
    path = tmp_path / "r.json"
    assert run_bench("head", "--shape", TINY_HEAD, "--peers", "none", "--dtype", "float64",
                     "--threads", "1", "--json", str(path)) == 0
    payload = json.loads(path.read_text())
    assert payload["dtype"] == "float64"
    assert all(r["dtype"] == "float64" and r["max_abs_diff"] < 1e-12 for r in payload["records"])


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("argv, match", [
    (["--shape", "1,2,3"], "bad --shape '1,2,3'"),
    (["--shape", "2,x,3,4,5"], "bad --shape"),
    (["--shape", "2,,2,2,3,4"], "bad --shape '2,,2,2,3,4'"),
    (["--shape", "2,2,2,3,\u00b2"], "bad --shape"),
    (["--shape", "0,2,2,3,4"], "at least 1"),
    (["--shape=-1,2,2,3,4"], "every head size must be at least 1"),
    (["conv", "--shape", "1,5,5,1,3,3,1,1,-1"], "padding must be at least 0"),
    (["conv", "--shape", "64,512,512,64,7,7,64,1,3"], "needs an im2col patch matrix"),
    (["--threads", "0"], "--threads must be between 1 and 1024, got 0"),
    (["--threads", str(10**20)], f"--threads must be between 1 and 1024, got {10**20}$"),
    (["conv", "--shape", "1,2,2,1,5,5,1"], "does not fit"),
    (["--preset", "alexnet"], "unknown preset 'alexnet'"),
    (["--peers", "jax"], "unknown peer 'jax'"),
    (["--peers", "all", "none"], r"--peers none cannot go with other peers \(all\)"),
    (["--peers", "none", "conv"], r"unknown peer 'conv'.* \('conv' is a benchmark: put it "),
    (["--peers", "torch,none", "--peers", "einsum"],
     r"--peers none cannot go with other peers \(torch einsum\)"),
    (["--peers", "torch", "conv"], r"unknown peer 'conv'.* \('conv' is a benchmark: put it "
                                   r"before the options\)"),
    (["--json", "-"], "--json -: standard output is not an option here"),
    (["--csv", "-"], "--csv -: standard output is not an option here"),
    (["--preset", ","], "--preset ',' has an empty name"),
    (["--preset", "lenet,"], "--preset 'lenet,' has an empty name"),
    (["--peers", "numpy,,torch"], "--peers 'numpy,,torch' has an empty name"),
    (["--repeat", "0"], "--repeat must be at least 1"),
    (["--max-seconds", "nan"], "--max-seconds must be positive"),
    (["--shape", "99999,9999,999,99,9"], "more than the memory budget"),
    (["heads", "--ranks", "0"], "--ranks must be positive"),
    (["heads", "--shape", TINY_HEAD, "--ranks", "10000000000"],
     r"cp-r10000000000 at B=2 .* needs a weight of shape \(2, 10000000000\)"),
    (["--json", ""], "an output path is empty"),
    (["--plot", "p.xyz"], r"cannot write '.xyz' files"),
    (["--shape", "2,5,5,2,3,3,3"], "no shape fits 'bench head'"),
    (["conv", "--shape", TINY_HEAD], "no shape fits 'bench conv'"),
])
def test_bad_arguments_raise_value_error(argv, match) -> None:
    with pytest.raises(ValueError, match=match):
        bench.run(bench_args(*argv))


def test_bad_shape_is_a_clean_cli_error(capsys) -> None:
    assert cli.main(["bench", "--shape", "1,2,3"]) == 2
    err = capsys.readouterr().err
    assert "contractnet bench: error: bad --shape '1,2,3'" in err
    assert "Traceback" not in err


def test_a_negative_shape_gets_the_size_error_not_a_missing_value(capsys) -> None:
    # argparse reads "-1,2,..." as an option, not as --shape's value
    assert cli.main(["bench", "--shape", "-1,2,2,3,4"]) == 2
    assert "every head size must be at least 1" in capsys.readouterr().err


def test_an_output_option_given_twice_is_refused(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit):
        cli.main(["bench", "--json", str(tmp_path / "a.json"), "--json", str(tmp_path / "b")])
    assert "--json was given twice; give it once" in capsys.readouterr().err


def test_running_out_of_memory_is_one_line(monkeypatch, capsys) -> None:
    # arrays that each fit the budget may not fit together
    def no_memory(args):
        raise MemoryError("Unable to allocate 1.12 GiB")
    monkeypatch.setattr(bench, "run", no_memory)
    assert cli.main(["bench"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("contractnet bench: error: out of memory (Unable to allocate")
    assert "Traceback" not in err


def test_a_file_that_fails_to_write_is_named_and_the_rest_still_written(tmp_path, monkeypatch,
                                                                         capsys) -> None:
    def full_disk(path, records, meta):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(bench, "write_json", full_disk)
    status = run_bench("head", "--shape", TINY_HEAD, "--peers", "none",
                       "--json", str(tmp_path / "r.json"), "--csv", str(tmp_path / "r.csv"))
    out, err = capsys.readouterr()
    assert status == 1 and (tmp_path / "r.csv").read_text().startswith("kind,")
    assert f"--json {tmp_path / 'r.json'}: No space left on device" in err
    assert "forward+backward: contractnet/flatten" in out  # the tables are printed


def test_the_markdown_links_no_plot_that_failed_to_write(tmp_path, monkeypatch, capsys) -> None:
    def full_disk(path, records, title):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(bench, "write_plot", full_disk)
    status = run_bench("head", "--shape", TINY_HEAD, "--peers", "none",
                       "--plot", str(tmp_path / "r.png"), "--markdown", str(tmp_path / "r.md"))
    assert status == 1 and "--plot" in capsys.readouterr().err
    text = (tmp_path / "r.md").read_text()
    assert "### " in text and "r.png" not in text and "![" not in text


def test_a_run_whose_baseline_fails_exits_1(monkeypatch) -> None:
    def broken(problem, backward):
        raise MemoryError("no memory for the baseline")
    monkeypatch.setattr(bench, "HEAD_METHODS", (Method("flatten", "broken", broken),)
                        + bench.HEAD_METHODS[1:])
    assert run_bench("head", "--shape", TINY_HEAD, "--peers", "none") == 1


def test_a_missed_target_is_no_failure_of_the_run(monkeypatch, capsys) -> None:
    # every ratio measured as 1.5: the head's target is missed, whatever the timings
    monkeypatch.setattr(bench, "paired_ratio",
                        lambda a, b: bench_timing.RatioSummary(1.5, 1.5, 1.5, len(a)))
    assert run_bench("head", "--shape", TINY_HEAD, "--peers", "none") == 0
    assert "(target <= 1.05: MISSED at" in capsys.readouterr().out


def test_a_disagreeing_low_rank_head_fails_the_run(monkeypatch) -> None:
    real = bench.lowrank.reference_answer

    def off(spec, problem, backward):  # every CP head now disagrees with its reference
        answer = real(spec, problem, backward)
        return tuple(a + 1 for a in answer) if spec == CP_SPEC else answer
    monkeypatch.setattr(bench.lowrank, "reference_answer", off)
    assert run_bench("heads", "--shape", TINY_HEAD, "--ranks", "2") == 1


def test_pytorch_runs_as_many_threads_as_blas_when_none_are_given() -> None:
    torch = pytest.importorskip("torch")
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = torch.get_num_threads()
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        with bench_timing.blas_threads(None, torch_too=True):
            assert torch.get_num_threads() == 1  # else % GEMM compares 1 thread with several
    assert torch.get_num_threads() == before


def test_pytorch_takes_the_threads_asked_for_when_blas_cannot_say(monkeypatch) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("threadpoolctl")
    monkeypatch.setattr(bench_timing, "blas_info",
                        lambda: {"blas": "none found", "blas_threads": "unknown"})
    before = torch.get_num_threads()
    with bench_timing.blas_threads(1, torch_too=True):
        assert torch.get_num_threads() == 1
    with bench_timing.blas_threads(None, torch_too=True):
        assert torch.get_num_threads() == before  # nothing to follow: left as it is
    assert torch.get_num_threads() == before


def test_a_failure_before_the_block_leaves_blas_threads_as_they_were(monkeypatch) -> None:
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_counts():
        return [p["num_threads"] for p in threadpoolctl.threadpool_info()
                if p["user_api"] == "blas"]
    before = blas_counts()

    def broken_torch():
        raise RuntimeError("torch failed to load")
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setattr(bench_timing, "_import_torch", broken_torch)
    with pytest.raises(RuntimeError, match="torch failed to load"):
        with bench_timing.blas_threads(1, torch_too=True):
            pass
    assert blas_counts() == before


def test_threads_beyond_what_blas_runs_get_a_note(monkeypatch, capsys) -> None:
    pytest.importorskip("threadpoolctl")
    # a BLAS that runs one thread whatever it is asked for
    monkeypatch.setattr(bench_timing, "blas_info",
                        lambda: {"blas": "capped blas", "blas_threads": 1})
    assert run_bench("head", "--shape", TINY_HEAD, "--peers", "none", "--threads", "2") == 0
    assert "note: --threads 2: BLAS runs 1 thread(s), its limit" in capsys.readouterr().out


def test_missing_output_directory_fails_before_timing(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        bench.run(bench_args("--json", str(tmp_path / "no" / "r.json")))


def test_unwritable_outputs_fail_before_timing(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="it is a directory"):
        bench.run(bench_args("--markdown", str(tmp_path)))
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="cannot write"):  # its "directory" is a file
        bench.run(bench_args("--csv", str(blocker / "r.csv")))
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_output_whose_file_cannot_be_created_fails_before_timing(tmp_path, monkeypatch):
    from contractnet import files

    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", path)
    monkeypatch.setattr(files, "open", refuse, raising=False)
    with pytest.raises(ValueError, match="--json: cannot write .*Permission denied"):
        bench.run(bench_args("--json", str(tmp_path / "r.json")))


def test_a_link_is_written_through_never_renamed_over(tmp_path) -> None:
    target = tmp_path / "target.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)  # as /dev/stdout is, with standard output sent to a file
    assert run_bench("head", "--shape", TINY_HEAD, "--peers", "none", "--json", str(link)) == 0
    assert link.is_symlink() and json.loads(target.read_text())["records"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "target.json"]


def test_a_long_file_name_that_fits_is_written(tmp_path) -> None:
    path = tmp_path / ("r" * 246 + ".json")  # 251 characters: the limit is 255
    assert run_bench("head", "--shape", TINY_HEAD, "--peers", "none", "--json", str(path)) == 0
    assert json.loads(path.read_text())["records"]


def test_a_plot_name_without_extension_is_a_png_of_that_name(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "plot"
    assert run_bench("head", "--shape", TINY_HEAD, "--peers", "none", "--plot", str(path)) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["plot"]


def test_files_are_written_before_the_tables_are_printed(tmp_path, monkeypatch) -> None:
    def closed_stdout(*args, **kwargs):
        raise BrokenPipeError(32, "Broken pipe")
    monkeypatch.setattr(bench, "print_table", closed_stdout)
    path = tmp_path / "r.json"
    with pytest.raises(BrokenPipeError):
        run_bench("head", "--shape", TINY_HEAD, "--peers", "none", "--json", str(path))
    assert json.loads(path.read_text())["records"]


def test_a_pgf_plot_without_a_tex_system_is_refused_before_timing(tmp_path,
                                                                   monkeypatch) -> None:
    pytest.importorskip("matplotlib")
    from contractnet import bench_report
    monkeypatch.setattr(bench_report.shutil, "which", lambda name: None)
    with pytest.raises(ValueError, match=r"'\.pgf' needs xelatex, which is not installed"):
        bench.run(bench_args("--plot", str(tmp_path / "p.pgf")))
    assert list(tmp_path.iterdir()) == []


def test_plot_without_matplotlib_names_the_extra(monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ValueError, match=r"contractnet\[bench\]"):
        bench.run(bench_args("--plot", str(tmp_path / "p.png")))


# ------------------------------------------------------------------ optional peers
def test_absent_torch_is_skipped_with_one_line(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    path = tmp_path / "r.json"
    assert run_bench("all", "--shape", TINY_HEAD, "--shape", TINY_CONV, "--ranks", "2",
                     "--json", str(path)) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "torch" in line]
    assert lines == ["note: torch is not installed: skipping its peers"]
    methods = {r["method"] for r in json.loads(path.read_text())["records"]}
    assert not any(m.startswith("torch") for m in methods)


def test_torch_peers_agree_when_installed(tmp_path: pathlib.Path) -> None:
    pytest.importorskip("torch")
    path = tmp_path / "r.json"
    assert run_bench("all", "--shape", TINY_HEAD, "--shape", TINY_CONV, "--ranks", "2",
                     "--peers", "torch", "torch-einsum", "--json", str(path)) == 0
    records = json.loads(path.read_text())["records"]
    torch_records = [r for r in records if r["method"].startswith("torch")]
    assert len(torch_records) == 6  # head: 2 methods x 2 passes; conv: 1 x 2
    assert all(r["status"] == "ok" and r["peak_bytes"] is None for r in torch_records)


def test_plain_table_without_rich(monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "rich", None)
    assert run_bench("head", "--shape", TINY_HEAD, "--peers", "none") == 0
    out = capsys.readouterr().out
    assert "median ms" in out and "contractnet" in out
    assert "┃" not in out


# ------------------------------------------------------------------ checking
def _wrong_head(problem, backward):
    """A flatten that un-flattens in the wrong order (the classic porting bug)."""
    x, w = problem.operands
    xf = x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)

    def call():
        return xf @ w.reshape(-1, w.shape[-1])
    return call, lambda answer: (answer,)


def test_disagreeing_method_is_flagged_not_timed() -> None:
    settings = bench.Settings("float32", 1, 1, 1.0, 100.0, {})
    problem = head_problem(HeadShape(2, 2, 2, 3, 4), "float32")
    methods = [HEAD_METHODS[0], Method("wrong", "wrong order", _wrong_head)]
    entries = bench.method_entries(methods, problem, False, settings)
    records, times = bench.measure(entries, "flatten", settings, dict(
        kind="head", case="t", shape="", dtype="float32", pass_="forward", dims={}))
    wrong = records[1]
    assert wrong.status == "mismatch" and "differs" in wrong.note
    assert wrong.max_abs_diff > 1e-3 and wrong.repeats == 0 and math.isnan(wrong.median_s)
    assert "wrong" not in times and "MISMATCH" in plain_table(records, "t")


def test_a_failed_baseline_leaves_the_others_unchecked_and_untimed() -> None:
    settings = bench.Settings("float32", 1, 1, 1.0, 100.0, {})
    problem = head_problem(HeadShape(2, 2, 2, 3, 4), "float32")

    def broken(problem, backward):
        raise MemoryError("no memory for the baseline")
    methods = [Method("flatten", "broken baseline", broken), HEAD_METHODS[1]]
    entries = bench.method_entries(methods, problem, False, settings)
    assert [e.status for e in entries] == ["error", "error"]
    assert entries[1].call is None and "not run: the baseline" in entries[1].note


def test_a_rank_given_twice_is_measured_once() -> None:
    keys = [h.key for h in lowrank_heads(HeadShape(2, 2, 2, 3, 4), [2, 2, 3])]
    assert keys == ["full", "cp-r2", "tucker-r2", "cp-r3", "tucker-r3"]


def test_compare_flags_dtype_and_shape_changes() -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert bench.compare((a,), (a,), "float32") == (0.0, "")
    assert "returned float64" in bench.compare((a.astype(np.float64),), (a,), "float32")[1]
    assert bench.compare((a.T,), (a,), "float32")[0] == math.inf


@pytest.mark.parametrize("methods, problem", [
    (HEAD_METHODS[:5], head_problem(HeadShape(3, 2, 3, 4, 5), "float64")),
    (CONV_METHODS[:2], conv_problem(ConvShape(2, 6, 5, 2, 3, 2, 3, 2, 1), "float64")),
])
def test_numpy_methods_match_the_exact_oracle(methods, problem) -> None:
    x, w = problem.operands
    if problem.dy.ndim == 2:
        spec, grads = "bnmd,nmdk->bk", ("bk,nmdk->bnmd", "bnmd,bk->nmdk")
        oracle = (np.einsum(spec, x, w), np.einsum(grads[0], problem.dy, w),
                  np.einsum(grads[1], x, problem.dy))
    else:
        oracle = _conv_oracle(x, w, problem.dy, problem.shape)
    for method in methods:
        call, convert = method.build(problem, True)
        for got, want in zip(convert(call()), oracle):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10, err_msg=method.key)


def _conv_oracle(x, w, dy, s: ConvShape):
    """Direct loops over output positions: forward and exact adjoints."""
    p = s.padding
    xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    ho, wo = s.output_hw
    y = np.zeros((s.B, ho, wo, s.K))
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, i * s.stride:i * s.stride + s.KH, j * s.stride:j * s.stride + s.KW]
            y[:, i, j] = np.einsum("buvc,uvck->bk", patch, w)
            dw += np.einsum("buvc,bk->uvck", patch, dy[:, i, j])
            dxp[:, i * s.stride:i * s.stride + s.KH, j * s.stride:j * s.stride + s.KW] += \
                np.einsum("bk,uvck->buvc", dy[:, i, j], w)
    return y, dxp[:, p:p + s.H, p:p + s.W], dw


# ------------------------------------------------------------------ presets
def test_parse_shape_accepts_both_separators() -> None:
    assert parse_shape("128x4x4x50x500") == HeadShape(128, 4, 4, 50, 500)
    assert parse_shape(" 8, 14,14,512,3,3,512,1,1") == ConvShape(8, 14, 14, 512, 3, 3, 512, 1, 1)
    assert parse_shape("2,5,5,1,3,3,4").padding == 0


def test_default_runs_the_quick_presets_and_presets_are_real_shapes() -> None:
    cases = select_shapes("head", [], [])
    assert [name for name, _ in cases] == list(QUICK_PRESETS)
    assert PRESETS["lenet"].head == HeadShape(128, 4, 4, 50, 500)
    assert PRESETS["vgg16-fc6"].head.N * PRESETS["vgg16-fc6"].head.M == 49
    for preset in PRESETS.values():
        assert min(preset.conv.output_hw) >= 1 and preset.source


def test_custom_shapes_are_named_by_their_numbers(capsys) -> None:
    assert [name for name, _ in select_shapes("head", [], ["2x2x2x3x4", " 1, 1,1,1,1"])] == [
        "custom 2,2,2,3,4", "custom 1,1,1,1,1"]
    assert run_bench("--shape", "1,1,1,1,1", "--shape", TINY_HEAD, "--peers", "none") == 0
    out = capsys.readouterr().out
    assert "head custom 1,1,1,1,1 forward:" in out and "head custom 2,2,2,3,4 forward:" in out


def test_a_custom_conv_is_named_with_its_stride_and_padding() -> None:
    """Named by the parsed shape: two spellings of one conv share one name."""
    shapes = ["8x14x14x16x3x3x32", "8,14,14,16,3,3,32,1,0", "2,9,9,1,3,3,4,2"]
    names = [name for name, _ in select_shapes("conv", [], shapes)]
    assert names == ["custom 8,14,14,16,3,3,32,1,0", "custom 2,9,9,1,3,3,4,2,0"]


def test_all_says_which_kind_no_shape_fits(capsys) -> None:
    assert run_bench("all", "--shape", TINY_HEAD, "--ranks", "1", "--peers", "none") == 0
    out = capsys.readouterr().out
    assert ("note: no conv shape among the presets and --shape values given: conv skipped"
            in out)


def test_the_markdown_links_the_plot_from_its_own_directory(tmp_path) -> None:
    (tmp_path / "md").mkdir()
    (tmp_path / "img").mkdir()
    assert run_bench("--shape", TINY_HEAD, "--peers", "none", "--markdown",
                     str(tmp_path / "md" / "r.md"), "--plot", str(tmp_path / "img" / "p.png")) == 0
    link = "![GFLOP/s against problem size](../img/p.png)"
    assert (tmp_path / "md" / "r.md").read_text().splitlines()[-1] == link


def test_ctrl_c_is_one_line_not_a_traceback(monkeypatch, capsys) -> None:
    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setattr(bench, "run", interrupted)
    assert cli.main(["bench"]) == 130
    assert capsys.readouterr().err == "contractnet bench: interrupted\n"


def test_a_shape_goes_to_the_kind_it_describes() -> None:
    shapes = [TINY_HEAD, TINY_CONV]
    assert [s for _, s in select_shapes("conv", ["lenet"], shapes)] == [
        PRESETS["lenet"].conv, parse_shape(TINY_CONV)]
    assert [s for _, s in select_shapes("heads", [], shapes)] == [parse_shape(TINY_HEAD)]


# ------------------------------------------------------------------ low-rank heads
def test_gradient_spec_and_path_flops() -> None:
    assert gradient_spec("bnmd,nmdk->bk", 0) == "bk,nmdk->bnmd"
    assert gradient_spec(TUCKER_SPEC, 4) == "bnmd,np,mq,ds,bk->pqsk"
    sizes = {"i": 2, "j": 3, "k": 4}
    assert path_flops("ij,jk->ik", sizes) == 2 * 2 * 3 * 4
    assert path_flops("ij,jk->ik", sizes, backward=True) == 3 * 2 * 2 * 3 * 4


def test_lowrank_heads_shapes() -> None:
    heads = {h.key: h for h in lowrank_heads(HeadShape(4, 7, 7, 64, 10), [32])}
    assert heads["cp-r32"].spec == CP_SPEC
    assert heads["cp-r32"].weight_shapes == ((7, 32), (7, 32), (64, 32), (10, 32))
    assert heads["tucker-r32"].weight_shapes[-1] == (7, 7, 32, 10)


# ------------------------------------------------------------------ timing helpers
def test_paired_ratio_is_the_median_of_per_pair_ratios() -> None:
    ratio = paired_ratio([3.0, 1.0, 2.0, math.nan], [1.0, 2.0, 1.0, 1.0])
    assert (ratio.median, ratio.low, ratio.high, ratio.pairs) == (2.0, 0.5, 3.0, 3)
    assert ratio.pairs == 3 and math.isnan(paired_ratio([], []).median)


def test_interleave_alternates_and_respects_the_budget(monkeypatch) -> None:
    # a fixed number of calls per sample: calibrated by the clock, two equal
    # calls may get different counts on a busy machine
    monkeypatch.setattr(bench_timing, "calls_per_sample", lambda fn: 3)
    order: list[str] = []
    times = interleave({"a": lambda: order.append("a"), "b": lambda: order.append("b")},
                       repeat=4, warmup=1)
    assert all(len(t) == 4 for t in times.values())
    calls = order.count("a")
    assert calls == order.count("b")
    clock = [0.0]  # a clock the calls advance, so that the budget's verdicts are fixed
    monkeypatch.setattr(bench_timing.time, "perf_counter", lambda: clock[0])

    def costs(seconds):
        return lambda: clock.__setitem__(0, clock[0] + seconds)
    slow = interleave({"a": costs(0.001), "b": costs(0.06)}, repeat=3,
                      budget_seconds=0.05)  # b is past it after one sample, a is not
    assert len(slow["b"]) == 3 and math.isnan(slow["b"][2]) and slow["b"][0] == pytest.approx(0.06)
    assert slow["a"] == pytest.approx([0.001] * 3)
    # every method past its budget: the rounds stop, however many were asked for
    spent = interleave({"a": costs(0.06), "b": costs(0.06)}, repeat=1000, budget_seconds=0.05)
    assert spent == {"a": [pytest.approx(0.06)], "b": [pytest.approx(0.06)]}
    with pytest.raises(ValueError, match="at least 1"):
        interleave({"a": lambda: None}, repeat=0)


def test_best_of_stops_at_the_budget(monkeypatch) -> None:
    # a slow method's first sample takes one average, not --best-of of them,
    # once that average alone has passed the budget
    monkeypatch.setattr(bench_timing, "calls_per_sample", lambda fn: 1)
    clock, calls = [0.0], []
    monkeypatch.setattr(bench_timing.time, "perf_counter", lambda: clock[0])

    def slow():
        calls.append(1)
        clock[0] += 10.0
    times = interleave({"slow": slow}, repeat=5, warmup=1, best_of=5, budget_seconds=4.0)
    assert times == {"slow": [pytest.approx(10.0)]} and len(calls) == 1
    calls.clear()  # within the budget, every one of the best_of averages is taken
    assert interleave({"slow": slow}, repeat=1, warmup=1, best_of=3, budget_seconds=100.0)
    assert len(calls) == 3
    calls.clear()  # the second of three averages passes the budget: the third is not taken
    interleave({"slow": slow}, repeat=1, warmup=1, best_of=3, budget_seconds=15.0)
    assert len(calls) == 2


@pytest.mark.parametrize("names", ["ab", "abc", "abcd"])
def test_interleave_puts_every_method_in_every_place_equally_often(names, monkeypatch) -> None:
    from contractnet import bench_timing
    monkeypatch.setattr(bench_timing, "calls_per_sample", lambda fn: fn() or 1)  # one call
    calls: list[str] = []
    rounds = 4 * len(names) * 2
    interleave({n: lambda n=n: calls.append(n) for n in names}, repeat=rounds, warmup=1,
               best_of=1)
    timed = calls[len(names):]  # after each method's one warm-up call
    per_round = [timed[i:i + len(names)] for i in range(0, len(timed), len(names))]
    assert len(per_round) == rounds
    if len(names) < 4:
        assert {"".join(o) for o in per_round} == ({"ab", "ba"} if names == "ab" else
                                                   {"abc", "acb", "bac", "bca", "cab", "cba"})
    for place in range(len(names)):
        at_place = [o[place] for o in per_round]
        assert all(at_place.count(n) == rounds // len(names) for n in names)
    assert [list(round_order(names, r)) for r in range(4)][:2] == [list(names),
                                                                    list(names[::-1])]


def test_paired_ratio_skips_rounds_without_a_finite_ratio_in_any_order() -> None:
    inf = math.inf
    for times, base in [([inf, 3, 1, 2], [inf, 1, 1, 1]), ([3, 1, 2, inf], [1, 1, 1, inf]),
                        ([3, math.nan, 1, 2], [1, 1, 1, 1]), ([3, 1, 2, 5], [1, 1, 1, 0])]:
        assert str(paired_ratio(times, base)) == "2.000 (min 1.000, max 3.000, 3 pairs)"
    with pytest.raises(ValueError, match="got 3 and 1"):
        paired_ratio([1, 2, 3], [1])


def test_compare_reports_a_nan_answer_and_passes_equal_infinities() -> None:
    f32 = lambda *v: (np.array(v, np.float32),)  # noqa: E731
    diff, note = bench.compare(f32(math.nan, 2, 3), f32(1, 2, 3), "float32")
    assert math.isnan(diff) and "differs by nan" in note
    assert bench.compare(f32(math.inf, -math.inf), f32(math.inf, -math.inf), "float32") == (0.0, "")
    one, two = (np.array([1], np.uint8),), (np.array([2], np.uint8),)
    assert bench.compare(one, two, "float32")[0] == 1.0  # not 255: no unsigned wrap
    assert bench.compare((np.array([1j]),), (np.array([2j]),), "float64")[0] == 1.0


def test_compare_pair_reports_every_pair() -> None:
    result = compare_pair(lambda: None, lambda: None, pairs=9, best_of=2)
    assert len(result.times_a) == len(result.times_b) == 9 and result.ratio.pairs == 9


def test_peak_memory_sees_a_numpy_allocation() -> None:
    assert peak_memory(lambda: np.ones(1_000_000)) >= 8_000_000


class _FakeMachine:
    """A clock, CPU tick counters and a sleep for :class:`OtherLoad`, all
    moved by hand: 100 ticks a second, 2 CPUs, and a block that takes no time
    unless the test says so."""

    def __init__(self, monkeypatch, stat_readable: bool = True) -> None:
        self.now, self.slept, self.busy_ticks, self.own = 0.0, 0.0, 0, 0.0
        self.other_share = 0.0  # of both CPUs, while time passes
        fake_time = type("FakeTime", (), {"perf_counter": lambda _: self.now,
                                          "sleep": lambda _, s: self.pass_time(s)})()
        times = lambda: os.times_result((self.own, 0.0, 0.0, 0.0, self.now))  # noqa: E731
        fake_os = type("FakeOs", (), {"sysconf": lambda _, name: 100, "times": lambda _: times(),
                                      "cpu_count": lambda _: 2})()
        monkeypatch.setattr(bench_timing, "time", fake_time)
        monkeypatch.setattr(bench_timing, "os", fake_os)
        monkeypatch.setattr(bench_timing, "_busy_ticks",
                            lambda: self.busy_ticks if stat_readable else None)

    def pass_time(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds
        self.busy_ticks += round(seconds * 2 * 100 * self.other_share)


def test_other_load_cannot_resolve_a_short_block(monkeypatch) -> None:
    machine = _FakeMachine(monkeypatch)
    with OtherLoad() as load:
        machine.now += 0.01  # one tick
    assert load.fraction is None and machine.slept == 0


def test_other_load_measures_on_through_a_wait(monkeypatch) -> None:
    machine = _FakeMachine(monkeypatch)
    machine.other_share = 0.25
    with OtherLoad(wait=True) as load:
        pass
    assert machine.slept == pytest.approx(bench_timing.MIN_LOAD_TICKS / 100)
    assert load.fraction == pytest.approx(0.25)


def test_other_load_leaves_out_its_own_process(monkeypatch) -> None:
    machine = _FakeMachine(monkeypatch)
    with OtherLoad() as load:
        machine.now += 1.0
        machine.own += 0.5  # this process kept one CPU busy half the time
        machine.busy_ticks += 100  # 1 s of CPU in all
    assert load.fraction == pytest.approx(0.25)  # the other 0.5 s of 2 s


def test_other_load_reads_this_machine() -> None:
    with OtherLoad(wait=True) as load:
        pass
    if os.path.exists("/proc/stat"):
        assert load.fraction is not None and 0.0 <= load.fraction <= 1.0
    else:
        assert load.fraction is None


def test_other_load_does_not_wait_when_it_cannot_measure(monkeypatch) -> None:
    machine = _FakeMachine(monkeypatch, stat_readable=False)  # no /proc/stat
    with OtherLoad(wait=True) as load:
        pass
    assert load.fraction is None and machine.slept == 0


def _benchmark_script(name: str):
    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name, argv", [
    ("window_paths", ["--cases", "1"]),  # runs the traced pairwise path on its own
    ("spec_fuzz", ["--cases", "1", "--rounds", "1", "--best-of", "1", "--seed", "5"]),
])
def test_benchmark_scripts_run_their_smallest_case(name, argv, capsys) -> None:
    # the first case of spec_fuzz's seed 5 writes a diagonal: no forward+backward ratio
    _benchmark_script(name).main(argv)
    out = capsys.readouterr().out
    assert "forward" in out and "Traceback" not in out


@pytest.mark.parametrize("argv, match", [
    (["--cases", "0"], "argument --cases: must be at least 1, got 0"),
    (["--seed", "-1"], "argument --seed: must be at least 0, got -1"),
    (["--cases", "x"], "argument --cases: 'x' is not an integer"),
])
def test_a_benchmark_scripts_bad_count_is_one_line(argv, match, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _benchmark_script("window_paths").main(argv)
    assert exit_info.value.code == 2 and match in capsys.readouterr().err


def test_head_ratio_script_checks_before_timing() -> None:
    module = _benchmark_script("head_ratio")
    contraction, flatten = module.head_calls(HeadShape(2, 2, 2, 3, 4), "float32")
    for got, want in zip(contraction(), flatten()):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        assert got.dtype == np.float32
    for results in ("/nonexistent/RESULTS.md", "", os.devnull):  # before any timing
        with pytest.raises(SystemExit) as exit_info:
            module.main(["--results", results])
        assert exit_info.value.code == 2


def test_head_ratio_script_exits_2_when_the_results_cannot_be_written(tmp_path, monkeypatch,
                                                                      capsys) -> None:
    module = _benchmark_script("head_ratio")
    monkeypatch.setattr(module, "acceptance_table", lambda args: (["| a table |"], 0))

    def disk_full(*args):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(module, "write_results", disk_full)
    assert module.main(["--results", str(tmp_path / "RESULTS.md")]) == 2
    assert "cannot write the results: [Errno 28] No space" in capsys.readouterr().err


@pytest.mark.parametrize("spec, shapes", [
    ("ab,bc->ac", [(3, 4), (4, 5)]),
    ("ab,cd->ad", [(3, 4), (2, 5)]),        # b and c only in their own operands: broadcasts
    ("abc,cd,bd->a", [(2, 3, 4), (4, 5), (3, 5)]),
])
def test_spec_fuzz_baselines_compute_what_contractnet_does(spec, shapes):
    """The fuzz script's baselines for a forward and for each transposed spec
    give contractnet's forward and gradients: the ratios compare equal work."""
    module = _benchmark_script("spec_fuzz")
    rng = np.random.default_rng(3)
    operands = [rng.standard_normal(s) for s in shapes]
    out = cn.einsum(spec, *operands)
    for call in module.fastest_einsum(spec, operands).values():
        np.testing.assert_allclose(call(), out, rtol=1e-12, atol=1e-12)
    cotangent = rng.standard_normal(out.shape)
    grads = cn.vjp(lambda *xs: cn.einsum(spec, *xs), *operands)[1](cotangent)
    for i, transposed in enumerate(cn.backward_specs(spec, *shapes)):
        reads = list(operands)
        reads[i] = cotangent
        for call in module.gradient_baselines(transposed, reads, shapes[i]).values():
            np.testing.assert_allclose(call(), grads[i], rtol=1e-12, atol=1e-12)
    assert module.gradient_baselines("i->ii", [np.ones(3)], (3, 3)) is None  # a diagonal


def test_spec_fuzz_draws_cases_within_its_bounds():
    module = _benchmark_script("spec_fuzz")
    rng = np.random.default_rng(0)
    cases = [c for c in (module.draw_case(rng) for _ in range(40)) if c is not None]
    assert cases
    for case in cases:
        size = {n: d for term, x in zip(case.spec.split("->")[0].split(","), case.operands)
                for n, d in zip(term, x.shape)}
        assert math.prod(size.values()) <= module.MAX_PRODUCT
        assert all(x.size <= module.MAX_OPERAND for x in case.operands)
        assert len(case.operands) in (2, 3) and len(case.layouts) == len(case.operands)
        np.testing.assert_allclose(cn.einsum(case.spec, *case.operands),
                                   np.einsum(case.spec, *case.operands), rtol=1e-3, atol=1e-3)
    assert {"C", "transposed", "strided"} <= {layout for c in cases for layout in c.layouts}


def test_blas_info_names_numpys_blas_when_another_is_loaded(monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    numpy_lib = os.path.join(os.path.dirname(os.path.realpath(np.__file__)) + ".libs",
                             "libopenblas.so")
    pools = [{"user_api": "blas", "internal_api": "openblas", "version": "0.3.1",
              "filepath": "/elsewhere/torch/lib/libopenblas.so", "num_threads": 4},
             {"user_api": "blas", "internal_api": "openblas", "version": "0.3.9",
              "filepath": numpy_lib, "num_threads": 2, "architecture": "Haswell"}]
    monkeypatch.setattr(threadpoolctl, "threadpool_info", lambda: pools)
    assert bench_timing.blas_info() == {"blas": "openblas 0.3.9 (Haswell)", "blas_threads": 2}


def test_gemm_layout_script_times_equal_answers() -> None:
    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "gemm_layout.py"
    spec = importlib.util.spec_from_file_location("gemm_layout", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tiny = HeadShape(3, 2, 2, 5, 4)
    for c_order, f_order in module.gemm_cases(tiny).values():
        c, f = c_order(), f_order()
        assert c.flags.c_contiguous and f.flags.f_contiguous and not f.flags.c_contiguous
        np.testing.assert_array_equal(c, f)


def test_two_outputs_to_one_file_are_refused(tmp_path) -> None:
    same = str(tmp_path / "out.x")
    with pytest.raises(ValueError, match=r"--json and --csv both write .*out.x"):
        bench.run(bench_args("--json", same, "--csv", same))
    link = tmp_path / "link.x"
    link.symlink_to(same)
    with pytest.raises(ValueError, match=r"--json and --markdown both write .*link.x"):
        bench.run(bench_args("--json", same, "--markdown", str(link)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.x"]


def test_a_miss_by_less_than_the_third_digit_shows_a_fourth() -> None:
    times = {"contractnet": [1.0504], "flatten": [1.0]}
    line, = bench._summary("head", "lenet5", "forward+backward", times, None)
    assert line.endswith("(target <= 1.05: MISSED at 1.0504)")
    line, = bench._summary("head", "lenet5", "forward+backward", {**times, "contractnet": [1.04]},
                           None)
    assert line.endswith("(target <= 1.05: met)")
