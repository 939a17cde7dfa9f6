"""Issue 20: no user mistake loses work or ends in a traceback.

Each mistake of the issue is made here, through the command line (``train.main``
in this process, which is fast, or ``python -m nanokd.train`` in a child process
for a few, to prove that no traceback reaches the terminal) or through the
library.  Each test checks

* the exit status: 2 for a usage error (a flag, a key of a resumed config.json),
  1 for a runtime error (a file, folder, device, the memory);
* the message: it names the flag, key or file, and there is no traceback;
* that nothing earlier was changed or lost: the run folder hashes the same
  before and after (:func:`_hashes`), or a folder that did not exist still
  does not.

Tiny IDX data and tiny nets (the fixtures of test_train.py), so that the whole
module takes seconds.
"""

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
from hashlib import sha256
from pathlib import Path

import numpy as np
import pytest

import nanokd as nk
from nanokd import atomic, data, download, experiment, train, trainer
from nanokd.backend import cuda_available
from test_train import N_TRAIN, N_VAL, tiny, tiny_dir  # noqa: F401  (fixtures: the tiny IDX folder, its arrays)

REPO = Path(nk.__file__).resolve().parents[1]


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _args(tiny_dir, out, *flags):
    """Flags of a one-epoch CPU run of tiny nets on the tiny data, writing into ``out``."""
    return ["--data-dir", str(tiny_dir), "--no-verify", "--val", str(N_VAL), "--device", "cpu", "--no-progress",
            "--out", str(out), "--hidden", "12", "--epochs", "1", "--batch-size", "32", *flags]


def _main(argv, capsys):
    """``train.main(argv)`` as the shell sees it: ``(exit status, stderr)``; stderr never holds a traceback."""
    try:
        status = train.main([str(a) for a in argv])
    except SystemExit as e:  # argparse's usage errors
        status = e.code
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return status, err


def _hashes(folder):
    """Every file under ``folder`` (hidden ones too) -> the sha256 of its bytes."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tiny_dir, tmp_path_factory):
    """A finished run of all three roles (teacher 784-16-10, students 784-12-10, one epoch each)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    argv = ["--data-dir", str(tiny_dir), "--no-verify", "--val", str(N_VAL), "--device", "cpu", "--no-progress",
            "--out", str(out), "--teacher-hidden", "16", "--student-hidden", "12", "--epochs", "1",
            "--batch-size", "32"]
    assert train.main(argv) == 0
    return out


@pytest.fixture
def run_dir(finished_run, tmp_path, capsys):
    """A copy of the finished run, to make mistakes on."""
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    capsys.readouterr()
    return out


def _edit_config(folder, edit):
    """Change the run's config.json in place with ``edit(config)``."""
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))


def _child(argv, **env):
    """``python -m nanokd.train argv`` in a child process: (exit status, stderr)."""
    env = {**{k: v for k, v in os.environ.items() if k != "NANOKD_DEBUG"}, "PYTHONPATH": str(REPO),
           "OPENBLAS_NUM_THREADS": "1", **env}
    proc = subprocess.run([sys.executable, "-m", "nanokd.train", *map(str, argv)], capture_output=True, text=True,
                          env=env, timeout=120)
    return proc.returncode, proc.stderr


# ---------------------------------------------------------------------------
# 1. An existing run is refused; --overwrite replaces it whole
# ---------------------------------------------------------------------------


def test_the_same_command_twice_is_refused_and_changes_nothing(tiny_dir, run_dir, capsys):
    before = _hashes(run_dir)
    status, err = _main(_args(tiny_dir, run_dir), capsys)
    assert status == 2
    assert f"argument --out: {run_dir} holds an earlier run" in err
    assert f"--resume {run_dir}" in err and "--overwrite" in err
    assert _hashes(run_dir) == before


