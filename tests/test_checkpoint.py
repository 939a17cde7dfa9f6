"""nanokd.checkpoint: what a checkpoint refuses, and the exact message that says why.

A refused checkpoint is the user's only clue to what went wrong in a resume,
so each message is checked word for word: which file, what it holds against
what the run needs, and what to do.  (The resume itself, bit for bit, is
tested in test_train.py.)
"""

import json

import numpy as np
import pytest

import nanokd as nk
from nanokd.checkpoint import CheckpointError, check_checkpoint, fingerprint, load_checkpoint, save_checkpoint, \
    signature

SETTINGS = {"lr": 0.1, "momentum": 0.9, "seed": 0}


def _saved(tmp_path, model=None, settings=SETTINGS, name="run.ckpt.npz"):
    """A checkpoint of ``model`` (a 6-5-3 net by default) after 2 epochs, and the model."""
    model = model or nk.MLP([6, 5, 3], seed=0)
    path = tmp_path / name
    save_checkpoint(path, model, nk.SGD(model.params, lr=0.1, momentum=0.9), 2, {"epoch": [1, 2]},
                    signature(model, settings, 40))
    return path, model


def _message(call):
    with pytest.raises(CheckpointError) as e:
        call()
    return str(e.value)


def _rewrite(path, **changes):
    """The checkpoint at ``path`` with some arrays replaced (None: removed)."""
    arrays = dict(np.load(path))
    for k, v in changes.items():
        if v is None:
            del arrays[k]
        else:
            arrays[k] = v
    np.savez(path, **arrays)


def test_a_model_file_is_not_a_checkpoint_and_the_message_points_to_the_one_beside_it(tmp_path):
    path = tmp_path / "teacher.npz"
    nk.MLP([6, 5, 3]).save(path)
    assert _message(lambda: check_checkpoint(path, nk.MLP([6, 5, 3]))) == (
        f"{path} is not a nanokd training checkpoint (it is a model file: a checkpoint is the .ckpt.npz beside it)")


def test_another_npz_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, w=np.zeros(3))
    assert _message(lambda: check_checkpoint(path, nk.MLP([6, 5, 3]))) == (
        f"{path} is not a nanokd training checkpoint")


def test_a_corrupt_signature_is_named_with_its_error(tmp_path):
    path, model = _saved(tmp_path)
    _rewrite(path, signature=np.array("{not json"))
    message = _message(lambda: check_checkpoint(path, model))
    assert message.startswith(f"checkpoint {path} is corrupt (JSONDecodeError: Expecting property name")
    assert message.endswith("): delete it, and the run starts this model afresh")


def test_another_network_is_named_by_what_differs(tmp_path):
    path, _ = _saved(tmp_path)
    other = nk.MLP([6, 5, 3], seed=1, dropout_hidden=0.5)
    assert _message(lambda: check_checkpoint(path, other)) == (
        f"checkpoint {path} holds another network than this run's 6-5-3 (dropout_hidden 0.0 instead of 0.5, "
        f"seed 0 instead of 1): delete it, and the run starts this model afresh")


def test_a_network_entry_of_another_shape_or_missing_is_named(tmp_path):
    path, model = _saved(tmp_path)
    saved = json.loads(str(np.load(path)["signature"]))
    del saved["model"]["seed"]  # a key only this run's config has
    _rewrite(path, signature=np.array(json.dumps(saved)))
    assert "(seed None instead of 0)" in _message(lambda: check_checkpoint(path, model))
    del saved["model"]
    _rewrite(path, signature=np.array(json.dumps(saved)))
    assert "(its model entry is None)" in _message(lambda: check_checkpoint(path, model))


@pytest.mark.parametrize("param, shape", [("param_1", (4,)), ("param_1", None)], ids=["wrong-shape", "missing"])
def test_a_parameter_of_the_wrong_shape_or_missing_is_named(tmp_path, param, shape):
    path, model = _saved(tmp_path)
    _rewrite(path, **{param: None if shape is None else np.zeros(shape, np.float32)})
    assert _message(lambda: check_checkpoint(path, model)) == (
        f"checkpoint {path} is corrupt: its {param} has shape {shape}, expected (5,)")


def test_other_settings_are_named_key_by_key(tmp_path):
    path, model = _saved(tmp_path)
    now = signature(model, {**SETTINGS, "lr": 0.2, "momentum": 0.5, "T": 3.0}, 40)  # T: only in this run's
    assert _message(lambda: load_checkpoint(path, model, nk.SGD(model.params, lr=0.1), now)) == (
        f"checkpoint {path} was written with other settings (T, lr, momentum): delete it or resume with the same "
        f"settings")


def test_another_training_set_size_is_named(tmp_path):
    path, model = _saved(tmp_path)  # written for 40 training images
    now = signature(model, SETTINGS, 41)
    assert _message(lambda: load_checkpoint(path, model, nk.SGD(model.params, lr=0.1), now)) == (
        f"checkpoint {path} was written with other settings (n_train): delete it or resume with the same settings")


def test_a_signature_is_canonical_json_whatever_the_order_of_the_settings():
    """The stored text is the same for the same settings, so two checkpoints' signatures compare as text too."""
    model = nk.MLP([6, 5, 3], seed=0)
    text = signature(model, {"seed": 0, "momentum": 0.9, "lr": 0.1}, 40)
    assert text == signature(model, {"lr": 0.1, "momentum": 0.9, "seed": 0}, 40)
    assert list(json.loads(text)) == ["lr", "model", "momentum", "n_train", "seed"]


def test_another_optimizer_is_named(tmp_path):
    path, model = _saved(tmp_path)
    sig = signature(model, SETTINGS, 40)
    assert _message(lambda: load_checkpoint(path, model, nk.Adam(model.params), sig)) == (
        f"checkpoint {path} holds 4 optimizer arrays, but Adam has 9: it was written by another optimizer")


def test_parameters_that_do_not_fit_are_named(tmp_path):
    path, model = _saved(tmp_path)
    _rewrite(path, param_0=np.zeros((6, 4), np.float32))
    message = _message(lambda: load_checkpoint(path, model, nk.SGD(model.params, lr=0.1, momentum=0.9),
                                               signature(model, SETTINGS, 40)))
    assert message.startswith(f"checkpoint {path} does not fit the model (")
    assert message.endswith("): delete it or resume with the same settings")


def test_a_loaded_checkpoint_gives_back_what_was_saved(tmp_path):
    path, model = _saved(tmp_path)
    fresh = nk.MLP([6, 5, 3], seed=0)
    for p in fresh.params:
        p[...] = 7
    opt = nk.SGD(fresh.params, lr=0.1, momentum=0.9)
    assert check_checkpoint(path, fresh) == 2
    assert load_checkpoint(path, fresh, opt, signature(model, SETTINGS, 40)) == (2, {"epoch": [1, 2]})
    for a, b in zip(fresh.params, model.params):
        np.testing.assert_array_equal(a, b)


def test_the_fingerprint_is_16_hex_digits_of_every_weight():
    a, b = nk.MLP([6, 5, 3], seed=0), nk.MLP([6, 5, 3], seed=0)
    assert fingerprint([a]) == fingerprint([b]) and len(fingerprint([a])) == 16
    int(fingerprint([a]), 16)
    b.params[-1][0] += 1
    assert fingerprint([a]) != fingerprint([b]) != fingerprint([b, a])
    v = np.ones((3, 2), np.float32)
    assert fingerprint(None, v) != fingerprint(None, 2 * v)
