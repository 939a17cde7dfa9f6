"""Tests for nanokd.train: the training loop, resuming, soft targets and the command line.

All on tiny IDX files written here (no network, no real MNIST) and tiny nets,
so that the whole file runs in seconds.
"""

import gzip
import json
import math
import re
import struct

import numpy as np
import pytest

import nanokd as nk
from nanokd import checkpoint, data, experiment, settings, train, trainer
from nanokd import jitter as nkjitter
from nanokd import teacher as nkteacher

N_TRAIN, N_TEST, N_VAL = 240, 60, 40


def _idx(array):
    """The IDX encoding of a uint8 array: magic 0x0000 08 <ndim>, big-endian sizes, data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    return struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def _learnable_images(labels, rng):
    """Noise plus a bright 6x6 square whose place depends on the label: a task a tiny net can learn."""
    x = rng.integers(0, 60, (len(labels), 28, 28), dtype=np.uint8)
    for i, c in enumerate(labels):
        r, k = 3 + 5 * (c // 5) * 2, 3 + 4 * (c % 5)
        x[i, r:r + 6, k:k + 6] = 250
    return x


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A folder with four tiny MNIST-like IDX files (load them with verify=False / --no-verify)."""
    folder = tmp_path_factory.mktemp("tiny-mnist")
    rng = np.random.default_rng(0)
    y_train, y_test = rng.integers(0, 10, N_TRAIN, dtype=np.uint8), rng.integers(0, 10, N_TEST, dtype=np.uint8)
    files = {data.TRAIN_IMAGES: _learnable_images(y_train, rng), data.TRAIN_LABELS: y_train,
             data.TEST_IMAGES: _learnable_images(y_test, rng), data.TEST_LABELS: y_test}
    for name, a in files.items():
        with gzip.open(folder / name, "wb") as f:
            f.write(_idx(a))
    return folder


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    """(x_train, y_train, x_val, y_val) as float32 / int64 NumPy arrays."""
    ds = data.load("mnist", tiny_dir, verify=False, download=False)
    return data.split_validation(data.to_float(ds.x_train), ds.y_train, N_VAL)


def _cli(tiny_dir, out, *extra):
    """A CLI argument list for a fast run of all three roles on the tiny data.

    Without --teacher-hidden when the teacher is loaded (--teacher): a flag for a teacher that is not trained
    is refused.
    """
    teacher = [] if "--teacher" in extra else ["--teacher-hidden", "24"]
    return ["--data-dir", str(tiny_dir), "--no-verify", "--val", str(N_VAL), "--device", "cpu", "--no-progress",
            "--out", str(out), *teacher, "--student-hidden", "12", "--epochs", "2", "--batch-size", "32", *extra]


def _params(path):
    with np.load(path) as f:
        return [f[k] for k in sorted(f.files) if k.startswith("param_")]


# ---------------------------------------------------------------------------
# The training loop
# ---------------------------------------------------------------------------

REGULARISED = dict(dropout_input=0.2, dropout_hidden=0.5, max_norm=2.0)
FIT = dict(batch_size=32, lr=0.05, lr_decay=0.9, momentum=0.9, momentum_start=0.5, momentum_ramp=3,
           jitter=2, log=None, progress=False)


def _run(tiny, tmp_path, epochs, distil, name="run", resume=False, callback=None):
    x, y, xv, yv = tiny
    kw = {}
    if distil:
        kw = dict(teacher=nk.MLP([784, 20, 10], seed=7), T=4.0, alpha=0.7)  # jitter: soft targets per batch
    model = nk.MLP([784, 16, 16, 10], seed=3, **REGULARISED)
    history = trainer.train_model(model, x, y, epochs=epochs, x_val=xv, y_val=yv, seed=5,
                                checkpoint_path=tmp_path / f"{name}.ckpt.npz", resume=resume, callback=callback,
                                **FIT, **kw)
    return model, history


class Interrupt(Exception):
    pass


def _interrupt_after(n):
    def callback(epoch, history):
        if epoch == n:
            raise Interrupt  # as if Ctrl-C or kill -9 hit just after the checkpoint of epoch n
    return callback


@pytest.mark.parametrize("distil", [False, True], ids=["hard-labels", "distil"])
def test_interrupted_and_resumed_run_equals_uninterrupted_bit_for_bit(tiny, tmp_path, distil):
    straight, h_straight = _run(tiny, tmp_path, 4, distil, "straight")
    with pytest.raises(Interrupt):
        _run(tiny, tmp_path, 4, distil, "resumed", callback=_interrupt_after(2))
    resumed, h_resumed = _run(tiny, tmp_path, 4, distil, "resumed", resume=True)  # a fresh process would do this
    assert all(np.array_equal(a, b) for a, b in zip(straight.params, resumed.params))
    assert h_resumed["loss"] == h_straight["loss"] and h_resumed["val_errors"] == h_straight["val_errors"]
    assert h_resumed["epoch"] == [1, 2, 3, 4]


def test_callback_returning_true_stops_after_that_epoch(tiny, tmp_path):
    short, h_short = _run(tiny, tmp_path, 2, False, "short")
    seen = []

    def stop_after_2(epoch, history):
        seen.append(epoch)
        return epoch == 2

    stopped, h_stopped = _run(tiny, tmp_path, 5, False, "stopped", callback=stop_after_2)
    assert seen == [1, 2] and h_stopped["epoch"] == [1, 2]
    # epoch e's shuffle, masks and learning rate depend only on (seed, e): the same weights as a 2-epoch run
    assert all(np.array_equal(a, b) for a, b in zip(short.params, stopped.params))
    assert h_stopped["loss"] == h_short["loss"]


def test_same_seed_same_run_other_seed_other_run(tiny):
    x, y, _, _ = tiny

    def fit(seed):
        model = nk.MLP([784, 16, 10], seed=0, **REGULARISED)
        trainer.train_model(model, x, y, epochs=2, seed=seed, **FIT)
        return model.params

    a, b, c = fit(1), fit(1), fit(2)
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    assert not np.array_equal(a[0], c[0])  # shuffle, jitter and dropout all depend on the seed