def test_overwrite_replaces_the_run_and_leaves_nothing_stale(tiny_dir, run_dir, capsys):
    (run_dir / "notes.txt").write_text("mine")  # not a file of the run: it stays
    before = _hashes(run_dir)
    status, err = _main(_args(tiny_dir, run_dir, "--role", "teacher"), capsys)
    assert status == 2 and "holds an earlier run" in err and _hashes(run_dir) == before
    assert train.main(_args(tiny_dir, run_dir, "--role", "teacher", "--overwrite")) == 0
    assert "removed the earlier run's" in capsys.readouterr().out
    assert sorted(os.listdir(run_dir)) == ["config.json", "curves.json", "curves.png", "notes.txt", "results.json",
                                           "teacher.ckpt.npz", "teacher.npz"]
    assert list(json.loads((run_dir / "results.json").read_text())["models"]) == ["teacher"]
    assert json.loads((run_dir / "config.json").read_text())["role"] == "teacher"


def test_overwrite_refuses_to_delete_the_teacher_it_distils_from(tiny_dir, run_dir, capsys):
    before = _hashes(run_dir)
    status, err = _main(_args(tiny_dir, run_dir, "--role", "distill", "--teacher", run_dir / "teacher.npz",
                              "--overwrite"), capsys)
    assert status == 2 and "argument --overwrite: it would delete" in err and "teacher.npz" in err
    assert _hashes(run_dir) == before


def test_overwrite_and_resume_exclude_each_other(run_dir, capsys):
    before = _hashes(run_dir)
    status, err = _main(["--resume", run_dir, "--overwrite"], capsys)
    assert status == 2 and "--overwrite" in err and _hashes(run_dir) == before


# ---------------------------------------------------------------------------
# 2. Everything is checked before anything is written
# ---------------------------------------------------------------------------


def _broken_teacher(tmp_path, kind):
    """A --teacher file that cannot serve: a text file, a truncated one, the wrong inputs or classes, a checkpoint."""
    path = tmp_path / f"{kind}.npz"
    if kind == "text":
        path.write_text("not a model\n")
    elif kind == "truncated":
        nk.MLP([784, 8, 10]).save(path)
        path.write_bytes(path.read_bytes()[:1000])
    elif kind == "inputs":
        nk.MLP([196, 8, 10]).save(path)
    elif kind == "classes":
        nk.MLP([784, 8, 5]).save(path)
    elif kind == "nan":
        model = nk.MLP([784, 8, 10])
        model.params[2][3, 4] = np.nan
        model.save(path)
    return path


# (flags that fail after the checks that come before them, exit status, what the message must name)
FAILING = {
    "device": (["--device", "cuda"], 1, "argument --device cuda"),
    "data": (["--data-dir", "{tmp}/no-such-folder"], 1, "no-such-folder"),
    "val": (["--val", str(N_TRAIN)], 2, "argument --val"),  # --no-verify: the size is known only from the data
    "teacher-text": (["--teacher", "{tmp}/text.npz"], 1, "text.npz is not an .npz file"),
    "teacher-truncated": (["--teacher", "{tmp}/truncated.npz"], 1, "truncated.npz is truncated or corrupt"),
    "teacher-inputs": (["--teacher", "{tmp}/inputs.npz"], 1, "for 196 inputs"),
    "teacher-classes": (["--teacher", "{tmp}/classes.npz"], 1, "with 5 outputs"),
    "teacher-nan": (["--teacher", "{tmp}/nan.npz"], 1, "nan.npz holds NaN or infinite weights (param_2)"),
    "hidden": (["--hidden", "100000000"], 1, "argument --teacher-hidden (or --hidden)"),
}


@pytest.mark.parametrize("case", FAILING)
@pytest.mark.parametrize("into", ["new-folder", "existing-run-with-overwrite"])
def test_a_command_that_fails_writes_nothing(case, into, tiny_dir, run_dir, tmp_path, capsys):
    if case == "device" and cuda_available():
        pytest.skip("this machine has a GPU")
    flags, expected_status, named = FAILING[case]
    if case.startswith("teacher"):
        _broken_teacher(tmp_path, case.split("-")[1])
    flags = [f.format(tmp=tmp_path) for f in flags]
    out = tmp_path / "new" if into == "new-folder" else run_dir
    before = _hashes(run_dir)
    status, err = _main(_args(tiny_dir, out, *flags, *(["--overwrite"] if out == run_dir else [])), capsys)
    assert status == expected_status
    assert named in err
    assert len(err.strip().splitlines()[-1]) > 0 and err.count("\n") <= 20  # the message, perhaps under a usage
    assert not (tmp_path / "new").exists()
    assert _hashes(run_dir) == before  # --overwrite deletes only once every check has passed


