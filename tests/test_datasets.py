"""Tests for the data sets beyond MNIST: per-data-set presets, a user's own IDX data, and learning curves.

The custom data is made here, on the spot: 14x14 images of 5 classes (not
MNIST's 28x28 and 10), a task a tiny net learns in two epochs.  Everything runs
in seconds.
"""

import contextlib
import gzip
import hashlib
import io
import json
import re
import struct
import sys

import numpy as np
import pytest

import nanokd as nk
from nanokd import curves, data, presets, show, train
from nanokd import jitter as nkjitter

SIDE, N_CLASSES, N_TRAIN, N_TEST, N_VAL = 14, 5, 200, 50, 40


def write_idx_gz(path, array):
    """A uint8 array as a gzip-compressed IDX file (magic 0x0000 08 <ndim>, big-endian sizes, bytes)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def images(labels, rng, shape=(SIDE, SIDE)):
    """Dim noise plus a bright 3x3 square whose column depends on the label."""
    x = rng.integers(0, 40, (len(labels), *shape), dtype=np.uint8)
    for i, c in enumerate(labels):
        x[i, 5:8, 1 + 2 * c:4 + 2 * c] = 250
    return x


def write_custom(folder, *, n_train=N_TRAIN, n_test=N_TEST, train_shape=(SIDE, SIDE), test_shape=(SIDE, SIDE),
                 test_labels=None, seed=0):
    """Four IDX files of a 5-class data set in ``folder``; returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    y_train = np.arange(n_train, dtype=np.uint8) % N_CLASSES
    y_test = (np.arange(n_test, dtype=np.uint8) % N_CLASSES) if test_labels is None else np.asarray(test_labels)
    write_idx_gz(folder / data.TRAIN_IMAGES, images(y_train, rng, train_shape))
    write_idx_gz(folder / data.TRAIN_LABELS, y_train)
    write_idx_gz(folder / data.TEST_IMAGES, images(y_test, rng, test_shape))
    write_idx_gz(folder / data.TEST_LABELS, y_test)
    return folder


@pytest.fixture(scope="module")
def custom_dir(tmp_path_factory):
    return write_custom(tmp_path_factory.mktemp("custom") / "data")


def cli(folder, out, *extra):
    """The arguments of a fast run of all three roles on custom data."""
    return ["--dataset", "custom", "--data-dir", str(folder), "--val", str(N_VAL), "--device", "cpu",
            "--no-progress", "--out", str(out), "--teacher-hidden", "32", "--student-hidden", "16",
            "--epochs", "2", "--batch-size", "20", *extra]


@pytest.fixture(scope="module")
def custom_run(custom_dir, tmp_path_factory):
    """One run of the CLI on the custom data: (its folder, its stdout)."""
    out = tmp_path_factory.mktemp("runs") / "run"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert train.main(cli(custom_dir, out)) == 0
    return out, stdout.getvalue()


# ---------------------------------------------------------------------------
# Presets per data set
# ---------------------------------------------------------------------------


def test_each_data_set_has_its_table_and_mnist_keeps_its_own():
    assert presets.DATASET_PRESETS["mnist"] is presets.PRESETS is train.PRESETS
    assert set(presets.PRESETS) == {"quick", "paper", "consistent"}
    assert set(presets.DATASET_PRESETS["fashion-mnist"]) == {"quick", "full"}
    assert set(presets.DATASET_PRESETS) == set(data.DATASETS)
    for name, table in presets.DATASET_PRESETS.items():
        assert presets.DEFAULT_PRESET in table, name
        for preset in table.values():
            assert isinstance(preset["teacher"], presets.Recipe) and isinstance(preset["student"], presets.Recipe)
            assert preset["T"] > 0 and 0 <= preset["alpha"] <= 1 and preset["about"]
    for preset in presets.CUSTOM_PRESETS.values():
        assert preset["teacher"].jitter == preset["student"].jitter == 0  # no shifts on unknown data unless asked
    for preset in presets.FASHION_PRESETS.values():  # chosen on validation: only the teacher sees shifts
        assert (preset["teacher"].jitter, preset["student"].jitter, preset["teacher"].dropout_hidden) == (1, 0, 0.0)
    assert "full-jitter" in presets.FASHION_PRESETS["full"]["about"]
    assert "benchmarks.fashion_val" in presets.FASHION_PRESETS["quick"]["about"]  # cites its validation study
    with pytest.raises(ValueError, match="no presets for data set 'cifar'"):
        presets.presets_for("cifar")