def test_jitter_and_dropout_draws_depend_only_on_seed_and_epoch(tiny):
    x = tiny[0][:50]
    seeds = [trainer.epoch_seeds(5, e) for e in range(3)]
    assert seeds == [trainer.epoch_seeds(5, e) for e in range(3)]
    assert len({s for trio in seeds for s in trio}) == 9  # dropout, jitter, shuffle: all different
    _, s_jitter, _ = seeds[1]
    a = nkjitter.jitter(x, nk.backend.default_rng(np, s_jitter), 2)
    b = nkjitter.jitter(x, nk.backend.default_rng(np, s_jitter), 2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, x)


def test_cached_soft_targets_equal_given_logits(tiny):
    x, y, _, _ = tiny
    teacher = nk.MLP([784, 20, 10], seed=9)
    kw = dict(epochs=2, batch_size=32, lr=0.05, T=3.0, alpha=0.8, seed=2, progress=False, log=None)
    a, b = nk.MLP([784, 16, 10]), nk.MLP([784, 16, 10])
    trainer.train_model(a, x, y, teacher=teacher, **kw)
    trainer.train_model(b, x, y, teacher_logits=nkteacher.compute_teacher_logits(teacher, x, 3.0), **kw)
    assert all(np.array_equal(p, q) for p, q in zip(a.params, b.params))


@pytest.mark.parametrize("source", ["teacher_logits", "teacher", "jitter"])
def test_float32_student_stays_float32_with_float64_soft_targets_and_T(tiny, source):
    # float64 teacher logits and a NumPy float64 T would each promote the float32 gradient to float64
    x, y, _, _ = tiny
    teacher = nk.MLP([784, 20, 10], seed=9, dtype=np.float64)
    kw = dict(epochs=1, batch_size=32, lr=0.05, T=np.float64(3.0), alpha=np.float64(0.8), seed=2,
              progress=False, log=None)
    if source == "teacher_logits":
        kw["teacher_logits"] = teacher.forward(x.astype(np.float64))
    else:
        kw.update(teacher=teacher, jitter=1 if source == "jitter" else 0)
    student = nk.MLP([784, 16, 10])
    trainer.train_model(student, x, y, **kw)
    buffers = [a for layer in student.layers for a in getattr(layer, "_bufs", {}).values()]
    assert {a.dtype for a in buffers if a.dtype != bool} == {np.dtype(np.float32)}
    assert "dx" in student.linears[-1]._bufs  # the backward pass ran through the buffers checked above
    assert all(p.dtype == np.float32 for p in student.params)


def test_progress_bar_and_log_lines(tiny, capsys):
    x, y, xv, yv = tiny
    lines = []
    trainer.train_model(nk.MLP([784, 8, 10]), x, y, epochs=2, batch_size=8, x_val=xv, y_val=yv, progress=True,
                      log=lines.append, name="teacher")
    assert len(lines) == 2 and lines[1].startswith("teacher   epoch   2/2  loss ")
    assert "val " in lines[0] and " lr 0.1 " in lines[0] and lines[0].endswith(" s")
    assert "teacher 2/2" in capsys.readouterr().err  # tqdm's bar


def test_training_learns_the_tiny_task(tiny):
    x, y, xv, yv = tiny
    model = nk.MLP([784, 32, 10], seed=0)
    before = nkteacher.evaluate_errors(model, xv, yv)
    history = trainer.train_model(model, x, y, epochs=6, batch_size=16, lr=0.05, x_val=xv, y_val=yv,
                                progress=False, log=None)
    assert history["loss"][-1] < history["loss"][0]
    assert history["val_errors"][-1] < before / 2
    assert len(history["lr"]) == 6 and history["total_seconds"] > 0


def test_a_diverging_run_stops_at_the_end_of_the_epoch_and_says_why(tiny):
    x, y, xv, yv = tiny
    model = nk.MLP([784, 32, 10], seed=0)
    with np.errstate(all="ignore"), pytest.raises(FloatingPointError) as e:
        trainer.train_model(model, x, y, epochs=5, batch_size=16, lr=1e30, momentum=0.5, progress=False, log=None,
                            name="baseline")
    assert str(e.value) == ("baseline: the training loss of epoch 1 is nan: training diverged. The inputs and the "
                            "starting weights were all finite, so the steps blew up: lr 1e+30 is probably too large "
                            "for batch size 16 and momentum 0.5 (try a smaller lr)")
    teacher = nk.MLP([784, 8, 10], seed=1)
    with np.errstate(all="ignore"), pytest.raises(FloatingPointError) as e:  # distilling, without momentum
        trainer.train_model(nk.MLP([784, 32, 10], seed=0), x, y, teacher=teacher, epochs=5, batch_size=16, lr=1e30,
                            momentum=0.0, momentum_start=0.0, progress=False, log=None, name="distilled")
    assert str(e.value).endswith("training diverged. The inputs, the starting weights, the soft targets and T^2 were "
                                 "all finite, so the steps blew up: lr 1e+30 is probably too large for batch size 16 "
                                 "(try a smaller lr)")
    model = nk.MLP([784, 32, 10], seed=0)
    with np.errstate(all="ignore"), pytest.raises(FloatingPointError) as e:  # an optimizer without momentum
        trainer.train_model(model, x, y, optimizer=nk.Adam(model.params, lr=1e30), epochs=5, batch_size=16,
                            progress=False, log=None)
    assert str(e.value).endswith("lr 1e+30 is probably too large for batch size 16 (try a smaller lr)")


def test_train_step_defaults_are_T_1_and_alpha_1(tiny):
    """train_step(model, opt, x, y, v) with no T or alpha: the soft-target loss alone, at T = 1."""
    x, y, _, _ = tiny
    v = np.random.default_rng(0).standard_normal((32, 10)).astype(np.float32)
    a, b = nk.MLP([784, 16, 10], seed=0), nk.MLP([784, 16, 10], seed=0)
    la = trainer.train_step(a, nk.SGD(a.params, lr=0.1), x[:32], y[:32], v)
    lb = trainer.train_step(b, nk.SGD(b.params, lr=0.1), x[:32], y[:32], v, T=1.0, alpha=1.0)
    assert la == lb
    for p, q in zip(a.params, b.params):
        np.testing.assert_array_equal(p, q)


