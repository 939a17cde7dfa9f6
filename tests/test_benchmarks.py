"""benchmarks/ is a package of scripts run as ``python -m benchmarks.NAME``; benchmarks.common's provenance."""

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import common

# the scripts with flags:
SCRIPTS = ("epoch", "gpu_check", "mutation_report", "paper_mnist", "reference", "sgemm_fold", "speed",
           "torch_student")
MODULES = (*SCRIPTS, "common", "gradcheck_full", "paper_experiments", "paper_report", "steps")


def test_no_benchmark_edits_sys_path():
    files = sorted((common.REPO / "benchmarks").glob("*.py"))
    assert {f.stem for f in files} >= set(MODULES)
    assert [f.name for f in files if "sys.path" in f.read_text()] == []


@pytest.mark.parametrize("name", MODULES)
def test_every_module_imports(name):
    if name == "torch_student":
        pytest.importorskip("torch", reason="benchmarks.torch_student needs PyTorch")
    importlib.import_module(f"benchmarks.{name}")


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_runs_as_a_module_from_the_repository_root(name):
    if name == "torch_student":
        pytest.importorskip("torch", reason="benchmarks.torch_student needs PyTorch")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", COLUMNS="100")
    proc = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--help"], cwd=common.REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: python -m benchmarks.{name} ")


