"""Model files (MLP.save / MLP.load, mlp.read_npz): what is refused, word for word, and what comes back.

A model file is what a user hands to ``--teacher`` or ``MLP.load``; when it
is the wrong file, the message is all they see.  Also here: ``predict``'s
labels, and max_norm_ for a radius below 1 (the floor of the norm must not
touch it).
"""

import json

import numpy as np
import pytest

import nanokd as nk
from nanokd.layers import max_norm_
from nanokd.mlp import read_npz


def _model_file(tmp_path, **changes):
    """A saved 6-5-3 model's arrays with some replaced (None: removed), written to model.npz."""
    nk.MLP([6, 5, 3], seed=0).save(tmp_path / "good.npz")
    arrays = dict(np.load(tmp_path / "good.npz"))
    for k, v in changes.items():
        if v is None:
            del arrays[k]
        else:
            arrays[k] = v
    path = tmp_path / "model.npz"
    np.savez(path, **arrays)
    return path


def _refusal(path):
    with pytest.raises(ValueError) as e:
        nk.MLP.load(path)
    return str(e.value)


def test_files_that_are_not_npz_archives_are_named(tmp_path):
    empty, npy, text = tmp_path / "empty.npz", tmp_path / "one.npy", tmp_path / "notes.npz"
    empty.write_bytes(b"")
    np.save(npy, np.zeros(3))
    text.write_text("hello world")
    assert _refusal(empty) == f"{empty} is empty"
    assert _refusal(npy) == f"{npy} is a single .npy array, not an .npz file of named arrays"
    assert _refusal(text) == f"{text} is not an .npz file (a zip archive of arrays): it starts with b'hello wo'"


def test_a_pickled_object_in_a_model_file_is_never_unpickled(tmp_path):
    path = tmp_path / "pickled.npz"
    np.savez(path, config=np.array(json.dumps({"sizes": [6, 5, 3]})), param_0=np.array([{"a": 1}], dtype=object))
    message = _refusal(path)
    assert message.startswith(f"{path} is truncated or corrupt (ValueError: ") and "allow_pickle" in message


def test_a_checkpoint_or_another_npz_is_not_a_model_file(tmp_path):
    ckpt = tmp_path / "teacher.ckpt.npz"
    np.savez(ckpt, signature=np.array("{}"), param_0=np.zeros(3))
    assert _refusal(ckpt) == (f"{ckpt} is a training checkpoint, not a model file: give the model file saved beside "
                              f"it (teacher.npz for teacher.ckpt.npz)")
    other = tmp_path / "other.npz"
    np.savez(other, w=np.zeros(3))
    assert _refusal(other) == f"{other} is not a nanokd model file (no 'config' entry)"


@pytest.mark.parametrize("config, reason", [
    ("[6, 5, 3]", "config is a list, not a dict"),
    ("{sizes", "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
], ids=["a-list", "not-json"])
def test_a_config_that_is_not_a_json_object_is_named(tmp_path, config, reason):
    path = _model_file(tmp_path, config=np.array(config))
    assert _refusal(path) == f"{path} is not a nanokd model file: its 'config' entry is not valid ({reason})"


@pytest.mark.parametrize("changes, what", [
    ({"param_1": None}, "param_1 is missing"),
    ({"param_2": np.zeros((5, 3), np.int64)}, "param_2 is of dtype int64"),
], ids=["missing", "integers"])
def test_a_missing_or_integer_weight_is_named(tmp_path, changes, what):
    path = _model_file(tmp_path, **changes)
    assert _refusal(path) == f"{path} is not a nanokd model file: {what}"


def test_weights_of_the_wrong_shape_are_named(tmp_path):
    path = _model_file(tmp_path, param_0=np.zeros((6, 4), np.float32))
    message = _refusal(path)
    assert message.startswith(f"{path} does not hold a model nanokd can rebuild (")


def test_a_saved_model_comes_back_as_it_was(tmp_path):
    model = nk.MLP([6, 5, 3], dropout_hidden=0.25, max_norm=2.0, seed=4)
    model.save(tmp_path / "m.npz")
    back = nk.MLP.load(tmp_path / "m.npz")
    assert back.config == model.config and back.device == "cpu"
    for a, b in zip(back.params, model.params):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_predict_gives_integer_labels_in_batches():
    model = nk.MLP([6, 5, 3], seed=0)
    x = np.random.default_rng(0).random((11, 6)).astype(np.float32)
    labels = model.predict(x)
    assert labels.dtype == np.int64 and labels.shape == (11,)
    np.testing.assert_array_equal(labels, model.forward(x).argmax(axis=1))
    np.testing.assert_array_equal(model.predict(x, batch_size=3), labels)


def test_max_norm_projects_onto_a_radius_below_one():
    """c = 0.5: a column of norm 0.8 is scaled by 0.5 / 0.8 exactly; one of norm 0.3 is left alone."""
    W = np.zeros((4, 3))
    W[:, 0] = [0.8, 0, 0, 0]
    W[:, 1] = [0, 0.3, 0, 0]
    W[:, 2] = [3.0, 4.0, 0, 0]
    max_norm_(W, 0.5)
    np.testing.assert_allclose(np.linalg.norm(W, axis=0), [0.5, 0.3, 0.5], rtol=1e-15)
    np.testing.assert_allclose(W[:2, 2], [0.3, 0.4], rtol=1e-15)