# ---------------------------------------------------------------------------
# 3. A resumed config.json passes the checks of the flags
# ---------------------------------------------------------------------------


def _set(*keys_value):
    *keys, value = keys_value

    def edit(config):
        target = config
        for k in keys[:-1]:
            target = target[k]
        target[keys[-1]] = value
    return edit


CONFIG_MISTAKES = {
    "role": (_set("role", "foo"), 'key "role": must be one of all, teacher, student, distill, got "foo"'),
    "negative T": (_set("T", -1), 'key "T": must be a number in (0,'),
    "T overflowing": (_set("T", 1e200), 'key "T"'),
    "alpha 2": (_set("alpha", 2), 'key "alpha": must be a number in [0, 1], got 2'),
    "dataset": (_set("dataset", "cifar10"), 'key "dataset": must be one of mnist, fashion-mnist'),
    "epochs string": (_set("teacher", "epochs", "3"), 'key "teacher.epochs": must be an integer >= 0, got "3"'),
    "negative width": (_set("student", "hidden", [12, -3]),
                       'key "student.hidden": must be a non-empty list of widths (integers >= 1), got [12, -3]'),
    "jitter": (_set("teacher", "jitter", 30), 'key "teacher.jitter": must be an integer in [0, 27], got 30'),
    "extra key": (_set("colour", "red"), 'unknown key "colour"'),
    "extra recipe key": (_set("student", "colour", "red"), 'key "student": unknown key "colour"'),
    "missing key": (lambda c: c.pop("seed"), 'key "seed" is missing'),
    "val": (_set("val", 10 ** 6), 'key "val": must be in [0, 240)'),  # found when the data is loaded
    "distill without teachers": (_set("role", "distill"), 'key "teacher_files" is null'),
    "teacher file gone": (_set("teacher_files", ["/no/such/teacher.npz"]), 'key "teacher_files": no such file'),
}


@pytest.mark.parametrize("mistake", CONFIG_MISTAKES)
def test_a_resumed_config_is_checked_naming_file_and_key(mistake, run_dir, capsys):
    edit, named = CONFIG_MISTAKES[mistake]
    _edit_config(run_dir, edit)
    before = _hashes(run_dir)
    status, err = _main(["--resume", run_dir, "--no-progress"], capsys)
    assert status == 2
    assert f"{run_dir / 'config.json'}" in err and named in err
    assert _hashes(run_dir) == before


def test_a_resumed_config_that_is_not_json_is_named(run_dir, capsys):
    (run_dir / "config.json").write_text('{"role": "all",')  # cut short
    before = _hashes(run_dir)
    status, err = _main(["--resume", run_dir], capsys)
    assert status == 2 and f"{run_dir / 'config.json'} cannot be read as JSON" in err
    assert _hashes(run_dir) == before


def test_resume_still_extends_a_run_and_takes_debug(run_dir, capsys):
    """The checks refuse only mistakes: asking a resumed run for more epochs is not one."""
    _edit_config(run_dir, _set("student", "epochs", 2))
    assert train.main(["--resume", str(run_dir), "--no-progress", "--debug"]) == 0
    results = json.loads((run_dir / "results.json").read_text())
    assert results["models"]["baseline"]["epochs"] == 2 and results["models"]["teacher"]["epochs"] == 1


# ---------------------------------------------------------------------------
# 4. Temporary files of interrupted writes are removed when the run starts or resumes
# ---------------------------------------------------------------------------


def _orphan(folder, suffix=".npz", size=1000):
    """A temporary file as atomic_file names it, left behind as by a kill half way through a write."""
    fd, path = tempfile.mkstemp(prefix=atomic.TEMP_PREFIX, suffix=suffix, dir=folder)
    os.write(fd, b"\0" * size)
    os.close(fd)
    return Path(path).name


