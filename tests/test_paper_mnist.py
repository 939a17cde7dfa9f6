"""Smoke test of ``python -m benchmarks.paper_mnist`` on tiny generated MNIST-format files (a few seconds).

The script's numbers are not checked, only that every subcommand runs end to end
through the library and writes the records the write-up is built on: a
teacher trained once and reused by ``--teacher``, and in every record each
model's ``test_errors`` list with one count per seed.
"""

import gzip
import json
import struct

import numpy as np
import pytest

from benchmarks import paper_experiments, paper_mnist, paper_report
from benchmarks.common import RESULTS


def write_tiny_mnist(folder, n_train=400, n_test=150, seed=0):
    """Four IDX .gz files of noise images, each class marked by a bright bar at its own height."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", n_train), ("t10k", n_test)):
        y = rng.integers(0, 10, n).astype(np.uint8)
        x = (rng.random((n, 28, 28)) * 60).astype(np.uint8)
        for c in range(10):
            x[y == c, 2 * c + 2:2 * c + 6, 4:24] = 250
        with gzip.open(folder / f"{name}-images-idx3-ubyte.gz", "wb") as f:
            f.write(struct.pack(">IIII", 2051, n, 28, 28) + x.tobytes())
        with gzip.open(folder / f"{name}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(struct.pack(">II", 2049, n) + y.tobytes())
    return folder


TINY = ["--no-verify", "--val", "100", "--teacher-hidden", "40", "40", "--teacher-epochs", "2",
        "--student-hidden", "20", "20", "--student-epochs", "2", "--sweep-T", "1", "4",
        "--sweep-epochs-300", "1", "--sweep-epochs-30", "1", "--omit3-epochs", "1", "--only78-epochs", "1",
        "--shift-max", "4", "--shift-step", "1", "--consistent-members", "1", "--consistent-epochs", "1", "--quiet",
        "--no-plot"]


def table_teacher_errors(out):
    return json.loads((out / "paper_table.json").read_text())["models"]["teacher"]["test_errors"]


def test_all_then_reuse_the_teacher(tmp_path, capsys):
    data = write_tiny_mnist(tmp_path / "mnist")
    out, teacher = tmp_path / "results", tmp_path / "teacher.npz"
    common = ["--data-dir", str(data), "--out", str(out), "--consistent-runs", str(tmp_path / "consistent"), *TINY]

    assert paper_mnist.main(["all", "--seeds", "1", "2", "--save-teacher", str(teacher), *common]) == 0
    assert teacher.is_file() and teacher.with_suffix(".json").is_file()
    for name in ("table", "sweep", "omit3", "only78", "all"):
        rec = json.loads((out / f"paper_{name}.json").read_text())
        assert rec["device"] == "cpu" and rec["command"].startswith("python -m benchmarks.paper_mnist ")
        if name != "all":
            assert rec["teacher"]["test_errors"] == table_teacher_errors(out)  # every record names its teacher
        for entry in rec.get("models", {}).values():
            assert all(isinstance(e, int) and 0 <= e <= 150 for e in entry["test_errors"])
    table = json.loads((out / "paper_table.json").read_text())
    assert {"teacher", "baseline", "distilled"} <= set(table["models"])
    assert len(table["models"]["baseline"]["test_errors"]) == 2  # one per seed
    assert len(table["models"]["teacher"]["test_errors"]) == 1
    sweep = json.loads((out / "paper_sweep.json").read_text())
    assert set(sweep["models"]) == {"300x300_hard", "300x300_T1", "300x300_T4", "30x30_hard", "30x30_T1", "30x30_T4"}
    assert sweep["models"]["30x30_hard"]["T"] is None and len(sweep["models"]["30x30_hard"]["test_errors"]) == 2
    omit3 = json.loads((out / "paper_omit3.json").read_text())["models"]["student"]
    assert omit3["shift"][0] in omit3["shift_grid"]
    consistent = json.loads((out / "paper_consistent.json").read_text())["models"]  # its own teacher: two nets
    assert consistent["teacher"]["ensemble"] == 2
    assert consistent["baseline_elastic"]["seeds"] == [101] and consistent["baseline_jitter"]["seeds"] == [102]
    assert consistent["baseline_elastic"]["settings"]["recipe"]["elastic"] == 34.0  # --consistent-elastic
    assert consistent["baseline_jitter"]["settings"]["recipe"]["elastic"] == 0.0
    assert consistent["distilled_consistent"]["seeds"] == [1, 2]
    assert consistent["distilled_consistent"]["settings"]["recipe"]["jitter"] == 2
    assert consistent["distilled_consistent"]["settings"]["T"] == 8.0  # --consistent-T, chosen on validation
    assert consistent["teacher"]["members_test_errors"] == (consistent["baseline_elastic"]["test_errors"]
                                                            + consistent["baseline_jitter"]["test_errors"])
    printed = capsys.readouterr().out
    assert "paper" in printed and "difference" in printed

    # the write-up's tables come from these records
    assert paper_mnist.main(["report", "--out", str(out)]) == 0
    md = capsys.readouterr().out
    assert "**table**" in md and "| units per layer | hard labels | T = 1 | T = 4 |" in md and "**only78**" in md
    assert md.count(f", teacher {table_teacher_errors(out)[0]} errors)") == 4  # each header names the teacher
    assert "**consistent** (leaves the paper's setting" in md and "| teacher: ensemble of 2 nets |" in md

    # a saved teacher is loaded, not retrained, and gives the same test errors
    assert paper_mnist.main(["omit3", "--teacher", str(teacher), *common]) == 0
    again = json.loads((out / "paper_omit3.json").read_text())
    assert again["models"]["student"]["test_errors"] == omit3["test_errors"][:1]  # seed 1 again: same run


def test_choose_shift_uses_only_the_given_labels():
    # class 3 is under-predicted by 2 logit units: the best shift on these labels is about +2
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 500)
    z = rng.normal(0, 0.3, (500, 10))
    z[np.arange(500), y] += 1.0
    z[:, 3] -= 2.0
    shift, curve = paper_experiments.choose_shift(z, y, (3,), np.arange(0, 5.01, 0.25), +1)
    assert 1.0 <= shift <= 3.0
    assert min(curve) == paper_experiments.shifted_errors(z, y, (3,), shift)[0]
    assert curve[0] > min(curve)


def test_teacher_budget_stops_at_an_epoch_boundary(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.random((200, 784), dtype=np.float32), rng.integers(0, 10, 200)
    args = paper_mnist.build_parser().parse_args(["teacher", "--teacher-hidden", "20", "20", "--teacher-epochs", "50"])
    recipe = paper_experiments.teacher_recipe(args)
    model, info = paper_experiments.fit(recipe, x, y, seed=0, device="cpu", name="t", budget_s=1e-9, log=None)
    assert info["stopped_by_budget"] and info["epochs_run"] == 1 and info["epochs_planned"] == 50


def test_student_lr_decay_is_per_60000_images():
    args = paper_mnist.build_parser().parse_args(["table", "--student-lr-decay", "0.9"])
    full = paper_experiments.student_recipe(args, (800, 800), 30)
    small = paper_experiments.student_recipe(args, (800, 800), 150, n_images=12000)
    assert full.lr_decay == 0.9
    assert small.lr_decay == pytest.approx(0.9 ** 0.2)
    assert small.lr_decay ** 150 == pytest.approx(full.lr_decay ** 30)  # same lr after the same number of images
    sweep = paper_experiments.student_recipe(args, (300, 300), 20, lr_decay=0.8)  # the sweep's own --sweep-lr-decay
    assert sweep.lr_decay == 0.8 and sweep.hidden == (300, 300)


def test_teacher_checkpoint_lets_a_long_teacher_span_several_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "7")  # only read back into the record: OpenBLAS is already loaded
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    data = write_tiny_mnist(tmp_path / "mnist")
    common = ["teacher", "--data-dir", str(data), *TINY, "--out", str(tmp_path / "r")]
    straight, split, ckpt = tmp_path / "straight.npz", tmp_path / "split.npz", tmp_path / "teacher.ckpt.npz"
    assert paper_mnist.main([*common, "--teacher-epochs", "3", "--save-teacher", str(straight)]) == 0
    assert paper_mnist.main([*common, "--teacher-epochs", "2", "--teacher-checkpoint", str(ckpt),
                             "--save-teacher", str(split)]) == 0
    assert ckpt.is_file()
    capsys.readouterr()
    assert paper_mnist.main([*common, "--teacher-epochs", "3", "--teacher-checkpoint", str(ckpt),
                             "--save-teacher", str(split)]) == 0
    assert "resumed from" in capsys.readouterr().out
    with np.load(straight) as a, np.load(split) as b:
        params = [k for k in a.files if k.startswith("param_")]
        assert params and all(np.array_equal(a[k], b[k]) for k in params)  # 2 + 1 epochs == 3 epochs, bit for bit
    info = json.loads(split.with_suffix(".json").read_text())
    assert info["epochs_run"] == 3
    # the teacher's time is that of all 3 epochs; the last process ran only 1 of them
    with np.load(ckpt) as f:
        epoch_seconds = json.loads(str(f["history"]))["seconds"]
    assert len(epoch_seconds) == 3 and info["seconds"] == pytest.approx(sum(epoch_seconds), abs=0.01)
    assert "process_seconds" in info
    # a checkpoint of more epochs than asked for is refused, instead of passing its weights off as fewer
    with pytest.raises(ValueError, match="holds 3 epochs, more than epochs=2"):
        paper_mnist.main([*common, "--teacher-epochs", "2", "--teacher-checkpoint", str(ckpt),
                          "--save-teacher", str(tmp_path / "fewer.npz")])
    # the rounding depends on the BLAS threads, so the teacher's record says how many were asked for
    assert info["machine"]["blas_threads_env"] == {"OPENBLAS_NUM_THREADS": "7", "OMP_NUM_THREADS": None}


def test_all_in_two_processes_writes_the_same_records(tmp_path, capsys):
    """``all --jobs 2`` forks workers for the student experiments; every student's test errors match ``--jobs 1``."""
    data = write_tiny_mnist(tmp_path / "mnist")
    teacher = tmp_path / "teacher.npz"
    common = ["--data-dir", str(data), "--seeds", "1", "2", *TINY]
    assert paper_mnist.main(["teacher", "--save-teacher", str(teacher), "--out", str(tmp_path / "t"), *common]) == 0
    for jobs in ("1", "2"):
        assert paper_mnist.main(["all", "--jobs", jobs, "--teacher", str(teacher), "--out", str(tmp_path / jobs),
                                 "--consistent-runs", str(tmp_path / f"consistent{jobs}"),
                                 *common]) == 0
    for name in ("table", "sweep", "omit3", "only78", "consistent"):
        one, two = (json.loads((tmp_path / jobs / f"paper_{name}.json").read_text())["models"] for jobs in "12")
        assert {k: v["test_errors"] for k, v in one.items()} == {k: v["test_errors"] for k, v in two.items()}
    rec = json.loads((tmp_path / "2" / "paper_all.json").read_text())
    assert rec["jobs"] == 2
    assert set(rec["phase_seconds"]) >= {"teacher", "table", "sweep", "omit3", "only78", "consistent"}
    with pytest.raises(SystemExit) as e:
        paper_mnist.main(["all", "--jobs", "0", *common])
    assert e.value.code == 2 and "argument --jobs: must be >= 1" in capsys.readouterr().err