def test_cli_reports_divergence_and_exits_1(tiny_dir, tmp_path, capsys):
    with np.errstate(all="ignore"):
        status = train.main(_cli(tiny_dir, tmp_path, "--role", "student", "--lr", "1e30"))
    assert status == 1
    assert "training diverged" in capsys.readouterr().err


def test_schedules_are_set_per_epoch(tiny):
    x, y, _, _ = tiny
    h = trainer.train_model(nk.MLP([784, 8, 10]), x, y, epochs=4, lr=0.1, lr_decay=0.5, momentum=0.9,
                          momentum_start=0.5, momentum_ramp=2, progress=False, log=None)
    assert h["lr"] == pytest.approx([0.1, 0.05, 0.025, 0.0125])
    assert h["momentum"] == pytest.approx([0.5, 0.7, 0.9, 0.9])
    assert h["val_errors"] == [None] * 4


def test_checkpoint_of_more_epochs_than_asked_for_is_refused(tiny, tmp_path):
    x, y, _, _ = tiny
    kw = dict(batch_size=32, lr=0.05, seed=1, progress=False, log=None, checkpoint_path=tmp_path / "c.npz")
    trainer.train_model(nk.MLP([784, 16, 10]), x, y, epochs=3, **kw)
    with pytest.raises(ValueError, match="holds 3 epochs, more than epochs=2"):
        trainer.train_model(nk.MLP([784, 16, 10]), x, y, epochs=2, resume=True, **kw)
    history = trainer.train_model(nk.MLP([784, 16, 10]), x, y, epochs=3, resume=True, **kw)  # as many: nothing to do
    assert history["epoch"] == [1, 2, 3]


def test_checkpoint_of_other_settings_is_refused(tiny, tmp_path):
    x, y, _, _ = tiny
    path = tmp_path / "c.npz"
    trainer.train_model(nk.MLP([784, 8, 10]), x, y, epochs=1, lr=0.1, checkpoint_path=path, progress=False, log=None)
    with pytest.raises(ValueError, match="other settings.*lr"):
        trainer.train_model(nk.MLP([784, 8, 10]), x, y, epochs=2, lr=0.2, checkpoint_path=path, resume=True,
                          progress=False, log=None)


BASE_RUN = dict(batch_size=32, lr=0.1, lr_decay=0.9, momentum=0.9, momentum_start=0.5, momentum_ramp=2, jitter=1,
                seed=3)


@pytest.mark.parametrize("change", [
    dict(batch_size=16), dict(lr_decay=0.8), dict(momentum=0.8), dict(momentum_start=0.6), dict(momentum_ramp=3),
    dict(jitter=2), dict(seed=4), dict(T=3.0), dict(alpha=0.7), dict(weight_decay=1e-3),
], ids=lambda change: next(iter(change)))
def test_resume_refuses_a_checkpoint_of_any_other_setting(tiny, tmp_path, change):
    """Every setting but the number of epochs is in the checkpoint's signature: a resume that changes one is
    refused, and the message names it (here a distilled run, so that T and alpha count)."""
    x, y, _, _ = tiny
    teacher = nk.MLP([784, 12, 10], seed=0)
    path = tmp_path / "c.npz"
    kw = dict(teacher=teacher, T=2.0, alpha=0.5, **BASE_RUN, checkpoint_path=path, progress=False, log=None)
    trainer.train_model(nk.MLP([784, 8, 10]), x, y, epochs=1, **kw)
    with pytest.raises(checkpoint.CheckpointError) as e:
        trainer.train_model(nk.MLP([784, 8, 10]), x, y, epochs=2, resume=True, **{**kw, **change})
    assert f"was written with other settings ({next(iter(change))})" in str(e.value)


def test_weight_decay_is_the_loops_sgd_with_that_weight_decay_and_shrinks_the_weights(tiny):
    """TrainConfig.weight_decay: bit for bit a caller's SGD(weight_decay=...) (no momentum ramp, so the two
    loops take the same steps); the weights end smaller than without it."""
    x, y, _, _ = tiny
    kw = dict(epochs=3, batch_size=16, lr=0.05, momentum=0.9, seed=3, progress=False, log=None)
    own, caller, plain = (nk.MLP([784, 8, 10], seed=1) for _ in range(3))
    trainer.train_model(own, x, y, weight_decay=0.05, **kw)
    trainer.train_model(caller, x, y, optimizer=nk.SGD(caller.params, lr=0.05, momentum=0.9, weight_decay=0.05), **kw)
    trainer.train_model(plain, x, y, **kw)
    for a, b in zip(own.params, caller.params):
        np.testing.assert_array_equal(a, b)
    norm = [sum(float((p.astype(np.float64) ** 2).sum()) for p in m.params) for m in (own, plain)]
    assert norm[0] < 0.9 * norm[1]
    with pytest.raises(ValueError, match=r"weight_decay=0.05 is for the loop's own SGD; a caller's optimizer has its "
                                         r"own \(SGD\(..., weight_decay=...\)\)"):
        trainer.train_model(plain, x, y, weight_decay=0.05, optimizer=nk.SGD(plain.params, lr=0.05), **kw)


def test_a_checkpoints_signature_names_weight_decay_and_distortions_only_when_they_are_on(tiny, tmp_path):
    """The keys added after checkpoints were first written stay out of a run that does not use them, so that
    the checkpoints of earlier versions still resume."""
    x, y, _, _ = tiny
    keys = {}
    for name, extra in (("plain", {}), ("decayed", {"weight_decay": 1e-3}), ("bent", {"elastic": 5.0})):
        path = tmp_path / f"{name}.npz"
        trainer.train_model(nk.MLP([784, 8, 10]), x, y, epochs=1, checkpoint_path=path, progress=False, log=None,
                            **BASE_RUN, **extra)
        with np.load(path) as f:
            keys[name] = set(json.loads(str(f["signature"])))
    assert keys["plain"] == {"model", "n_train", "batch_size", "lr", "lr_decay", "momentum", "momentum_start",
                             "momentum_ramp", "jitter", "seed", "T", "alpha", "teacher"}
    assert keys["decayed"] == keys["plain"] | {"weight_decay"}
    assert keys["bent"] == keys["plain"] | {"elastic", "elastic_sigma"}


