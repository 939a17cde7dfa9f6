"""Behaviour tests: what training, evaluation and the command line *do*, in numbers.

The tests of test_train.py check that runs finish, resume and write their
files; the ones here check that the numbers are right: that a constraint
holds after training, that the soft targets are those of the images the
student saw, that every training flag changes the run exactly as the same
value passed to :func:`nanokd.train.train_model` does (the weights are
compared bit for bit), that an ensemble is scored by its mean probability,
and that the helpers they rest on (Adam's weight decay, ``MLP.predict``,
``MLP.load``) compute what their docstrings say.

Each test was checked to fail on a small deliberate bug in the code it
covers (issue 24).  Tiny nets on the tiny IDX data of test_train.py, so the
whole file takes seconds; NumPy only (no CuPy, no PyTorch).
"""

import json
import time

import numpy as np
import pytest

import nanokd as nk
from nanokd import data, experiment, train, trainer
from nanokd import teacher as nkteacher
from test_train import N_VAL, tiny, tiny_dir  # noqa: F401  (fixtures: the tiny IDX folder and its arrays)

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _cli(tiny_dir, out, *flags):
    """Arguments of a CPU run on the tiny data, without progress bars, writing into ``out``."""
    return ["--data-dir", str(tiny_dir), "--no-verify", "--val", str(N_VAL), "--device", "cpu", "--no-progress",
            "--out", str(out), *flags]


def _flags(values):
    """``{"batch_size": 16, ...}`` as command-line flags ``["--batch-size", "16", ...]``."""
    return [a for field, v in values.items() for a in (train._flag(field), str(v))]


def _assert_same_weights(path, model):
    """The model saved at ``path`` has exactly ``model``'s weights (same dtype, same bits)."""
    saved = nk.MLP.load(path)
    assert saved.config == model.config
    for p, q in zip(saved.params, model.params):
        assert p.dtype == q.dtype
        np.testing.assert_array_equal(p, q)


def _column_norms(W):
    """The norm of each column of W: each hidden unit's incoming weight vector (float64)."""
    return np.sqrt((W.astype(np.float64) ** 2).sum(axis=0))


def _one_layer(bias):
    """A model without hidden layers whose logits are ``bias`` for every input (W = 0)."""
    model = nk.MLP([4, len(bias)], dtype="float64")
    model.params[0][...] = 0.0
    model.params[1][...] = bias
    return model


#: A recipe in which every training flag differs from its default in both presets.
RECIPE = dict(epochs=2, batch_size=16, lr=0.05, lr_decay=0.8, momentum=0.8, momentum_start=0.3,
              momentum_ramp=2, jitter=1)
REGULARISATION = dict(dropout_input=0.1, dropout_hidden=0.3, max_norm=1.5)


# ---------------------------------------------------------------------------
# The training loop
# ---------------------------------------------------------------------------


def test_max_norm_holds_after_training_and_would_not_without_it(tiny):
    """After every step each hidden unit's incoming weights are projected onto the ball of radius c.

    So after training every column norm of every hidden layer's W is <= c (up
    to float32 rounding of the rescaled column).  He initialisation gives
    columns of norm about sqrt(2) > c = 1, so the same run without the
    projection ends with norms above c: the bound is the projection's doing.
    The output layer is not constrained (the paper's max-norm is on hidden units).
    """
    x, y, _, _ = tiny
    c = 1.0

    def fit(max_norm):
        model = nk.MLP([784, 16, 16, 10], max_norm=max_norm, seed=1)
        train.train_model(model, x, y, epochs=1, batch_size=32, lr=0.05, seed=2, progress=False, log=None)
        return model

    projected, free = fit(c), fit(None)
    for W in projected.params[0:-2:2]:
        norms = _column_norms(W)
        assert norms.max() <= c * (1 + 1e-6)
        assert norms.max() >= c * (1 - 1e-3)  # some units sit on the sphere: the constraint was active
    for W in free.params[0:-2:2]:
        assert _column_norms(W).max() > 1.1 * c