def test_orphaned_temporary_files_are_removed_on_resume(run_dir, capsys):
    orphans = {_orphan(run_dir), _orphan(run_dir, ".json")}
    keep = [".tmp-mine.npz", "x.tmp-abcdefgh.npz", "notes.txt"]  # not the writer's pattern: left alone
    for name in keep:
        (run_dir / name).write_text("mine")
    os.mkdir(run_dir / ".tmp-abcdefgh")  # a folder, even of that name: left alone
    assert train.main(["--resume", str(run_dir), "--no-progress"]) == 0
    assert "removed 2 temporary files of interrupted writes" in capsys.readouterr().out
    left = set(os.listdir(run_dir))
    assert not orphans & left and set(keep) <= left and ".tmp-abcdefgh" in left


def test_orphaned_temporary_files_are_removed_on_a_new_start(tiny_dir, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    name = _orphan(out)  # a kill during the very first write: no run there yet, so not refused
    assert train.main(_args(tiny_dir, out, "--role", "student")) == 0
    assert name not in os.listdir(out) and (out / "results.json").is_file()


# ---------------------------------------------------------------------------
# 5. gradcheck fails loudly on NaN and infinity
# ---------------------------------------------------------------------------


def test_gradcheck_raises_on_a_function_returning_nan():
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match=r"f\(\) returned nan at input 0, index \(0, 0\)"):
        nk.gradcheck(lambda: float("nan"), [x], [np.zeros_like(x)])
    np.testing.assert_array_equal(x, 1.0)  # the inputs are restored before the error leaves


def test_gradcheck_raises_on_a_nan_gradient():
    x = np.ones((2, 3))
    g = 2 * x
    g[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"analytic gradient grads\[0\] is not finite at index \(1, 2\)"):
        nk.gradcheck(lambda: (x * x).sum(), [x], [g])


def test_gradcheck_raises_on_inf_along_a_direction_and_on_nan_inputs():
    x = np.ones(4)
    with pytest.raises(ValueError, match="returned inf at the inputs along direction 0"):
        nk.gradcheck(lambda: float((x * x).sum()) if x[0] == 1 else np.inf, [x], [2 * x], full=False)
    x[2] = np.inf
    with pytest.raises(ValueError, match=r"inputs\[0\] is not finite at index \(2,\)"):
        nk.gradcheck(lambda: float(x.sum()), [x], [np.ones(4)])


# ---------------------------------------------------------------------------
# 6. No silent coercion in the library
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("sizes", ["784", [784, 2.7, 10], [784, True, 10], 784])
def test_mlp_sizes_must_be_a_list_of_ints(sizes):
    with pytest.raises(TypeError, match="sizes must be a list of integer widths"):
        nk.MLP(sizes)


def test_mlp_sizes_may_be_numpy_integers():
    assert nk.MLP(np.array([784, 10])).sizes == [784, 10]


@pytest.mark.parametrize("max_norm", [float("inf"), float("nan"), 0.0, -1.0])
def test_max_norm_must_be_finite_and_positive(max_norm):
    with pytest.raises(ValueError, match="max_norm must be None or a finite number > 0"):
        nk.MLP([4, 3, 2], max_norm=max_norm)


@pytest.mark.parametrize("optimizer", [lambda p: nk.SGD(p, lr=0.1, momentum=0.9), lambda p: nk.Adam(p)],
                         ids=["SGD", "Adam"])
def test_optimizers_refuse_gradients_of_the_wrong_shape(optimizer):
    model = nk.MLP([4, 3, 2])
    before = [p.copy() for p in model.params]
    opt = optimizer(model.params)
    grads = [np.zeros_like(p) for p in model.params]
    for bad in (np.ones(1, np.float32), grads[0].T.copy()):  # a broadcast, and a transposed gradient
        with pytest.raises(ValueError, match=r"grads\[0\] has shape .*, but params\[0\] has shape \(4, 3\)"):
            opt.step([bad, *grads[1:]])
    assert all(np.array_equal(a, b) for a, b in zip(before, model.params))