def test_resume_of_a_hard_label_run_ignores_T_and_alpha(tiny, tmp_path):
    """T and alpha are the soft targets' settings: a run without a teacher resumes whatever they are."""
    x, y, _, _ = tiny
    path = tmp_path / "c.npz"
    kw = dict(**BASE_RUN, checkpoint_path=path, progress=False, log=None)
    trainer.train_model(nk.MLP([784, 8, 10]), x, y, epochs=1, **kw)
    history = trainer.train_model(nk.MLP([784, 8, 10]), x, y, epochs=2, resume=True, T=5.0, alpha=0.2, **kw)
    assert history["epoch"] == [1, 2]


def test_resume_refuses_another_optimizer_or_its_lr(tiny, tmp_path):
    x, y, _, _ = tiny
    path = tmp_path / "c.npz"
    kw = dict(checkpoint_path=path, progress=False, log=None)
    model = nk.MLP([784, 8, 10])
    trainer.train_model(model, x, y, epochs=1, optimizer=nk.Adam(model.params, lr=0.01), **kw)
    for other in (lambda m: nk.Adam(m.params, lr=0.02), lambda m: nk.SGD(m.params, lr=0.01, momentum=0.9)):
        fresh = nk.MLP([784, 8, 10])
        with pytest.raises(checkpoint.CheckpointError, match=r"other settings \(optimizer\)"):
            trainer.train_model(fresh, x, y, epochs=2, optimizer=other(fresh), resume=True, **kw)


def test_checkpoint_functions_carry_adam_state(tmp_path):
    """save_checkpoint / load_checkpoint keep whatever state the optimizer has: Adam's two moments and its t."""
    rng = np.random.default_rng(0)
    model = nk.MLP([6, 5, 3], seed=1, dtype=np.float64)
    opt = nk.Adam(model.params, lr=0.01)
    for _ in range(3):
        opt.step([rng.normal(size=p.shape) for p in model.params])
    checkpoint.save_checkpoint(tmp_path / "c.npz", model, opt, 3, {"epoch": [1, 2, 3]}, '{"a": 1}')
    other = nk.MLP([6, 5, 3], seed=2, dtype=np.float64)
    other_opt = nk.Adam(other.params, lr=0.01)
    assert checkpoint.load_checkpoint(tmp_path / "c.npz", other, other_opt, '{"a": 1}') == (3, {"epoch": [1, 2, 3]})
    assert other_opt.t == 3
    for a, b in zip(opt.state()[:-1] + model.params, other_opt.state()[:-1] + other.params):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="holds 9 optimizer arrays, but SGD has 4"):
        checkpoint.load_checkpoint(tmp_path / "c.npz", other, nk.SGD(other.params, lr=0.1), '{"a": 1}')


def test_resume_may_extend_a_finished_run(tiny, tmp_path):
    x, y, _, _ = tiny
    kw = dict(lr=0.1, seed=1, progress=False, log=None)
    m4 = nk.MLP([784, 8, 10])
    trainer.train_model(m4, x, y, epochs=3, **kw)
    m = nk.MLP([784, 8, 10])
    trainer.train_model(m, x, y, epochs=2, checkpoint_path=tmp_path / "c.npz", **kw)
    h = trainer.train_model(m, x, y, epochs=3, checkpoint_path=tmp_path / "c.npz", resume=True, **kw)
    assert h["epoch"] == [1, 2, 3]
    assert all(np.array_equal(a, b) for a, b in zip(m.params, m4.params))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(epochs=-1), ValueError, "epochs"),
    (dict(epochs=1.5), TypeError, "epochs"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(lr=0.0), ValueError, "lr"),
    (dict(lr_decay=1.5), ValueError, "lr_decay"),
    (dict(momentum=1.0), ValueError, "momentum"),
    (dict(jitter=-1), ValueError, "jitter"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(resume=True), ValueError, "checkpoint_path"),
    (dict(teacher_logits=np.zeros((5, 10), np.float32)), ValueError, "teacher_logits"),
    (dict(teacher_logits=np.zeros((N_TRAIN - N_VAL, 10), np.float32), jitter=1), ValueError, "jitter"),
    (dict(teacher_logits=np.zeros((N_TRAIN - N_VAL, 10), np.float32), T=0.0), ValueError, "T"),
    (dict(teacher_logits=np.zeros((N_TRAIN - N_VAL, 10), np.float32), alpha=2.0), ValueError, "alpha"),
    (dict(teacher="teacher.npz"), TypeError, "teacher"),
    (dict(teacher=nk.MLP([784, 4, 5])), ValueError, "teacher"),
])
def test_bad_arguments_are_named(tiny, kwargs, error, match):
    x, y, _, _ = tiny
    kwargs = {"epochs": 1, **kwargs}
    with pytest.raises(error, match=match):
        trainer.train_model(nk.MLP([784, 8, 10]), x, y, progress=False, log=None, **kwargs)


def test_bad_model_and_data_are_named(tiny):
    x, y, _, _ = tiny
    kw = dict(epochs=1, progress=False, log=None)
    with pytest.raises(TypeError, match="model must be a nanokd MLP, got list"):
        trainer.train_model([nk.MLP([784, 8, 10])], x, y, **kw)
    with pytest.raises(ValueError, match=f"x has {len(x)} rows but y has {len(x) - 1}"):
        nkteacher.evaluate_errors(nk.MLP([784, 8, 10]), x, y[:-1])
    with pytest.raises(ValueError, match="^x is empty: nothing to train on$"):
        trainer.train_model(nk.MLP([784, 8, 10]), x[:0], y[:0], **kw)
    with pytest.raises(ValueError, match="jitter needs square images, but 195 pixels is not a side x side square"):
        trainer.train_model(nk.MLP([195, 8, 10]), x[:, :195], y, jitter=1, **kw)
    with pytest.raises(ValueError, match="^pass teacher or teacher_logits, not both$"):
        trainer.train_model(nk.MLP([784, 8, 10]), x, y, teacher=nk.MLP([784, 8, 10]),
                          teacher_logits=np.zeros((len(x), 10), np.float32), **kw)