@pytest.mark.parametrize("lookup", [False, True])
def test_jittered_soft_targets_are_the_teachers_logits_of_the_shifted_images(tiny, monkeypatch, lookup):
    """With jitter and a teacher, each batch's soft targets are the teacher's logits of that batch's images.

    The student sees shifted images; the teacher must be asked about the same
    shifted images, or the targets would describe other inputs.  A spy on the
    student's forward pass records the images of each training batch, a spy on
    the loss records the logits v it was given: v must equal the teacher's
    forward pass on those images.  Recomputed per batch, bit for bit (the
    same rows, the same net); looked up from the shifted-logits cache, to
    float32 rounding (the rows were computed in other batches).  The batches
    are checked to hold shifted images, so that the unshifted ones would give
    other v.
    """
    monkeypatch.setattr(trainer, "SHIFT_CACHE_BYTES", 1 << 30 if lookup else 0)
    x, y, _, _ = tiny
    teacher = nk.MLP([784, 20, 10], seed=7)
    student = nk.MLP([784, 12, 10], seed=3)
    images, targets = [], []

    real_forward = student.forward

    def forward_spy(xb, train=False, keep_masks=False):
        if train:
            images.append(xb.copy())
        return real_forward(xb, train=train, keep_masks=keep_masks)

    real_loss = trainer.distillation_loss_and_grad

    def loss_spy(z, v, yb, T, alpha, check=True):
        targets.append(v.copy())
        return real_loss(z, v, yb, T, alpha, check=check)

    student.forward = forward_spy
    monkeypatch.setattr(trainer, "distillation_loss_and_grad", loss_spy)
    train.train_model(student, x, y, epochs=1, batch_size=50, jitter=2, teacher=teacher, T=3.0, alpha=0.5,
                      seed=4, progress=False, log=None)

    assert len(images) == len(targets) == 4
    unshifted = {row.tobytes() for row in x}
    for xb, v in zip(images, targets):
        assert v.dtype == np.float32  # the training path's dtype, whichever way the targets were made
        assert sum(row.tobytes() not in unshifted for row in xb) > len(xb) // 2  # most rows were moved
        if lookup:
            np.testing.assert_allclose(v, teacher.forward(xb), rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_array_equal(v, teacher.forward(xb))


@pytest.mark.parametrize("source", ["teacher", "teacher_logits"])
def test_resume_refuses_a_checkpoint_of_another_teacher(tiny, tmp_path, source):
    """A distillation checkpoint is bound to its teacher (a fingerprint of its weights or logits).

    Resuming it with another teacher would continue a run towards other soft
    targets and call it the same run, so it is refused, naming the teacher;
    resuming with the same teacher is accepted.
    """
    x, y, _, _ = tiny
    path = tmp_path / "c.npz"

    def fit(teacher_seed, epochs, resume):
        teacher = nk.MLP([784, 20, 10], seed=teacher_seed)
        given = {"teacher": teacher} if source == "teacher" else {
            "teacher_logits": train.compute_teacher_logits(teacher, x, 2.0)}
        return train.train_model(nk.MLP([784, 8, 10]), x, y, epochs=epochs, T=2.0, alpha=0.5, checkpoint_path=path,
                                 resume=resume, progress=False, log=None, **given)

    fit(teacher_seed=1, epochs=1, resume=False)
    with pytest.raises(ValueError, match=r"other settings \(teacher\)"):
        fit(teacher_seed=2, epochs=2, resume=True)
    assert fit(teacher_seed=1, epochs=2, resume=True)["epoch"] == [1, 2]


# ---------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------


def test_an_ensemble_predicts_the_class_of_highest_mean_probability():
    """An ensemble's class is argmax_c (1/K) sum_k softmax(z_k)_c: neither its first member's nor the mean logit's.

    Member A has logits (0, 6, 9.9), B has (10.5, 6, 0) for every input:

        softmax(A) = (0.00005, 0.0195, 0.9805)   -> class 2
        softmax(B) = (0.9890,  0.0110, 0.00003)  -> class 0
        mean       = (0.4948,  0.0152, 0.4903)   -> class 0
        mean logit = (5.25,    6,      4.95)     -> class 1

    so with every label 0 the ensemble makes no error, in either order,
    while A alone (or the averaged logits) would miss every row.
    """
    a, b = _one_layer([0.0, 6.0, 9.9]), _one_layer([10.5, 6.0, 0.0])
    x = np.random.default_rng(0).random((7, 4))
    y = np.zeros(7, dtype=np.int64)
    assert train.evaluate_errors(a, x, y) == 7 and train.evaluate_errors(b, x, y) == 0
    assert train.evaluate_errors([a, b], x, y) == 0
    assert train.evaluate_errors([b, a], x, y) == 0
    assert train.evaluate_errors([a, b], x, np.full(7, 2)) == 7


def test_cli_results_count_the_test_errors_of_the_saved_models(tiny_dir, tmp_path):
    """results.json's test_errors are the misclassified test images of the models the run saved.

    Recounted here from the saved files with a plain argmax of the logits
    (of the mean of the teachers' probabilities for an ensemble of two teachers
    that disagree on some images), on the test set read from the IDX files.
    """
    rng = np.random.default_rng(0)
    files = []
    for seed in (0, 1):
        teacher = nk.MLP([784, 20, 10], seed=seed)
        teacher.params[-1][...] = rng.normal(0, 2, 10)  # a bias per class, so that the two disagree
        files.append(str(tmp_path / f"t{seed}.npz"))
        teacher.save(files[-1])
    out = tmp_path / "run"
    assert train.main(_cli(tiny_dir, out, "--role", "distill", "--teacher", *files, "--hidden", "12",
                           "--epochs", "2")) == 0
    models = json.loads((out / "results.json").read_text())["models"]

    ds = data.load("mnist", tiny_dir, verify=False, download=False)
    x_test, y_test = data.to_float(ds.x_test), ds.y_test
    teachers = [nk.MLP.load(f) for f in files]
    mean_p = np.mean([nk.softmax(t.forward(x_test).astype(np.float64)) for t in teachers], axis=0)
    first_alone = int((teachers[0].forward(x_test).argmax(axis=1) != y_test).sum())
    assert models["teacher"]["test_errors"] == int((mean_p.argmax(axis=1) != y_test).sum()) != first_alone
    distilled = nk.MLP.load(out / "distilled.npz")
    assert models["distilled"]["test_errors"] == int((distilled.forward(x_test).argmax(axis=1) != y_test).sum())


# ---------------------------------------------------------------------------
# The command line: every flag trains what train_model trains with that value
# ---------------------------------------------------------------------------


def test_cli_teacher_flags_train_what_train_model_trains(tiny, tiny_dir, tmp_path):
    """``--seed``, ``--batch-size``, ``--lr``, ``--lr-decay``, ``--momentum*``, ``--dropout-*``, ``--max-norm``,
    ``--jitter`` reach the teacher: its saved weights equal, bit for bit, those of

        MLP(sizes, dropout_input, dropout_hidden, max_norm, seed=S)  trained by  train_model(..., seed=S)

    with the same values.  Every value differs from its default, so a flag
    that is dropped or replaced on its way makes other weights.
    """
    seed = 2
    out = tmp_path / "run"
    assert train.main(_cli(tiny_dir, out, "--role", "teacher", "--seed", str(seed), "--hidden", "12",
                           *_flags(RECIPE), *_flags(REGULARISATION))) == 0
    x, y, xv, yv = tiny
    model = nk.MLP([784, 12, 10], seed=seed, **REGULARISATION)
    train.train_model(model, x, y, x_val=xv, y_val=yv, seed=seed, progress=False, log=None, **RECIPE)
    _assert_same_weights(out / "teacher.npz", model)


def test_cli_distillation_flags_train_what_train_model_trains(tiny, tiny_dir, tmp_path):
    """``--T``, ``--alpha``, ``--seed`` and the recipe flags reach the distilled student.

    The student of ``--seed S`` is built and trained with seed S + 1 (the
    baseline's), from the saved teacher at temperature T with weight alpha;
    its saved weights equal those of the same train_model call, bit for bit.
    With ``--jitter`` the soft targets are recomputed per shifted batch, here
    as there.
    """
    seed, T, alpha = 4, 3.0, 0.6
    teacher_file = tmp_path / "teacher.npz"
    nk.MLP([784, 20, 10], seed=9).save(teacher_file)
    out = tmp_path / "run"
    assert train.main(_cli(tiny_dir, out, "--role", "distill", "--teacher", str(teacher_file), "--seed", str(seed),
                           "--T", str(T), "--alpha", str(alpha), "--hidden", "12",
                           *_flags(RECIPE), *_flags(REGULARISATION))) == 0
    x, y, xv, yv = tiny
    model = nk.MLP([784, 12, 10], seed=seed + 1, **REGULARISATION)
    train.train_model(model, x, y, x_val=xv, y_val=yv, seed=seed + 1, teacher=nk.MLP.load(teacher_file), T=T,
                      alpha=alpha, progress=False, log=None, **RECIPE)
    _assert_same_weights(out / "distilled.npz", model)


def test_baseline_and_distilled_students_start_from_the_same_weights(tiny_dir, tmp_path, monkeypatch):
    """The two students differ only in their targets: same initial weights, same seed for the epochs' draws.

    A spy on train_model records each role's weights when its training
    starts (``--epochs 0``: nothing is trained, only built).
    """
    starts = {}
    real = experiment.train_model

    def spy(model, x, y, config, **kwargs):
        starts[kwargs["name"]] = ([p.copy() for p in model.params], config.seed)
        return real(model, x, y, config, **kwargs)

    monkeypatch.setattr(experiment, "train_model", spy)
    assert train.main(_cli(tiny_dir, tmp_path, "--seed", "3", "--teacher-hidden", "20", "--student-hidden", "12",
                           "--epochs", "0")) == 0
    assert set(starts) == {"teacher", "baseline", "distilled"}
    (base, base_seed), (dist, dist_seed) = starts["baseline"], starts["distilled"]
    assert base_seed == dist_seed
    for p, q in zip(base, dist):
        np.testing.assert_array_equal(p, q)


# ---------------------------------------------------------------------------
# Optimizer and model helpers
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(5, 3), (300, 300)], ids=["small", "in-pieces"])
def test_adam_weight_decay_matches_its_formula(shape):
    """Adam with weight decay lam adds lam * w to the gradient before the moments (L2, PyTorch's Adam).

        g <- g + lam w;  m <- b1 m + (1 - b1) g;  s <- b2 s + (1 - b2) g^2
        w <- w - lr (m / (1 - b1^t)) / (sqrt(s / (1 - b2^t)) + eps)

    Two steps written out in float64 on whole arrays; (300, 300) is more than
    one BLOCK, so the update runs piece by piece.  The decay is made large
    (lam w as big as g) so that a wrong sign changes the step.
    """
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=shape)
    lr, (b1, b2), eps, lam = 0.01, (0.8, 0.99), 1e-8, 2.0
    w = w0.copy()
    opt = nk.Adam([w], lr=lr, betas=(b1, b2), eps=eps, weight_decay=lam)
    ref, m, s = w0.copy(), np.zeros(shape), np.zeros(shape)
    for t in (1, 2):
        g = rng.normal(size=shape)
        opt.step([g.copy()])
        g = g + lam * ref
        m = b1 * m + (1 - b1) * g
        s = b2 * s + (1 - b2) * g * g
        ref = ref - lr * (m / (1 - b1 ** t)) / (np.sqrt(s / (1 - b2 ** t)) + eps)
    np.testing.assert_allclose(w, ref, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("rows", [56, 53], ids=["whole-batches", "short-last-batch"])
def test_predict_in_batches_equals_one_batch(rows):
    """``predict(x, batch_size=k)`` labels every row as the argmax of one forward pass over all rows.

    56 or 53 rows in batches of 8 (the last one full or short): each batch
    must be its own rows.  The random net gives the rows varied classes, so a
    batch labelled with another batch's classes would show.
    """
    rng = np.random.default_rng(0)
    model = nk.MLP([20, 16, 10], seed=1, dtype="float64")
    x = rng.normal(size=(rows, 20))
    expected = model.forward(x).argmax(axis=1)
    assert len(set(expected.tolist())) > 3
    np.testing.assert_array_equal(model.predict(x, batch_size=8), expected)
    np.testing.assert_array_equal(model.predict(x), expected)


@pytest.mark.parametrize("saved, wanted", [("float32", "float64"), ("float64", "float32")])
def test_load_with_dtype_gives_a_model_of_that_dtype(tmp_path, saved, wanted):
    """``MLP.load(path, dtype=...)`` rebuilds the model in that dtype: its weights are the file's, cast.

    E.g. a trained float32 model loaded in float64 for a gradient check.
    """
    model = nk.MLP([12, 7, 3], dropout_hidden=0.3, seed=5, dtype=saved)
    model.save(tmp_path / "m.npz")
    loaded = nk.MLP.load(tmp_path / "m.npz", dtype=wanted)
    assert loaded.dtype == np.dtype(wanted) and loaded.config["dtype"] == wanted
    for p, q in zip(loaded.params, model.params):
        assert p.dtype == np.dtype(wanted)
        np.testing.assert_array_equal(p, q.astype(wanted))
    x = np.random.default_rng(0).random((3, 12))
    assert loaded.forward(x).dtype == np.dtype(wanted)
    assert nk.MLP.load(tmp_path / "m.npz").dtype == np.dtype(saved)  # no dtype: the file's own



def test_cli_train_subset_trains_the_students_on_a_balanced_draw_and_the_teacher_on_all(tiny, tiny_dir, tmp_path):
    """``--train-subset N --subset-seed S``: the teacher trains on every training image, the baseline and
    the distilled student on ``data.balanced_subset(y_train, N, S)`` (same weights, bit for bit, as
    train_model on those rows), and results.json says so."""
    n, subset_seed = 50, 3
    out = tmp_path / "run"
    assert train.main(_cli(tiny_dir, out, "--train-subset", str(n), "--subset-seed", str(subset_seed),
                           "--hidden", "12", "--T", "2", "--alpha", "0.5", *_flags(RECIPE))) == 0
    x, y, xv, yv = tiny
    teacher = nk.MLP([784, 12, 10], seed=0)
    train.train_model(teacher, x, y, x_val=xv, y_val=yv, seed=0, progress=False, log=None, **RECIPE)
    _assert_same_weights(out / "teacher.npz", teacher)

    idx = data.balanced_subset(y, n, subset_seed)
    assert np.bincount(y[idx], minlength=10).tolist() == [n // 10] * 10
    baseline = nk.MLP([784, 12, 10], seed=1)
    train.train_model(baseline, x[idx], y[idx], x_val=xv, y_val=yv, seed=1, progress=False, log=None, **RECIPE)
    _assert_same_weights(out / "student.npz", baseline)
    distilled = nk.MLP([784, 12, 10], seed=1)
    train.train_model(distilled, x[idx], y[idx], x_val=xv, y_val=yv, seed=1, teacher=teacher, T=2.0, alpha=0.5,
                      progress=False, log=None, **RECIPE)
    _assert_same_weights(out / "distilled.npz", distilled)
    results = json.loads((out / "results.json").read_text())
    assert (results["train_subset"], results["subset_seed"]) == (n, subset_seed)


@pytest.mark.parametrize("flags, match", [
    (["--train-subset", "55"], "argument --train-subset: n must be a positive multiple of the 10 classes, got 55"),
    (["--train-subset", "2000"], "argument --train-subset: class 0 has"),
    (["--subset-seed", "1"], "argument --subset-seed: it seeds the draw of --train-subset N, which is not given"),
    (["--train-subset", "50", "--role", "teacher"], "argument --train-subset: it sets the students' training images, "
                                                    "and --role teacher trains no student"),
], ids=["not-a-multiple", "too-many", "seed-alone", "teacher-only"])
def test_cli_train_subset_mistakes_are_named_and_write_nothing(tiny_dir, tmp_path, capsys, flags, match):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        train.main(_cli(tiny_dir, out, "--hidden", "12", "--epochs", "1", *flags))
    assert e.value.code == 2
    assert match in capsys.readouterr().err
    assert not out.exists()


# ---------------------------------------------------------------------------
# Soft targets: the lookup's size bound, an ensemble's T, the epoch log line
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("room, looked_up", [(0, True), (-1, False)], ids=["exactly-fits", "one-byte-short"])
def test_shift_lookup_is_used_exactly_when_it_fits_in_its_bytes(tiny, monkeypatch, room, looked_up):
    """The (2s + 1)^2 x N x C float32 lookup of consistent teaching is built when it fits in
    SHIFT_CACHE_BYTES, and not when one byte is missing (then each batch's targets are recomputed)."""
    x, y, _, _ = tiny
    s = 2
    need = (2 * s + 1) ** 2 * len(x) * 10 * 4
    monkeypatch.setattr(trainer, "SHIFT_CACHE_BYTES", need + room)
    calls = []
    real = trainer.shifted_teacher_logits
    monkeypatch.setattr(trainer, "shifted_teacher_logits", lambda *a, **k: calls.append(1) or real(*a, **k))
    batch_passes, real_logits = [], trainer.compute_teacher_logits

    def logits(teachers, xb, *a, **k):  # a teacher pass over one batch, not over all the images (the lookup's)
        if len(xb) < len(x):
            batch_passes.append(len(xb))
        return real_logits(teachers, xb, *a, **k)

    monkeypatch.setattr(trainer, "compute_teacher_logits", logits)
    t0 = time.perf_counter()
    history = trainer.train_model(nk.MLP([784, 8, 10], seed=1), x, y, teacher=nk.MLP([784, 12, 10], seed=0),
                                  jitter=s, epochs=1, batch_size=50, lr=0.05, T=3.0, progress=False, log=None)
    wall = time.perf_counter() - t0
    assert bool(calls) is looked_up
    assert bool(batch_passes) is not looked_up  # each batch's targets come from the lookup, or from a pass of their own
    assert 0 <= history["setup_seconds"] <= history["total_seconds"] <= wall


def test_an_ensembles_cached_soft_targets_are_taken_at_the_runs_T(tiny):
    """Without jitter the ensemble's logits are cached once, at the run's T (it matters for an ensemble:
    the mean of tempered probabilities depends on T), so the run equals one given those logits."""
    x, y, _, _ = tiny
    teachers = [nk.MLP([784, 12, 10], seed=s) for s in (0, 1)]
    kw = dict(epochs=1, batch_size=50, lr=0.05, T=4.0, alpha=0.8, seed=2, progress=False, log=None)
    a, b = nk.MLP([784, 8, 10], seed=1), nk.MLP([784, 8, 10], seed=1)
    trainer.train_model(a, x, y, teacher=teachers, **kw)
    trainer.train_model(b, x, y, teacher_logits=nkteacher.compute_teacher_logits(teachers, x, T=4.0), **kw)
    for p, q in zip(a.params, b.params):
        np.testing.assert_array_equal(p, q)


def test_shifted_teacher_logits_default_to_T_1(tiny):
    x = tiny[0][:20]
    teachers = [nk.MLP([784, 12, 10], seed=s) for s in (0, 1)]
    np.testing.assert_array_equal(trainer.shifted_teacher_logits(teachers, x, 1),
                                  trainer.shifted_teacher_logits(teachers, x, 1, T=1.0))
    assert not np.array_equal(trainer.shifted_teacher_logits(teachers, x, 1),
                              trainer.shifted_teacher_logits(teachers, x, 1, T=3.0))


def test_the_epoch_line_gives_loss_validation_percentage_lr_and_momentum(tiny):
    x, y, xv, yv = tiny
    lines = []
    history = trainer.train_model(nk.MLP([784, 8, 10], seed=1), x, y, x_val=xv, y_val=yv, epochs=1, batch_size=50,
                                  lr=0.05, momentum=0.9, progress=False, log=lines.append, name="baseline")
    errors, seconds = history["val_errors"][0], history["seconds"][0]
    assert lines[-1] == (f"baseline  epoch   1/1  loss {history['loss'][0]:.4f}  val {errors} errors "
                         f"({100 * errors / len(yv):.2f}%)  lr 0.05  momentum 0.9  {seconds:.1f} s")
    lines.clear()
    model = nk.MLP([784, 8, 10], seed=1)
    history = trainer.train_model(model, x, y, epochs=1, batch_size=50, optimizer=nk.Adam(model.params),
                                  progress=False, log=lines.append)
    assert lines[-1] == (f"model     epoch   1/1  loss {history['loss'][0]:.4f}  no validation  lr 0.001  "
                         f"{history['seconds'][0]:.1f} s")


def test_the_epochs_loss_is_the_mean_of_its_batches_losses():
    """With equal batches and a step too small to move a weight, the epoch's loss is the loss of all the data."""
    rng = np.random.default_rng(0)
    x, y = rng.random((40, 6), dtype=np.float32), rng.integers(0, 3, 40)
    model = nk.MLP([6, 5, 3], seed=0)
    expected = float(nk.cross_entropy(model.forward(x), y))
    history = trainer.train_model(model, x, y, epochs=1, batch_size=10, lr=1e-30, momentum=0.0, progress=False,
                                  log=None)
    assert history["loss"][0] == pytest.approx(expected, rel=1e-6)