@pytest.mark.parametrize("shift, values", [(-1, r"\[-1, 8\]"), (1, r"\[1, 10\]")])
def test_train_model_refuses_labels_outside_the_classes(tiny, shift, values):
    x, y, _, _ = tiny
    with pytest.raises(ValueError, match=r"y must hold class labels in \[0, 10\) .*got values in " + values):
        trainer.train_model(nk.MLP([784, 8, 10]), x, y + shift, epochs=1, log=None, progress=False)
    with pytest.raises(ValueError, match=r"y_val must hold class labels"):
        trainer.train_model(nk.MLP([784, 8, 10]), x, y, x_val=x[:5], y_val=y[:5] + 10 * shift, epochs=1, log=None,
                            progress=False)


def test_train_model_refuses_x_val_without_y_val(tiny):
    x, y, xv, yv = tiny
    with pytest.raises(ValueError, match="x_val and y_val go together: got x_val without y_val"):
        trainer.train_model(nk.MLP([784, 8, 10]), x, y, x_val=xv, epochs=1, log=None, progress=False)
    with pytest.raises(ValueError, match="got y_val without x_val"):
        trainer.train_model(nk.MLP([784, 8, 10]), x, y, y_val=yv, epochs=1, log=None, progress=False)


# ---------------------------------------------------------------------------
# 7. An empty batch is a ValueError of the losses' input checks
# ---------------------------------------------------------------------------

EMPTY = np.zeros((0, 3))
NO_LABELS = np.zeros(0, dtype=np.int64)
LOSSES = {
    "cross_entropy": lambda: nk.cross_entropy(EMPTY, NO_LABELS),
    "cross_entropy_grad": lambda: nk.cross_entropy_grad(EMPTY, NO_LABELS),
    "cross_entropy_and_grad": lambda: nk.cross_entropy_and_grad(EMPTY, NO_LABELS),
    "kd_loss": lambda: nk.kd_loss(EMPTY, EMPTY, 2.0),
    "kd_loss_grad": lambda: nk.kd_loss_grad(EMPTY, EMPTY, 2.0),
    "distillation_loss": lambda: nk.distillation_loss(EMPTY, EMPTY, NO_LABELS, 2.0, 0.5),
    "distillation_loss_grad": lambda: nk.distillation_loss_grad(EMPTY, EMPTY, NO_LABELS, 2.0, 0.5),
    "distillation_loss_and_grad": lambda: nk.distillation_loss_and_grad(EMPTY, EMPTY, NO_LABELS, 2.0, 0.5),
    "logit_matching_loss": lambda: nk.logit_matching_loss(EMPTY, EMPTY),
    "logit_matching_loss_grad": lambda: nk.logit_matching_loss_grad(EMPTY, EMPTY),
}


@pytest.mark.parametrize("loss", LOSSES)
def test_a_loss_of_an_empty_batch_is_a_value_error(loss):
    with pytest.raises(ValueError, match=r"z is an empty batch \(shape \(0, 3\)\)"):
        LOSSES[loss]()


def test_softmax_of_an_empty_batch_is_still_empty():
    assert nk.softmax(EMPTY).shape == (0, 3)  # not a mean: nothing undefined about it


# ---------------------------------------------------------------------------
# 8. What makes a run diverge is checked up front, and named
# ---------------------------------------------------------------------------


def test_mlp_load_refuses_nan_weights(tmp_path):
    path = _broken_teacher(tmp_path, "nan")
    with pytest.raises(ValueError, match=r"nan\.npz holds NaN or infinite weights \(param_2\)"):
        nk.MLP.load(path)


def test_a_temperature_whose_square_overflows_is_refused(tiny):
    with pytest.raises(ValueError, match=r"T\^2 must be finite .*T = 1e\+200"):
        trainer.TrainConfig(epochs=1, T=1e200)
    x, y, _, _ = tiny  # finite in float64, but not in the float32 loss
    with pytest.raises(ValueError, match=r"T = 1e\+20 is too large for a float32 model"):
        trainer.train_model(nk.MLP([784, 8, 10]), x, y, teacher=nk.MLP([784, 8, 10]), T=1e20, epochs=1, log=None,
                            progress=False)


