"""nanokd.teacher: the logits of one teacher or an ensemble, and error counts, in numbers and messages."""

import numpy as np
import pytest

import nanokd as nk
from nanokd.losses import softmax
from nanokd.teacher import as_teacher_list, compute_teacher_logits, ensemble_logits, evaluate_errors


def _logits(k, n=20, c=5, seed=0):
    rng = np.random.default_rng(seed)
    return [3 * rng.standard_normal((n, c)) for _ in range(k)]


@pytest.mark.parametrize("T", [1.0, 3.0])
def test_ensemble_logits_are_the_log_of_the_mean_probability(T):
    """T log p with p the mean of the tempered softmaxes: exp(v_ens / T) is p itself (rows sum to 1), so
    its softmax at T is p too."""
    vs = _logits(3)
    p = np.mean([softmax(v, T) for v in vs], axis=0)
    v_ens = ensemble_logits(vs, T)
    np.testing.assert_allclose(np.exp(v_ens / T), p, rtol=1e-13)
    np.testing.assert_allclose(softmax(v_ens, T), p, rtol=1e-13)


def test_one_teachers_logits_are_returned_as_they_are():
    (v,) = _logits(1)
    assert ensemble_logits([v], 4.0) is v


@pytest.mark.parametrize("vs, error, message", [
    (np.zeros((2, 3)), TypeError, "vs must be a non-empty list of (N, C) logit arrays"),
    ([], TypeError, "vs must be a non-empty list of (N, C) logit arrays"),
    ([np.zeros((2, 3)), np.zeros((2, 4))], ValueError,
     "the teachers' logits must all have one shape, got [(2, 3), (2, 4)]"),
], ids=["an-array", "empty", "shapes"])
def test_ensemble_logits_refuses_what_is_not_a_list_of_equal_logits(vs, error, message):
    with pytest.raises(error) as e:
        ensemble_logits(vs, 1.0)
    assert str(e.value) == message


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_compute_teacher_logits_in_batches_at_T_in_the_teachers_dtype(dtype):
    """The ensemble's logits at T (default 1), batch by batch as in one batch, in the teachers' dtype."""
    teachers = [nk.MLP([6, 8, 4], seed=s, dtype=dtype) for s in (0, 1)]
    x = np.random.default_rng(2).random((23, 6)).astype(dtype)
    v = compute_teacher_logits(teachers, x)
    assert v.dtype == np.dtype(dtype) and v.shape == (23, 4)
    one = ensemble_logits([t.forward(x) for t in teachers], 1.0)
    rtol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(v, one, rtol=rtol)
    np.testing.assert_array_equal(compute_teacher_logits(teachers, x, batch_size=5), v)
    np.testing.assert_allclose(compute_teacher_logits(teachers, x, T=4.0),
                               ensemble_logits([t.forward(x) for t in teachers], 4.0), rtol=rtol)
    np.testing.assert_array_equal(compute_teacher_logits(teachers[0], x), teachers[0].forward(x))


@pytest.mark.parametrize("odd", [nk.MLP([7, 8, 4]), nk.MLP([6, 8, 3])], ids=["inputs", "classes"])
def test_as_teacher_list_refuses_members_that_differ_in_inputs_or_classes(odd):
    first, second = nk.MLP([6, 8, 4], seed=0), nk.MLP([6, 9, 4], seed=1)
    assert as_teacher_list([first, second]) == [first, second]
    with pytest.raises(ValueError) as e:
        as_teacher_list([first, odd, second])  # the odd one second: every member is checked
    assert str(e.value) == (f"the teachers must share input size, class count and device, got {odd!r} and "
                            f"{first!r}")


def test_as_teacher_list_names_the_argument():
    with pytest.raises(TypeError) as e:
        as_teacher_list("teacher.npz")
    assert str(e.value) == "teacher must be an MLP or a non-empty list of MLPs"
    with pytest.raises(TypeError) as e:
        as_teacher_list([], "model")
    assert str(e.value) == "model must be an MLP or a non-empty list of MLPs"


def test_evaluate_errors_counts_each_row():
    model = nk.MLP([6, 8, 4], seed=0)
    x = np.random.default_rng(3).random((9, 6)).astype(np.float32)
    pred = model.predict(x)
    assert evaluate_errors(model, x[:1], pred[:1]) == 0
    assert evaluate_errors(model, x[:1], (pred[:1] + 1) % 4) == 1
    y = pred.copy()
    y[[2, 5]] = (y[[2, 5]] + 1) % 4
    assert evaluate_errors(model, x, y) == 2
    assert evaluate_errors(model, x, y, batch_size=4) == 2
    assert evaluate_errors(model, x[:0], y[:0]) == 0
    with pytest.raises(ValueError) as e:
        evaluate_errors(model, x, y[:8])
    assert str(e.value) == "x has 9 rows but y has 8"