def test_all_in_two_processes_stops_when_a_worker_fails(tmp_path, monkeypatch):
    data = write_tiny_mnist(tmp_path / "mnist")

    def broken(ctx):
        raise RuntimeError("this experiment fails")

    monkeypatch.setitem(paper_experiments.EXPERIMENT_FNS, "omit3", broken)
    with pytest.raises(SystemExit, match="a worker failed"):
        paper_mnist.main(["all", "--jobs", "2", "--skip", "table", "sweep", "consistent", "--data-dir", str(data),
                          "--out", str(tmp_path / "out"), "--save-teacher", "", *TINY])
    assert not (tmp_path / "out" / "paper_all.json").exists()


def test_a_worker_waits_for_experiments_that_reach_its_queue_late(monkeypatch):
    """A worker stops at its None, not at a queue that is empty for a moment.

    A multiprocessing queue is filled by a background thread; on a busy machine
    a worker could find it empty before the names arrived and quit with exit
    code 0, leaving experiments undone ("a worker failed (exit codes [0, 0])").
    """
    import queue
    import threading
    import time

    ran = []
    for name in ("table", "omit3"):
        monkeypatch.setitem(paper_experiments.EXPERIMENT_FNS, name, lambda ctx, name=name: ran.append(name))
    todo, done = queue.Queue(), queue.Queue()  # the same get / put as the processes' queues
    worker = threading.Thread(target=paper_experiments._worker, args=(None, todo, done))
    worker.start()
    time.sleep(0.2)  # the queue is empty meanwhile
    for item in ("table", "omit3", None):
        todo.put(item)
    worker.join(timeout=10)
    assert not worker.is_alive() and ran == ["table", "omit3"]
    assert [done.get_nowait()[0] for _ in ran] == ["table", "omit3"] and done.empty()