def test_evaluate_errors_names_its_model_argument(tiny):
    x, y = tiny[0][:5], tiny[1][:5]
    for bad in ([nk.MLP([784, 10]), "x"], "x", []):
        with pytest.raises(TypeError, match="^model must be an MLP"):
            nkteacher.evaluate_errors(bad, x, y)


def test_bad_data_is_named(tiny):
    x, y, _, _ = tiny
    with pytest.raises(ValueError, match=rf"^x must have shape \(N, 784\), got \({len(x)}, 100\)$"):
        trainer.train_model(nk.MLP([784, 8, 10]), x[:, :100], y, epochs=1, log=None)
    with pytest.raises(ValueError, match=r"^x must have shape \(N, 784\), got \(784,\)$"):
        trainer.train_model(nk.MLP([784, 8, 10]), x[0], y, epochs=1, log=None)
    with pytest.raises(ValueError, match=rf"^y must have shape \({len(x)},\), got \(10,\)$"):
        trainer.train_model(nk.MLP([784, 8, 10]), x, y[:10], epochs=1, log=None)
    with pytest.raises(ValueError, match=r"^x_val must have shape \(N, 784\), got \(5, 100\)$"):
        trainer.train_model(nk.MLP([784, 8, 10]), x, y, epochs=1, log=None, x_val=x[:5, :100], y_val=y[:5])
    with pytest.raises(TypeError, match="y must hold integer"):
        trainer.train_model(nk.MLP([784, 8, 10]), x, y.astype(np.float32), epochs=1, log=None)


# ---------------------------------------------------------------------------
# Every check of the settings at its boundary, and every message whole
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("field, value, error, message", [
    ("epochs", -1, ValueError, "epochs must be >= 0, got -1"),
    ("epochs", 1.0, TypeError, "epochs must be an int, got float"),
    ("epochs", True, TypeError, "epochs must be an int, got bool"),
    ("batch_size", 0, ValueError, "batch_size must be >= 1, got 0"),
    ("lr", 0, ValueError, "lr must be in (0, inf), got 0"),
    ("lr", math.inf, ValueError, "lr must be in (0, inf), got inf"),
    ("lr", "0.1", TypeError, "lr must be a real number, got str"),
    ("lr", True, TypeError, "lr must be a real number, got bool"),
    ("lr_decay", 0, ValueError, "lr_decay must be in (0, 1], got 0"),
    ("lr_decay", 1.5, ValueError, "lr_decay must be in (0, 1], got 1.5"),
    ("momentum", 1, ValueError, "momentum must be in [0, 1), got 1"),
    ("momentum", -0.5, ValueError, "momentum must be in [0, 1), got -0.5"),
    ("momentum_start", 1, ValueError, "momentum_start must be in [0, 1), got 1"),
    ("momentum_ramp", -1, ValueError, "momentum_ramp must be >= 0, got -1"),
    ("momentum_ramp", 2.0, TypeError, "momentum_ramp must be an int, got float"),
    ("jitter", -1, ValueError, "jitter must be >= 0, got -1"),
    ("weight_decay", -1e-4, ValueError, "weight_decay must be in [0, inf), got -0.0001"),
    ("weight_decay", math.inf, ValueError, "weight_decay must be in [0, inf), got inf"),
    ("elastic", -1.0, ValueError, "elastic must be in [0, inf), got -1.0"),
    ("elastic", math.inf, ValueError, "elastic must be in [0, inf), got inf"),
    ("elastic_sigma", 0, ValueError, "elastic_sigma must be in (0, inf), got 0"),
    ("elastic_sigma", math.inf, ValueError, "elastic_sigma must be in (0, inf), got inf"),
    ("T", 0, ValueError, "T must be in (0, inf), got 0"),
    ("T", math.inf, ValueError, "T must be in (0, inf), got inf"),
    ("alpha", 1.5, ValueError, "alpha must be in [0, 1], got 1.5"),
    ("alpha", -0.5, ValueError, "alpha must be in [0, 1], got -0.5"),
    ("seed", -1, ValueError, "seed must be >= 0, got -1"),
], ids=lambda v: v if isinstance(v, str) and " " not in v else None)
def test_train_config_refuses_a_bad_field_with_its_name_and_range(field, value, error, message):
    """The bounds are printed as intervals: "(" and ")" exclude the end, "[" and "]" include it."""
    with pytest.raises(error) as e:
        trainer.TrainConfig(**{"epochs": 1, field: value})
    assert str(e.value) == message


def test_train_config_accepts_every_field_at_its_closed_ends_and_stores_plain_floats():
    low = trainer.TrainConfig(epochs=0, batch_size=1, lr_decay=1, momentum=0, momentum_start=0, momentum_ramp=0,
                              jitter=0, alpha=0, seed=0, weight_decay=0, elastic=0, elastic_sigma=0.5)
    assert (low.epochs, low.batch_size, low.lr_decay, low.momentum, low.alpha, low.weight_decay) == (0, 1, 1, 0, 0, 0)
    assert (low.elastic, low.elastic_sigma) == (0, 0.5)  # sigma below a pixel is allowed
    c = trainer.TrainConfig(epochs=1, T=np.float64(2.0), alpha=1, weight_decay=np.float32(0.5),
                            elastic=np.float32(3.0), elastic_sigma=np.int64(2))
    for name, value in (("T", 2.0), ("alpha", 1.0), ("weight_decay", 0.5), ("elastic", 3.0), ("elastic_sigma", 2.0)):
        assert type(getattr(c, name)) is float and getattr(c, name) == value, name


def test_train_model_fields_override_those_of_a_given_config(tiny):
    x, y, _, _ = tiny
    config = trainer.TrainConfig(epochs=1, lr=0.05)
    history = trainer.train_model(nk.MLP([784, 8, 10]), x, y, config, epochs=2, lr=0.02, progress=False, log=None)
    assert history["epoch"] == [1, 2] and history["lr"] == [0.02, 0.02]


def test_train_model_shows_a_progress_bar_by_default(tiny, capsys):
    x, y, _, _ = tiny
    trainer.train_model(nk.MLP([784, 8, 10]), x, y, epochs=1, log=None, name="student")
    assert "student 1/1" in capsys.readouterr().err