def test_non_finite_inputs_weights_and_teachers_are_named(tiny):
    x, y, _, _ = tiny
    kw = dict(epochs=1, log=None, progress=False)
    bad_x = x.copy()
    bad_x[7, 100] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite values in x \(the first in row 7\)"):
        trainer.train_model(nk.MLP([784, 8, 10]), bad_x, y, **kw)
    bad_teacher = nk.MLP([784, 8, 10])
    bad_teacher.params[0][0, 0] = np.inf
    with pytest.raises(ValueError, match=r"in the weights of teacher 0 \(params\[0\]\)"):
        trainer.train_model(nk.MLP([784, 8, 10]), x, y, teacher=bad_teacher, **kw)
    with pytest.raises(ValueError, match="in teacher_logits"):
        trainer.train_model(nk.MLP([784, 8, 10]), x, y, teacher_logits=np.full((len(x), 10), np.nan), **kw)


def test_a_real_divergence_still_blames_the_learning_rate(tiny_dir, tmp_path, capsys):
    with np.errstate(all="ignore"):
        status, err = _main(_args(tiny_dir, tmp_path / "run", "--role", "student", "--lr", "1e30"), capsys)
    assert status == 1
    assert "training diverged. The inputs and the starting weights were all finite" in err and "lr 1e+30" in err


# ---------------------------------------------------------------------------
# 9. Tracebacks where a message belongs
# ---------------------------------------------------------------------------


def test_a_checkpoint_given_as_teacher_says_which_file_to_give(tiny_dir, run_dir, tmp_path, capsys):
    status, err = _main(_args(tiny_dir, tmp_path / "new", "--teacher", run_dir / "teacher.ckpt.npz"), capsys)
    assert status == 1
    assert "teacher.ckpt.npz is a training checkpoint, not a model file" in err and "teacher.npz" in err
    assert not (tmp_path / "new").exists()