def test_report_reads_the_committed_records(capsys):
    """RESULTS.md's tables are printed from benchmarks/results; the older records in teacher126/ predate the
    sweep's hard-label column, and their table is printed without it."""
    assert paper_mnist.main(["report"]) == 0
    md = capsys.readouterr().out
    for name in ("table", "sweep", "omit3", "only78"):
        assert f"**{name}**" in md
    assert "| units per layer | hard labels | T = 1 |" in md
    assert paper_mnist.main(["report", "--out", str(RESULTS / "teacher126")]) == 0
    old = capsys.readouterr().out
    assert "**sweep**" in old and "| units per layer | T = 1 |" in old


@pytest.mark.parametrize("flags, match", [
    (["--seeds", "1", "1"], "--seeds"),
    (["--seeds", "-1"], "--seeds"),
    (["--T", "0"], "--T"),
    (["--alpha", "1.5"], "--alpha"),
    (["--hard-alpha", "2"], "--hard-alpha"),
    (["--sweep-T", "4", "4"], "--sweep-T"),
    (["--sweep-T", "0"], "--sweep-T"),
    (["--teacher-epochs", "0"], "--teacher-epochs"),
    (["--only78-epochs", "0"], "--only78-epochs"),
    (["--student-lr", "0"], "--student-lr"),
    (["--student-lr-decay", "1.5"], "--student-lr-decay"),
    (["--teacher-momentum", "1"], "--teacher-momentum"),
    (["--shift-step", "0"], "--shift-step"),
    (["--shift-max", "-1"], "--shift-max"),
    (["--teacher", "t.npz", "--max-minutes", "5"], "--max-minutes"),
    (["--jobs", "2"], "--jobs"),
])
def test_bad_flags_exit_2_before_anything_trains(flags, match, capsys):
    with pytest.raises(SystemExit) as e:
        paper_mnist.main(["table", "--data-dir", "/nonexistent", *flags])  # never reaches the data
    assert e.value.code == 2
    assert match in capsys.readouterr().err