def test_machine_holds_the_fields_of_the_paper_and_speed_records(monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    info = common.machine()
    assert {"cpu", "cpu_count", "python", "numpy", "blas_threads_env",  # what paper_mnist records held
            "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "threadpools"} <= set(info)  # and speed records
    assert info["blas_threads_env"] == {"OPENBLAS_NUM_THREADS": "3", "OMP_NUM_THREADS": None}
    assert info["cpu"] and info["cpu_count"] == os.cpu_count()
    pytest.importorskip("threadpoolctl")
    assert any(p["internal_api"] in ("openblas", "mkl", "blis") for p in info["threadpools"])  # the BLAS and its kernel
    json.dumps(info)


def test_command_line_and_write_record(tmp_path):
    line = common.command_line("benchmarks.speed", ["--json", "a b.json"])
    assert line == "python -m benchmarks.speed --json 'a b.json'"
    assert common.command_line("benchmarks.speed", []) == "python -m benchmarks.speed"
    assert common.now().endswith(" UTC")
    path = common.write_record(tmp_path / "new" / "rec.json", {"x": 1, "folder": tmp_path}, default=str)
    assert json.loads(path.read_text()) == {"x": 1, "folder": str(tmp_path)}  # its folder made, a Path as a string


def test_mutation_score_leaves_out_equivalent_survivors_and_waits_for_unchecked_mutants(monkeypatch):
    from benchmarks import mutation_report

    monkeypatch.setattr(mutation_report, "EQUIVALENT", {"nanokd.optim.f__mutmut_3": "why"})
    status = {"nanokd.optim.f__mutmut_1": "killed", "nanokd.optim.f__mutmut_2": "timeout",
              "nanokd.optim.f__mutmut_3": "survived", "nanokd.optim.f__mutmut_4": "survived",
              "nanokd.losses.g__mutmut_1": "killed", "nanokd.losses.g__mutmut_2": "not checked"}
    table = mutation_report.scores(status)
    optim, losses = table["optim"], table["losses"]
    counts = tuple(optim[k] for k in ("mutants", "killed", "timeout", "survived", "equivalent"))
    assert counts == (4, 1, 1, 1, 1)
    assert optim["score"] == round(2 / 3, 4) and optim["unexplained_survivors"] == ["nanokd.optim.f__mutmut_4"]
    assert losses["score"] is None and losses["score_so_far"] == 1.0 and losses["not_checked"] == 1
    assert table["data"]["score"] is None and table["data"]["mutants"] == 0
    rows = mutation_report.markdown(table).split("\n")
    assert "| optim | 4 | 1 (1) | 1 | 1 | 0 | **66.7 %** |" in rows
    assert "| losses | 2 | 1 (0) | 0 | 0 | 1 | 100.0 % of those run |" in rows


def test_mutation_results_of_several_runs_take_each_mutants_last_checked_status():
    from benchmarks import mutation_report

    first = {"nanokd.optim.f__mutmut_1": "survived", "nanokd.optim.f__mutmut_2": "killed",
             "nanokd.data.g__mutmut_1": "killed"}
    second = {"nanokd.optim.f__mutmut_1": "killed", "nanokd.optim.f__mutmut_2": "survived",
              "nanokd.data.g__mutmut_1": "not checked", "nanokd.data.g__mutmut_2": "not checked"}
    assert mutation_report.merged([first, second]) == {
        "nanokd.optim.f__mutmut_1": "killed", "nanokd.optim.f__mutmut_2": "survived",
        "nanokd.data.g__mutmut_1": "killed", "nanokd.data.g__mutmut_2": "not checked"}


def test_mutation_results_leave_out_mutants_the_newest_run_no_longer_has():
    from benchmarks import mutation_report

    old = {"nanokd.data.x_jitter__mutmut_1": "killed", "nanokd.data.g__mutmut_1": "survived"}
    new = {"nanokd.jitter.x_jitter__mutmut_1": "killed", "nanokd.data.g__mutmut_1": "not checked"}
    assert mutation_report.merged([old, new]) == {"nanokd.jitter.x_jitter__mutmut_1": "killed",
                                                   "nanokd.data.g__mutmut_1": "survived"}


def test_mutation_report_keeps_an_earlier_records_rows_for_the_modules_this_run_did_not_check():
    from benchmarks import mutation_report

    status = {"nanokd.optim.f__mutmut_1": "killed", "nanokd.optim.f__mutmut_2": "not checked",
              "nanokd.data.g__mutmut_1": "not checked", "nanokd.data.g__mutmut_2": "not checked"}
    old_data = {"mutants": 3, "killed": 3, "score": 1.0}
    record = {"date": "2026-12-02 22:52:55 UTC", "git_commit": "5eec2a2",
              "modules": {"data": old_data, "optim": {"mutants": 9, "killed": 1, "score": 0.1},
                          "jitter": {"mutants": 5, "killed": 5, "score": 1.0,
                                     "from": {"date": "2026-11-30 UTC", "git_commit": "abc1234"}}}}
    table = mutation_report.keep_unchecked(mutation_report.scores(status), record)
    assert table["data"] == dict(old_data, **{"from": {"date": "2026-12-02 22:52:55 UTC", "git_commit": "5eec2a2"}})
    assert table["optim"]["mutants"] == 2 and table["optim"]["killed"] == 1 and table["optim"]["from"] is None
    assert table["jitter"]["from"] == {"date": "2026-11-30 UTC", "git_commit": "abc1234"}  # where it was measured
    assert table["losses"]["mutants"] == 0 and table["losses"]["from"] is None  # in neither: an empty row
    only = mutation_report.keep_unchecked(mutation_report.scores(status), record, only=["data"])
    assert only["optim"]["mutants"] == 9 and only["optim"]["from"]["git_commit"] == "5eec2a2"  # checked in part: kept


def test_mutation_report_names_mutants_listed_as_equivalent_that_a_test_kills(monkeypatch):
    from benchmarks import mutation_report

    monkeypatch.setattr(mutation_report, "EQUIVALENT", {"nanokd.optim.f__mutmut_1": "why",
                                                        "nanokd.optim.f__mutmut_2": "why",
                                                        "nanokd.optim.f__mutmut_3": "why"})
    status = {"nanokd.optim.f__mutmut_1": "survived", "nanokd.optim.f__mutmut_2": "killed",
              "nanokd.optim.f__mutmut_3": "timeout"}
    assert mutation_report.stale(status) == ["nanokd.optim.f__mutmut_2", "nanokd.optim.f__mutmut_3"]


def test_speed_names_an_avx2_blas_kernel_on_a_cpu_with_avx512():
    from benchmarks import speed

    def info(simd, kernel):
        return {"numpy_simd": simd, "threadpools": [{"internal_api": "openblas", "architecture": kernel}]}

    assert "OPENBLAS_CORETYPE=SkylakeX" in speed.kernel_hint(info("X86_V3+X86_V4+AVX512_ICL", "Haswell"))
    assert "OPENBLAS_CORETYPE=SkylakeX" in speed.kernel_hint(info("X86_V3+X86_V4", "Zen"))
    assert speed.kernel_hint(info("X86_V3", "Haswell")) is None  # no AVX-512: the AVX2 kernel is the best
    assert speed.kernel_hint(info("X86_V3+X86_V4", "SkylakeX")) is None
    assert speed.kernel_hint({"numpy_simd": "unknown", "threadpools": "threadpoolctl not installed"}) is None


def test_momentum_folded_into_sgemm_gives_the_plain_steps_weights_bit_for_bit():
    """benchmarks.sgemm_fold times u <- h^T da + mu u as one gemm with beta = mu: the same numbers as SGD.step."""
    pytest.importorskip("scipy", reason="benchmarks.sgemm_fold needs scipy's BLAS wrappers")
    from benchmarks import sgemm_fold
    from benchmarks.steps import make_batch

    x, y, _ = make_batch(sgemm_fold.N)
    runs = [sgemm_fold._make() for _ in range(3)]
    for _ in range(3):
        sgemm_fold.plain(*runs[0], x, y)
        sgemm_fold.folded(*runs[1], x, y)
        sgemm_fold.folded(*runs[2], x, y, all_scipy=True)
    for model, _ in runs[1:]:
        for a, b in zip(runs[0][0].params, model.params):
            np.testing.assert_array_equal(a, b)
    assert not np.array_equal(runs[0][0].params[0], sgemm_fold._make()[0].params[0])  # the steps moved the weights


def test_git_commit_names_the_commit_of_a_git_archive_copy(tmp_path):
    """``git archive`` expands benchmarks/ARCHIVE_COMMIT (export-subst), so a copy without .git knows its commit."""
    import shutil
    import subprocess

    from benchmarks import common

    if shutil.which("git") is None or common.git_commit() is None:
        pytest.skip("needs git and a git checkout")
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=common.REPO, capture_output=True, text=True)
    if Path(top.stdout.strip()).resolve() != Path(common.REPO).resolve():  # a copy inside another checkout
        pytest.skip(f"{common.REPO} is not the root of its git checkout (e.g. mutmut's mutants/ copy)")
    assert common.archive_commit() is None  # in the checkout: the unexpanded placeholder
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=common.REPO, capture_output=True,
                          text=True).stdout.strip()
    archive = subprocess.run(["git", "archive", "HEAD", "benchmarks/ARCHIVE_COMMIT", ".gitattributes"],
                             cwd=common.REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp_path)], input=archive, check=True)
    copied = tmp_path / "benchmarks" / "ARCHIVE_COMMIT"
    if copied.read_text().startswith("$Format"):
        pytest.skip("HEAD predates the export-subst attribute")
    assert common.archive_commit(copied) == f"{head} (archive copy, no .git)"
    assert common.archive_commit(tmp_path / "missing") is None