def _break_checkpoint(run_dir, kind):
    path = run_dir / "teacher.ckpt.npz"
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    elif kind == "text":
        path.write_text("garbage\n")
    elif kind == "corrupt":  # one byte flipped in the middle: the zip's CRC catches it
        b = bytearray(path.read_bytes())
        b[len(b) // 2] ^= 0xFF
        path.write_bytes(bytes(b))
    elif kind == "other network":
        shutil.copy(run_dir / "student.ckpt.npz", path)
    elif kind == "other settings":
        _edit_config(run_dir, _set("teacher", "lr", 0.5))
    elif kind == "more epochs":
        _edit_config(run_dir, _set("teacher", "epochs", 0))


CHECKPOINT_MISTAKES = {
    "truncated": "teacher.ckpt.npz is truncated or corrupt",
    "text": "teacher.ckpt.npz is not an .npz file",
    "corrupt": "teacher.ckpt.npz is truncated or corrupt (BadZipFile: Bad CRC-32",
    "other network": "teacher.ckpt.npz holds another network than this run's 784-16-10",
    "other settings": "teacher.ckpt.npz was written with other settings (lr)",
    "more epochs": "teacher.ckpt.npz holds 1 epochs, more than the 0 this run asks for",
}


@pytest.mark.parametrize("kind", CHECKPOINT_MISTAKES)
def test_a_bad_checkpoint_on_resume_is_named_and_nothing_changes(kind, run_dir, capsys):
    _break_checkpoint(run_dir, kind)
    before = _hashes(run_dir)
    status, err = _main(["--resume", run_dir, "--no-progress"], capsys)
    assert status == 1
    assert CHECKPOINT_MISTAKES[kind] in err
    assert _hashes(run_dir) == before


@pytest.mark.parametrize("flags, named", [
    (["--jitter", "30"], "argument --jitter: '30' is not an integer in [0, 27]"),
    (["--teacher-jitter", "29"], "argument --teacher-jitter: '29' is not an integer in [0, 27]"),
    (["--elastic", "-1"], "argument --elastic: '-1' is not a number >= 0"),
    (["--student-elastic", "nan"], "argument --student-elastic: 'nan' is not a number >= 0"),
    (["--weight-decay", "-0.1"], "argument --weight-decay: '-0.1' is not a number >= 0"),
    (["--T", "1e200"], "argument --T: '1e200' is not a number in (0, 1.84e+19]"),
    (["--T", "nan"], "argument --T: 'nan' is not a number"),
    (["--max-norm", "inf"], "argument --max-norm: 'inf' is not a number >= 0"),
])
def test_out_of_range_flags_are_usage_errors_before_the_data_is_read(flags, named, tmp_path, capsys):
    status, err = _main(["--data-dir", tmp_path / "no-data", "--out", tmp_path / "new", *flags], capsys)
    assert status == 2 and named in err and not (tmp_path / "new").exists()


def test_a_file_as_out_is_a_usage_error(tiny_dir, tmp_path, capsys):
    a_file = tmp_path / "afile"
    a_file.write_text("mine")
    for out, named in ((a_file, f"argument --out: {a_file} is a file, not a folder"),
                       (a_file / "run", f"{a_file} is a file, not a folder, so {a_file / 'run'} cannot be made")):
        status, err = _main(_args(tiny_dir, out), capsys)
        assert status == 2 and named in err
    assert a_file.read_text() == "mine"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_a_read_only_out_is_refused_up_front(tiny_dir, tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        status, err = _main(_args(tiny_dir, folder / "run"), capsys)
    finally:
        folder.chmod(0o755)
    assert status == 2 and f"argument --out: {folder} is not writable" in err


def test_a_first_write_that_fails_leaves_no_folder(tiny_dir, tmp_path, monkeypatch, capsys):
    """As a folder that refuses writes (for root too): every temporary file fails to open."""
    def refuse(*args, dir=None, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", os.path.join(dir, ".tmp-abcdefgh"))

    monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)
    out = tmp_path / "a" / "run"
    status, err = _main(_args(tiny_dir, out), capsys)
    assert status == 1
    assert f"argument --out: cannot write into {out} (Permission denied: {out / 'config.json'})" in err
    assert not (tmp_path / "a").exists()  # the folders the run made are gone again


def test_a_full_disk_keeps_every_finished_epoch_for_resume(run_dir, monkeypatch, capsys):
    _edit_config(run_dir, _set("teacher", "epochs", 2))  # the teacher trains one more epoch, then saves
    before = _hashes(run_dir)
    real = np.savez

    def full_disk(file, **arrays):
        file.write(b"PK half a file")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full_disk)
    status, err = _main(["--resume", run_dir, "--no-progress"], capsys)
    monkeypatch.setattr(np, "savez", real)
    assert status == 1
    assert f"cannot write {run_dir / 'teacher.ckpt.npz'}: No space left on device" in err
    assert f"--resume {run_dir}" in err
    assert _hashes(run_dir) == before  # the old checkpoint is whole, and no temporary file is left


def test_too_wide_a_network_is_refused_before_it_is_built(tiny_dir, tmp_path, capsys):
    status, err = _main(_args(tiny_dir, tmp_path / "new", "--role", "student", "--student-hidden", "100000000"),
                        capsys)
    assert status == 1
    assert "argument --student-hidden (or --hidden): the student network 784-100000000-10 has" in err
    assert not (tmp_path / "new").exists()


def test_a_memory_error_is_a_message(tiny_dir, tmp_path, monkeypatch, capsys):
    def no_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 290. GiB")

    monkeypatch.setattr(experiment, "build", no_memory)
    status, err = _main(_args(tiny_dir, tmp_path / "new"), capsys)
    assert status == 1 and "nanokd: out of memory" in err and "--hidden" in err
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_debug_shows_the_traceback_as_well(how, tiny_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NANOKD_DEBUG", "1" if how == "environment" else "0")
    flags = ["--debug"] if how == "flag" else []
    argv = _args(tiny_dir, tmp_path / "new", "--teacher", _broken_teacher(tmp_path, "text"), *flags)
    status = train.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert status == 1
    assert "Traceback" in err and "nanokd.errors.RunError" in err
    assert err.strip().splitlines()[-1].startswith("nanokd: argument --teacher:")


# Child processes: what the terminal really shows.

def test_in_a_shell_an_existing_run_is_refused_without_a_traceback(tiny_dir, run_dir):
    before = _hashes(run_dir)
    status, err = _child(_args(tiny_dir, run_dir))
    assert status == 2 and "Traceback" not in err and "holds an earlier run" in err
    assert _hashes(run_dir) == before


def test_in_a_shell_a_broken_teacher_is_one_line(tiny_dir, tmp_path):
    status, err = _child(_args(tiny_dir, tmp_path / "new", "--teacher", _broken_teacher(tmp_path, "truncated")))
    assert status == 1 and "Traceback" not in err
    assert err.strip().splitlines() == [f"nanokd: argument --teacher: {tmp_path / 'truncated.npz'} is truncated or "
                                        f"corrupt (BadZipFile: File is not a zip file)"]
    assert not (tmp_path / "new").exists()


@pytest.mark.skipif(cuda_available(), reason="this machine has a GPU")
def test_in_a_shell_a_missing_gpu_is_one_line(tiny_dir, run_dir):
    before = _hashes(run_dir)
    status, err = _child(["--resume", run_dir, "--device", "cuda"])
    assert status == 1 and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith("nanokd: argument --device cuda: needs") and line.endswith("--device cpu")
    assert _hashes(run_dir) == before


def test_in_a_shell_debug_shows_the_traceback(tiny_dir, tmp_path):
    status, err = _child(_args(tiny_dir, tmp_path / "new", "--teacher", _broken_teacher(tmp_path, "text")),
                         NANOKD_DEBUG="1")
    assert status == 1 and "Traceback (most recent call last)" in err and "text.npz is not an .npz file" in err


# ---------------------------------------------------------------------------
# 10. The smaller ones
# ---------------------------------------------------------------------------


def test_a_file_of_the_other_data_set_is_not_to_be_deleted(mnist_dir, tmp_path, capsys):
    folder = tmp_path / "fashion"
    folder.mkdir()
    for name in data.FILES:  # MNIST's good files, where Fashion-MNIST's are expected
        (folder / name).symlink_to(mnist_dir / name)
    status, err = _main(["--dataset", "fashion-mnist", "--data-dir", folder, "--out", tmp_path / "new"], capsys)
    assert status == 1
    assert "(it is mnist/train-images-idx3-ubyte.gz): a good file of the other data set, keep it" in err
    assert "--dataset mnist" in err and "delete" not in err
    with pytest.raises(data.DataError, match="under the wrong name, keep it"):
        download.verify_file(mnist_dir / data.TEST_LABELS, "mnist", data.TRAIN_LABELS)
    (tmp_path / "junk.gz").write_bytes(b"junk")
    with pytest.raises(data.DataError, match="The file is corrupt or not one of the mnist files: delete it"):
        download.verify_file(tmp_path / "junk.gz", "mnist", data.TRAIN_LABELS)


def test_teacher_flags_with_a_saved_teacher_are_refused(tiny_dir, run_dir, tmp_path, capsys):
    status, err = _main(_args(tiny_dir, tmp_path / "new", "--teacher", run_dir / "teacher.npz", "--teacher-epochs",
                              "5", "--teacher-lr", "0.5"), capsys)
    assert status == 2
    assert "--teacher-epochs --teacher-lr: the teacher is loaded from --teacher, not trained" in err
    assert not (tmp_path / "new").exists()


def test_val_larger_than_the_known_training_set_is_refused_before_loading(tmp_path, capsys):
    # The data folder does not exist: the error is about --val, so the data was never looked at.
    status, err = _main(["--data-dir", tmp_path / "no-data", "--val", "60000", "--out", tmp_path / "new"], capsys)
    assert status == 2
    assert "argument --val: must be in [0, 60000) for the 60000 training images of mnist, got 60000" in err