def test_records_of_a_loaded_teacher_carry_its_recipe_not_the_flag_defaults(tmp_path, capsys):
    data = write_tiny_mnist(tmp_path / "mnist")
    teacher = tmp_path / "teacher.npz"
    common = ["--data-dir", str(data), "--out", str(tmp_path / "r"), *TINY]
    assert paper_mnist.main(["teacher", "--teacher-seed", "3", "--save-teacher", str(teacher), *common]) == 0
    assert paper_mnist.main(["only78", "--teacher", str(teacher), *common]) == 0
    rec = json.loads((tmp_path / "r" / "paper_only78.json").read_text())
    assert rec["teacher_seed"] == 3 and rec["settings"]["teacher_seed"] is None
    assert rec["settings"]["teacher_epochs"] is None and rec["teacher"]["trained"]["recipe"]["epochs"] == 2
    # one seed: the chosen shift is printed as it is (0.25 steps), not rounded to a whole number
    assert paper_report.fmt_ours([1.75]) == "1.75" and paper_report.fmt_ours([152]) == "152"
    # a .json beside the weights that describes another teacher is refused
    info = json.loads(teacher.with_suffix(".json").read_text())
    info["test_errors"] += 1
    teacher.with_suffix(".json").write_text(json.dumps(info))
    with pytest.raises(SystemExit, match="different runs"):
        paper_mnist.main(["only78", "--teacher", str(teacher), *common])