def test_train_model_messages_whole(tiny):
    x, y, _, _ = tiny
    kw = dict(epochs=1, progress=False, log=None)
    v = np.zeros((len(x), 10), np.float32)
    cases = [
        (dict(resume=True), "resume=True needs a checkpoint_path"),
        (dict(jitter=28), "jitter must be less than the image side 28, got 28"),
        (dict(teacher_logits=v, jitter=1),
         "teacher_logits cannot be used with jitter: pass teacher= to recompute them per batch"),
        (dict(teacher_logits=v[:5]), f"teacher_logits must have shape ({len(x)}, 10), got (5, 10)"),
        (dict(teacher=nk.MLP([784, 8, 10]), T=1e20),
         "T = 1e+20 is too large for a float32 model: T^2, which scales the soft term of the loss, overflows "
         "float32 (T must be at most 1.84e+19)"),
    ]
    for extra, message in cases:
        with pytest.raises(ValueError) as e:
            trainer.train_model(nk.MLP([784, 8, 10]), x, y, **{**kw, **extra})
        assert str(e.value) == message, extra
    model = nk.MLP([784, 8, 10])
    model.params[2][3, 1] = np.nan
    with pytest.raises(ValueError) as e:
        trainer.train_model(model, x, y, **kw)
    assert str(e.value) == ("found NaN or infinite values in the model's weights (params[2]) (the first in row 3): "
                            "training on them would only give a NaN loss")


def test_the_largest_temperature_whose_square_is_finite_in_float32_is_accepted(tiny):
    """T^2 may be float32's largest number itself: sqrt of it squares back to it exactly in float64."""
    x, y, _, _ = tiny
    top = float(np.finfo(np.float32).max)
    T = math.sqrt(top)
    assert T * T == top
    v = np.zeros((len(x), 10), np.float32)
    history = trainer.train_model(nk.MLP([784, 8, 10]), x, y, teacher_logits=v, T=T, epochs=0, log=None)
    assert history["epoch"] == []
    with pytest.raises(ValueError, match="is too large for a float32 model"):
        trainer.train_model(nk.MLP([784, 8, 10]), x, y, teacher_logits=v, T=float(np.nextafter(T, math.inf)),
                            epochs=0, log=None)


def test_a_validation_set_of_one_image_is_validated(tiny):
    x, y, xv, yv = tiny
    history = trainer.train_model(nk.MLP([784, 8, 10]), x, y, epochs=2, x_val=xv[:1], y_val=yv[:1],
                                  progress=False, log=None)
    assert all(e in (0, 1) for e in history["val_errors"])


def test_resuming_a_finished_run_spends_no_time_on_soft_targets(tiny, tmp_path):
    x, y, _, _ = tiny
    kw = dict(teacher=nk.MLP([784, 12, 10], seed=1), T=3.0, epochs=1, checkpoint_path=tmp_path / "c.npz",
              progress=False, log=None)
    first = trainer.train_model(nk.MLP([784, 8, 10]), x, y, **kw)
    assert first["setup_seconds"] > 0
    again = trainer.train_model(nk.MLP([784, 8, 10]), x, y, resume=True, **kw)
    assert again["setup_seconds"] == 0.0 and again["epoch"] == [1]


def test_a_checkpoint_records_the_data_size_and_no_teacher_for_hard_labels(tiny, tmp_path):
    """The signature: a resume on another number of training images is refused, and a hard-label run's
    signature names no teacher, T or alpha."""
    x, y, _, _ = tiny
    path = tmp_path / "c.npz"
    kw = dict(checkpoint_path=path, progress=False, log=None)
    trainer.train_model(nk.MLP([784, 8, 10]), x, y, epochs=1, **kw)
    with np.load(path) as f:
        sig = json.loads(str(f["signature"]))
    assert sig["n_train"] == len(x) and sig["teacher"] is None and sig["T"] is None and sig["alpha"] is None
    with pytest.raises(checkpoint.CheckpointError, match=r"other settings \(n_train\)"):
        trainer.train_model(nk.MLP([784, 8, 10]), x[:-1], y[:-1], epochs=2, resume=True, **kw)


# ---------------------------------------------------------------------------
# Soft targets
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("T", [1.0, 4.0, 20.0])
def test_ensemble_soft_targets_are_the_mean_of_tempered_probabilities(T):
    rng = np.random.default_rng(0)
    x = rng.random((50, 784), dtype=np.float32)
    teachers = [nk.MLP([784, 30, 10], seed=s) for s in range(3)]
    for t in teachers:
        t.params[-1][...] = rng.normal(0, 3, 10)  # a bias per class, so the teachers disagree
    v = nkteacher.compute_teacher_logits(teachers, x, T, batch_size=16)
    mean_p = np.mean([nk.softmax(t.forward(x), T) for t in teachers], axis=0)
    np.testing.assert_allclose(nk.softmax(v, T), mean_p, rtol=1e-5, atol=1e-7)


def test_one_teacher_gives_its_own_logits():
    x = np.random.default_rng(0).random((20, 784), dtype=np.float32)
    t = nk.MLP([784, 30, 10])
    np.testing.assert_array_equal(nkteacher.compute_teacher_logits(t, x, 20.0), t.forward(x))


def test_ensemble_logits_survive_extreme_logits():
    v1 = np.array([[1000.0, 0.0, -1000.0]], np.float32)
    v2 = np.array([[-1000.0, 0.0, 1000.0]], np.float32)
    v = nkteacher.ensemble_logits([v1, v2], T=1.0)
    assert np.isfinite(v).all()
    np.testing.assert_allclose(nk.softmax(v), [[0.5, 0.0, 0.5]], atol=1e-6)


def test_evaluate_errors_of_a_model_and_an_ensemble(tiny):
    x, y, _, _ = tiny
    m = nk.MLP([784, 8, 10])
    assert nkteacher.evaluate_errors(m, x, y) == int((m.predict(x) != y).sum())
    assert nkteacher.evaluate_errors([m, m], x, y) == nkteacher.evaluate_errors(m, x, y)
    assert nkteacher.evaluate_errors(m, x[:0], y[:0]) == 0