def test_dataset_picks_the_presets_the_flags_default_to():
    parser = train.build_parser("fashion-mnist")
    s = train.settings_from_args(parser.parse_args(["--dataset", "fashion-mnist"]), parser)
    quick = presets.FASHION_PRESETS["quick"]
    assert s["preset"] == "quick" and s["teacher"]["jitter"] == quick["teacher"].jitter == 1 and s["T"] == quick["T"]
    assert s["teacher"]["hidden"] == list(quick["teacher"].hidden)
    s = train.settings_from_args(parser.parse_args(["--dataset", "fashion-mnist", "--preset", "full"]), parser)
    assert s["teacher"]["hidden"] == list(presets.FASHION_PRESETS["full"]["teacher"].hidden)
    assert train.dataset_from_argv(["--epochs", "3", "--dataset=fashion-mnist"]) == "fashion-mnist"
    assert train.dataset_from_argv(["--dataset", "cifar"]) == "mnist"  # the parser reports it


def test_help_shows_the_chosen_data_sets_table(capsys, preset_columns):
    with pytest.raises(SystemExit) as e:
        train.main(["--dataset", "fashion-mnist", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "for --dataset fashion-mnist" in text and "benchmarks.fashion_val" in text
    assert preset_columns(text) == [("quick", "teacher"), ("quick", "student"), ("full", "teacher"),
                                    ("full", "student")]
    with pytest.raises(SystemExit):
        train.main(["--help"])
    text = capsys.readouterr().out
    assert "for --dataset mnist" in text
    assert [p for p, _ in preset_columns(text)][::2] == list(presets.presets_for("mnist"))


@pytest.mark.parametrize("argv, match", [
    (["--dataset", "fashion-mnist", "--preset", "paper"], "--preset"),
    (["--dataset", "custom"], "--dataset custom needs --data-dir"),
])
def test_bad_dataset_flags_exit_2_naming_the_flag(argv, match, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        train.main(argv)
    assert e.value.code == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------
# A user's own data
# ---------------------------------------------------------------------------


def test_custom_data_loads_with_its_own_size_and_classes(custom_dir):
    ds = data.load("custom", custom_dir)
    assert ds.x_train.shape == (N_TRAIN, SIDE, SIDE) and ds.x_test.shape == (N_TEST, SIDE, SIDE)
    assert data.num_classes("custom", ds) == N_CLASSES
    assert data.to_float(ds.x_test).shape == (N_TEST, SIDE * SIDE)
    with pytest.raises(data.DataError, match="checksum"):  # the known data sets keep their checks
        data.load("mnist", custom_dir)


def test_custom_data_trains_end_to_end_through_the_cli(custom_run, custom_dir):
    out, stdout = custom_run
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"] == "custom" and results["data_dir"] == str(custom_dir)
    assert results["n_classes"] == N_CLASSES and results["image_size"] == [SIDE, SIDE]
    assert results["sha256"] == {f: hashlib.sha256((custom_dir / f).read_bytes()).hexdigest() for f in data.FILES}
    assert list(results["models"]) == ["teacher", "baseline", "distilled"]
    assert nk.MLP.load(out / "teacher.npz").sizes == [SIDE * SIDE, 32, N_CLASSES]
    assert nk.MLP.load(out / "distilled.npz").sizes == [SIDE * SIDE, 16, N_CLASSES]
    for entry in results["models"].values():
        assert 0 <= entry["test_errors"] <= N_TEST
    assert results["models"]["teacher"]["test_errors"] < 0.5 * N_TEST  # it learned (chance: 80 % errors)
    assert f"{SIDE}x{SIDE} pixels, {N_CLASSES} classes" in stdout


def test_jitter_works_on_other_square_sizes_and_is_refused_on_non_square_images(custom_dir, tmp_path, capsys):
    x = np.zeros((1, SIDE * SIDE), np.float32)
    x[0, 0] = 1.0
    shifted = nkjitter.shift_images(x, np.array([(1 + 1) * 3 + (0 + 1)]), 1)  # one row down
    assert shifted.reshape(SIDE, SIDE)[1, 0] == 1.0 and shifted.sum() == 1.0
    assert train.main(cli(custom_dir, tmp_path / "jitter", "--jitter", "1", "--epochs", "1")) == 0

    wide = write_custom(tmp_path / "wide", train_shape=(14, 10), test_shape=(14, 10))
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        train.main(cli(wide, out, "--teacher-jitter", "2"))
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--teacher-jitter" in err and "jitter needs square images" in err and "14x10" in err
    assert not out.exists()
    with pytest.raises(SystemExit) as e:
        train.main(cli(wide, out, "--elastic", "34"))
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--teacher-elastic / --elastic: elastic needs square images" in err
    assert not out.exists()
    assert train.main(cli(custom_dir, tmp_path / "bent", "--elastic", "5", "--epochs", "1")) == 0  # 14 x 14: fine
    assert train.main(cli(wide, out, "--epochs", "1")) == 0  # without jitter, non-square images are fine
    assert json.loads((out / "results.json").read_text())["image_size"] == [14, 10]


def test_a_custom_data_set_of_more_classes_than_mnist_loads(tmp_path):
    """The class count of custom data comes from its files, also above MNIST's 10."""
    folder = tmp_path / "twelve"
    folder.mkdir()
    rng = np.random.default_rng(0)
    y_train, y_test = np.arange(60, dtype=np.uint8) % 12, np.arange(24, dtype=np.uint8) % 12
    write_idx_gz(folder / data.TRAIN_IMAGES, images(y_train, rng))
    write_idx_gz(folder / data.TRAIN_LABELS, y_train)
    write_idx_gz(folder / data.TEST_IMAGES, images(y_test, rng))
    write_idx_gz(folder / data.TEST_LABELS, y_test)
    ds = data.load("custom", folder)
    assert data.num_classes("custom", ds) == 12 and int(ds.y_test.max()) == 11


def _missing(folder):
    (folder / data.TEST_LABELS).unlink()


def _counts(folder):
    write_idx_gz(folder / data.TRAIN_LABELS, np.arange(N_TRAIN - 1, dtype=np.uint8) % N_CLASSES)


def _size(folder):
    write_idx_gz(folder / data.TEST_IMAGES, np.zeros((N_TEST, 12, 12), np.uint8))


def _range(folder):
    write_idx_gz(folder / data.TEST_LABELS, np.array([0, 1, 7] + [2] * (N_TEST - 3), np.uint8))


def _magic(folder):
    write_idx_gz(folder / data.TRAIN_IMAGES, np.zeros(N_TRAIN, np.uint8))  # a label file's magic number


@pytest.mark.parametrize("spoil, file, problem", [
    (_missing, data.TEST_LABELS, "lacks"),
    (_counts, data.TRAIN_LABELS, f"has {N_TRAIN} images but"),
    (_size, data.TEST_IMAGES, f"holds 12x12 images but .* holds {SIDE}x{SIDE} images"),
    (_range, data.TEST_LABELS, f"has label 7, out of the range 0-{N_CLASSES - 1}"),
    (_magic, data.TRAIN_IMAGES, r"should hold \(N, H, W\) uint8 images"),
], ids=["missing-file", "count-mismatch", "image-size", "label-range", "magic"])
def test_wrong_custom_data_is_named_and_leaves_nothing_behind(spoil, file, problem, tmp_path, capsys):
    folder = write_custom(tmp_path / "data")
    spoil(folder)
    out = tmp_path / "run"
    assert train.main(cli(folder, out)) == 1
    err = capsys.readouterr().err
    assert file in err, err
    assert re.search(problem, err), err
    assert not out.exists()  # no run folder, no config.json
    with pytest.raises(data.DataError, match=problem):
        data.load("custom", folder)


def test_custom_data_needs_its_folder():
    with pytest.raises(data.DataError, match="--dataset custom needs a folder"):
        data.load("custom")


# ---------------------------------------------------------------------------
# The viewer on custom data
# ---------------------------------------------------------------------------


def test_show_follows_the_image_size_and_class_count(custom_run, custom_dir, capsys):
    out, _ = custom_run
    argv = ["--model", str(out / "teacher.npz"), "--dataset", "custom", "--data-dir", str(custom_dir)]
    assert show.main([*argv, "--index", "3", "--T", "1", "4"]) == 0
    text = capsys.readouterr().out
    assert text.count("entropy") == 2 and f"(uniform: {np.log2(N_CLASSES):.3f})" in text
    assert "┌" + "─" * SIDE + "┐" in text  # the image is 14 characters wide
    assert show.main([*argv, "--similar"]) == 0
    assert f"({N_TEST // N_CLASSES} images)" in capsys.readouterr().out
    nk.MLP([784, 8, N_CLASSES]).save(out.parent / "mnist-sized.npz")
    assert show.main(["--model", str(out.parent / "mnist-sized.npz"), *argv[2:]]) == 1
    assert f"takes inputs of size 784, not {SIDE} x {SIDE} = {SIDE * SIDE} pixels" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# Learning curves
# ---------------------------------------------------------------------------


def test_each_run_writes_its_learning_curves(custom_run):
    out, stdout = custom_run
    record = json.loads((out / curves.CURVES_JSON).read_text())
    assert record["n_val"] == N_VAL and list(record["roles"]) == ["teacher", "baseline", "distilled"]
    for role in record["roles"].values():
        assert role["epoch"] == [1, 2] and len(role["loss"]) == len(role["val_errors"]) == 2
        assert all(0 <= e <= N_VAL for e in role["val_errors"])
        assert role["val_error_pct"] == [pytest.approx(100 * e / N_VAL) for e in role["val_errors"]]
    results = json.loads((out / "results.json").read_text())
    for role, entry in results["models"].items():
        assert record["roles"][role]["val_errors"][-1] == entry["val_errors"]
    pytest.importorskip("matplotlib")
    assert (out / curves.CURVES_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"{out / curves.CURVES_PNG}" in stdout


def test_show_curves_prints_and_draws_them_again(custom_run, tmp_path, capsys):
    out, _ = custom_run
    png = tmp_path / "again.png"
    assert show.main(["--curves", str(out), "--png", str(png)]) == 0
    text = capsys.readouterr().out
    assert "teacher loss" in text and "distilled val err" in text and f"out of {N_VAL}" in text
    assert len([line for line in text.splitlines() if line.strip().startswith(("1 ", "2 "))]) == 2
    pytest.importorskip("matplotlib")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_show_curves_errors_are_one_clear_line(tmp_path, capsys):
    assert show.main(["--curves", str(tmp_path)]) == 1
    assert f"no {tmp_path / curves.CURVES_JSON}" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        show.main([])
    assert e.value.code == 2 and "--model (or --curves RUN_DIR)" in capsys.readouterr().err


def test_without_matplotlib_the_numbers_are_written_and_one_line_says_how_to_get_the_picture(
        custom_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    out = tmp_path / "run"
    assert train.main(cli(custom_dir, out, "--epochs", "1")) == 0
    assert (out / curves.CURVES_JSON).is_file() and not (out / curves.CURVES_PNG).exists()
    hint = [line for line in capsys.readouterr().out.splitlines() if curves.PLOT_HINT in line]
    assert len(hint) == 1 and "matplotlib is not installed" in hint[0]
    assert show.main(["--curves", str(out)]) == 0  # the numbers still; one line on how to get the picture
    captured = capsys.readouterr()
    assert "teacher loss" in captured.out and curves.PLOT_HINT in captured.err
    assert not (out / curves.CURVES_PNG).exists()
    assert show.main(["--curves", str(out), "--png", str(tmp_path / "x.png")]) == 1  # asked for, not drawn


# ---------------------------------------------------------------------------
# The edges of the custom checks (each a mutant of issue 24)
# ---------------------------------------------------------------------------


def _write_labels(folder, train_labels, test_labels):
    """A custom folder whose labels are the ones given (images to match)."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    for name, labels in ((data.TRAIN_IMAGES, train_labels), (data.TEST_IMAGES, test_labels)):
        write_idx_gz(folder / name, images(np.asarray(labels, np.uint8), rng))
    write_idx_gz(folder / data.TRAIN_LABELS, np.asarray(train_labels, np.uint8))
    write_idx_gz(folder / data.TEST_LABELS, np.asarray(test_labels, np.uint8))
    return folder


def test_custom_data_of_one_image_and_two_classes_loads(tmp_path):
    one = data.load(data.CUSTOM, _write_labels(tmp_path / "one", [1], [0]))
    assert len(one.x_train) == 1 and data.num_classes(data.CUSTOM, one) == 2
    two = data.load(data.CUSTOM, _write_labels(tmp_path / "two", [0, 1, 1], [1, 0]))
    assert data.num_classes(data.CUSTOM, two) == 2


def test_custom_data_without_images_or_with_a_test_label_past_the_classes_is_refused(tmp_path):
    empty = _write_labels(tmp_path / "empty", [], [0])
    with pytest.raises(data.DataError) as e:
        data.load(data.CUSTOM, empty)
    assert str(e.value) == f"{empty / data.TRAIN_IMAGES} holds no images: there is nothing to train on"
    one = _write_labels(tmp_path / "one-class", [0, 0], [0])
    with pytest.raises(data.DataError) as e:
        data.load(data.CUSTOM, one)
    assert str(e.value) == (f"{one / data.TRAIN_LABELS} has only label 0: a classifier needs at least two classes "
                            f"(labels 0, 1, ...)")
    past = _write_labels(tmp_path / "past", [0, 1, 2], [3])  # 3 classes; the test label 3 is the fourth
    with pytest.raises(data.DataError) as e:
        data.load(data.CUSTOM, past)
    assert str(e.value).startswith(f"{past / data.TEST_LABELS} has label 3, out of the range 0-2 of the training")


def test_balanced_subset_edges():
    y = np.repeat(np.arange(3), 4)  # 4 of each of 3 classes
    assert len(data.balanced_subset(y, 12, seed=0)) == 12  # every member of every class
    assert sorted(data.balanced_subset(np.zeros(5, int), 1, seed=0).tolist()) in ([0], [1], [2], [3], [4])
    with pytest.raises(ValueError) as e:
        data.balanced_subset(y, 0, seed=0)
    assert str(e.value) == "n must be a positive multiple of the 3 classes, got 0"
    with pytest.raises(ValueError) as e:
        data.balanced_subset(y, 15, seed=0)
    assert str(e.value) == "class 0 has 4 examples, fewer than the 5 asked for"


CUSTOM_HOW = ("--dataset custom needs a folder with four gzip-compressed IDX files named as MNIST's: "
              "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
              "t10k-labels-idx1-ubyte.gz (images N x H x W uint8, labels N uint8 from 0), passed as --data-dir DIR "
              "(data_dir=DIR in Python).")


def test_a_missing_custom_folder_or_file_is_named_and_the_message_says_what_is_needed(tmp_path):
    half = tmp_path / "half"
    half.mkdir()
    write_idx_gz(half / data.TRAIN_IMAGES, np.zeros((1, 4, 4)))
    cases = [(None, "no folder given. "),
             (tmp_path / "nowhere", f"{tmp_path / 'nowhere'} (from --data-dir / data_dir) does not exist. "),
             (half, f"{half} (from --data-dir / data_dir) lacks train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
                    f"t10k-labels-idx1-ubyte.gz. ")]
    for folder, head in cases:
        with pytest.raises(data.DataError) as e:
            data.load(data.CUSTOM, folder)
        assert str(e.value) == head + CUSTOM_HOW


def test_jitter_refuses_to_shift_in_place():
    x = np.zeros((2, 4, 4), np.float32)
    with pytest.raises(ValueError) as e:
        nkjitter.shift_images(x, np.zeros(2, np.int64), 1, out=x)
    assert str(e.value) == "jitter cannot work in place: out must not be x"


def test_split_validation_holds_out_the_last_10000_by_default():
    x, y = np.arange(12000), np.arange(12000) % 10
    x_train, y_train, x_val, y_val = data.split_validation(x, y)
    assert (len(x_train), len(x_val)) == (2000, 10000) and x_val[0] == 2000 and y_val[-1] == y[-1]


def test_an_image_file_in_place_of_labels_is_named(tmp_path):
    """A label file holding (N, H, W) images (uint8, so only its shape is wrong) is refused, by name."""
    folder = write_custom(tmp_path / "swapped")
    write_idx_gz(folder / data.TRAIN_LABELS, np.zeros((N_TRAIN, SIDE, SIDE)))
    with pytest.raises(data.DataError) as e:
        data.load(data.CUSTOM, folder)
    assert str(e.value) == (f"{folder / data.TRAIN_LABELS} should hold (N,) uint8 labels, but holds "
                            f"({N_TRAIN}, {SIDE}, {SIDE}) uint8 (wrong magic number: is it an image file?)")