# ---------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------

ENTRY_TYPES = {"test_errors": int, "test_error_pct": float, "val_errors": int, "hidden": list, "epochs": int,
               "seconds": float, "params": int}


def test_cli_runs_all_three_roles_and_writes_results_json(tiny_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main(_cli(tiny_dir, out)) == 0
    results = json.loads((out / "results.json").read_text())
    assert {k: results[k] for k in ("dataset", "preset", "seed", "device")} == {
        "dataset": "mnist", "preset": "quick", "seed": 0, "device": "cpu"}
    assert list(results["models"]) == ["teacher", "baseline", "distilled"]
    for name, entry in results["models"].items():
        for key, type_ in ENTRY_TYPES.items():
            assert isinstance(entry[key], type_), (name, key, entry[key])
        assert 0 <= entry["test_errors"] <= N_TEST
        assert entry["test_error_pct"] == pytest.approx(100 * entry["test_errors"] / N_TEST)
        assert entry["epochs"] == 2
    assert results["models"]["teacher"]["hidden"] == [24]
    assert results["models"]["baseline"]["hidden"] == results["models"]["distilled"]["hidden"] == [12]
    assert results["models"]["distilled"]["T"] == 20.0 and results["models"]["distilled"]["alpha"] == 0.9
    for f in ("teacher.npz", "student.npz", "distilled.npz", "config.json",
              "teacher.ckpt.npz", "student.ckpt.npz", "distilled.ckpt.npz"):
        assert (out / f).is_file(), f
    assert nk.MLP.load(out / "distilled.npz").sizes == [784, 12, 10]
    table = capsys.readouterr().out
    assert "distilled (T=20, alpha=0.9)" in table and f"/ {N_TEST}" in table


def test_cli_resume_after_interruption_gives_the_same_files(tiny_dir, tmp_path, monkeypatch, capsys):
    argv = ["--seed", "3", "--jitter", "1", "--teacher-dropout-hidden", "0.5", "--T", "3", "--alpha", "0.5"]
    assert train.main(_cli(tiny_dir, tmp_path / "straight", *argv, "--epochs", "3")) == 0

    real = experiment.train_model

    def ctrl_c_after_epoch_2(epoch, history):
        if epoch == 2:
            raise KeyboardInterrupt

    def interrupted(*args, **kwargs):  # Ctrl-C after the 2nd epoch of the distilled student
        if kwargs["name"] == "distilled":
            kwargs["callback"] = ctrl_c_after_epoch_2
        return real(*args, **kwargs)

    monkeypatch.setattr(experiment, "train_model", interrupted)
    out = tmp_path / "resumed"
    assert train.main(_cli(tiny_dir, out, *argv, "--epochs", "3")) == 130
    assert f"--resume {out}" in capsys.readouterr().err
    assert not (out / "distilled.npz").exists() and not (out / "results.json").exists()
    monkeypatch.setattr(experiment, "train_model", real)
    config = json.loads((out / "config.json").read_text())  # as an earlier version wrote it, without the keys
    for key in settings.LATER_KEYS:                          # added since: they mean what that version did
        del config[key]
    for role in ("teacher", "student"):
        for key in settings.LATER_RECIPE_KEYS:
            del config[role][key]
    (out / "config.json").write_text(json.dumps(config))
    assert train.main(["--resume", str(out), "--no-progress"]) == 0
    for f in ("teacher.npz", "student.npz", "distilled.npz"):
        for a, b in zip(_params(tmp_path / "straight" / f), _params(out / f)):
            np.testing.assert_array_equal(a, b)
    straight = json.loads((tmp_path / "straight" / "results.json").read_text())
    resumed = json.loads((out / "results.json").read_text())
    for name in straight["models"]:
        assert straight["models"][name]["test_errors"] == resumed["models"][name]["test_errors"]


def _configs_seen(monkeypatch):
    """{model name: the TrainConfig experiment.train_model got}, filled in as the run trains."""
    seen = {}
    real = experiment.train_model

    def spy(model, x, y, config, **kwargs):
        seen[kwargs["name"]] = config
        return real(model, x, y, config, **kwargs)

    monkeypatch.setattr(experiment, "train_model", spy)
    return seen


def test_cli_elastic_bends_the_teachers_images_only(tiny_dir, tmp_path, monkeypatch):
    """--teacher-elastic reaches the teacher's TrainConfig (and its checkpoint and results), not the students'."""
    seen = _configs_seen(monkeypatch)
    out = tmp_path / "e"
    assert train.main(_cli(tiny_dir, out, "--teacher-elastic", "20")) == 0
    assert seen["teacher"].elastic == 20.0 and seen["teacher"].elastic_sigma == 4.0
    assert seen["baseline"].elastic == seen["distilled"].elastic == 0.0
    config = json.loads((out / "config.json").read_text())
    assert config["teacher"]["elastic"] == 20.0 and config["student"]["elastic"] == 0.0
    plain = tmp_path / "p"
    assert train.main(_cli(tiny_dir, plain, "--role", "teacher")) == 0
    assert _params(out / "teacher.npz")[0].tolist() != _params(plain / "teacher.npz")[0].tolist()


def test_cli_weight_decay_reaches_the_students_sgd_only(tiny_dir, tmp_path, monkeypatch):
    """--student-weight-decay reaches both students' TrainConfig and config.json, not the teacher's."""
    seen = _configs_seen(monkeypatch)
    out = tmp_path / "w"
    assert train.main(_cli(tiny_dir, out, "--student-weight-decay", "0.001")) == 0
    assert seen["baseline"].weight_decay == seen["distilled"].weight_decay == 0.001
    assert seen["teacher"].weight_decay == 0.0
    config = json.loads((out / "config.json").read_text())
    assert config["student"]["weight_decay"] == 0.001 and config["teacher"]["weight_decay"] == 0.0


def test_cli_distil_from_an_ensemble_of_saved_teachers(tiny_dir, tmp_path):
    for i in range(2):
        assert train.main(_cli(tiny_dir, tmp_path / f"t{i}", "--role", "teacher", "--seed", str(i))) == 0
    out = tmp_path / "d"
    files = [str(tmp_path / f"t{i}" / "teacher.npz") for i in range(2)]
    assert train.main(_cli(tiny_dir, out, "--role", "distill", "--teacher", *files, "--T", "5")) == 0
    models = json.loads((out / "results.json").read_text())["models"]
    assert list(models) == ["teacher", "distilled"]
    assert models["teacher"]["ensemble"] == 2 and models["teacher"]["epochs"] == 0
    assert models["distilled"]["T"] == 5.0
    assert not (out / "teacher.npz").exists()


def test_cli_one_role_alone(tiny_dir, tmp_path):
    assert train.main(_cli(tiny_dir, tmp_path, "--role", "student", "--val", "0")) == 0
    models = json.loads((tmp_path / "results.json").read_text())["models"]
    assert list(models) == ["baseline"] and models["baseline"]["val_errors"] is None


def test_role_flags_win_over_plain_flags_and_presets():
    parser = train.build_parser()
    s = train.settings_from_args(parser.parse_args(["--epochs", "3", "--teacher-epochs", "7", "--lr", "0.5"]), parser)
    assert s["teacher"]["epochs"] == 7 and s["student"]["epochs"] == 3
    assert s["teacher"]["lr"] == s["student"]["lr"] == 0.5
    assert s["teacher"]["hidden"] == list(train.PRESETS["quick"]["teacher"].hidden)
    assert s == json.loads(json.dumps(s))  # what config.json gives back on --resume
    p = train.settings_from_args(parser.parse_args(["--preset", "paper"]), parser)
    assert p["teacher"]["hidden"] == [1200, 1200] and p["student"]["hidden"] == [800, 800]
    assert p["teacher"]["jitter"] == 2 and p["teacher"]["dropout_input"] == 0.2 and p["T"] == 20.0


def test_help_explains_every_flag(capsys, preset_columns):
    with pytest.raises(SystemExit) as e:
        train.main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for flag in ["--role", "--preset", "--teacher", "--T", "--alpha", "--seed", "--device", "--out", "--resume",
                 "--dataset", "--data-dir", "--val", *(train._flag(f) for f in train.RECIPE_FLAGS)]:
        assert flag in text, flag
    assert "--teacher-FLAG" in text and ("quick", "teacher") in preset_columns(text)


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_the_table_of_defaults_keeps_every_column_apart_and_aligned(dataset):
    """Every heading and value ends at its column's right edge, with a space before it (a heading as long
    as "consistent teacher" once ran into its neighbour)."""
    lines = train._preset_table(dataset).splitlines()
    heading = lines[2]
    ends = [m.end() for m in re.finditer(r"\S+", heading)]
    assert len(ends) == 2 * len(settings.presets_for(dataset))
    assert lines[3].split() == ["teacher", "student"] * (len(ends) // 2)
    for line in lines[4:4 + len(train.RECIPE_FLAGS) + 2]:
        flag, _, rest = line.strip().partition(" ")
        assert flag.startswith("--"), line
        values = re.finditer(r"\S+(?: \S+)*", line[2 + 18:])  # a value may hold one space: "800 800"
        for m in values:
            assert 2 + 18 + m.end() in ends and line[2 + 18 + m.start() - 1] == " ", (line, m.group())


@pytest.mark.parametrize("argv, match", [
    (["--T", "0"], "--T"),
    (["--alpha", "1.5"], "--alpha"),
    (["--hidden", "0"], "--hidden"),
    (["--student-hidden", "12", "x"], "--student-hidden"),
    (["--epochs", "-1"], "--epochs"),
    (["--lr-decay", "0"], "--lr-decay"),
    (["--momentum", "1"], "--momentum"),
    (["--dropout-hidden", "1"], "--dropout-hidden"),
    (["--device", "tpu"], "--device"),
    (["--role", "distill"], "--teacher"),
    (["--role", "teacher", "--teacher", "t.npz"], "--teacher"),
    (["--teacher", "does-not-exist.npz"], "--teacher"),
    (["--resume", "somewhere", "--epochs", "3"], "--epochs"),
    (["--resume", "does-not-exist"], "--resume"),
    (["--teach", "t.npz"], "--teach"),  # no abbreviations: --teacher vs --teacher-epochs
])
def test_bad_flags_exit_2_naming_the_flag(argv, match, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.npz").write_bytes(b"")
    with pytest.raises(SystemExit) as e:
        train.main(argv)
    assert e.value.code == 2
    assert match in capsys.readouterr().err


def test_too_large_validation_split_exits_2_naming_the_flag(tiny_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        train.main(_cli(tiny_dir, tmp_path, "--val", str(N_TRAIN)))
    assert e.value.code == 2
    assert f"argument --val: must be in [0, {N_TRAIN})" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--val"):  # run() itself, called from Python, raises
        experiment.run(train.settings_from_args(train.build_parser().parse_args(
            _cli(tiny_dir, tmp_path, "--val", str(N_TRAIN))), None), tmp_path / "run", log=None)


def test_names_that_moved_out_of_train_are_still_importable_from_it():
    """nanokd.train held the loop, checkpoints, teacher logits and presets; they stay importable from there."""
    from nanokd import presets
    moved = {"train_model": trainer, "epoch_seeds": trainer, "TrainConfig": trainer, "evaluate_errors": nkteacher,
             "compute_teacher_logits": nkteacher, "ensemble_logits": nkteacher, "save_checkpoint": checkpoint,
             "load_checkpoint": checkpoint, "PRESETS": presets, "Recipe": presets, "run": experiment,
             "format_table": experiment, "FlagError": experiment, "FILES": experiment, "ROLES": experiment}
    for name, module in moved.items():
        assert getattr(train, name) is getattr(module, name), name


@pytest.mark.skipif(not nk.cuda_available(), reason="CuPy with a CUDA GPU is not available here")
def test_a_teacher_on_another_device_than_the_student_is_refused(tiny):
    x, y, _, _ = tiny
    with pytest.raises(ValueError) as e:
        trainer.train_model(nk.MLP([784, 8, 10]), x, y, teacher=nk.MLP([784, 8, 10], device="cuda"), epochs=1,
                            progress=False, log=None)
    assert str(e.value) == "teacher is on cuda but the student on cpu"
