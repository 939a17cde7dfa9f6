"""Tests for the dark-knowledge viewer, python -m nanokd.show, on a tiny model and tiny IDX files."""

import gzip
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nanokd as nk
from nanokd import data, show

N_TEST = 20  # labels 0..9, twice each

# The top-left corner and size of a white square in test image 0, in pixels.
SQUARE_ROWS, SQUARE_COLS = range(8, 20), range(10, 18)


def write_idx_gz(path, array):
    """A uint8 array as a gzip-compressed IDX file (magic 0x0000 08 <ndim>, big-endian sizes, bytes)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny model file and a folder of tiny MNIST-like files; returns (model path, data dir, test images, labels)."""
    root = tmp_path_factory.mktemp("show")
    rng = np.random.default_rng(0)
    x_test = rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8)
    x_test[0] = 0
    x_test[0][np.ix_(SQUARE_ROWS, SQUARE_COLS)] = 255
    y_test = np.arange(N_TEST, dtype=np.uint8) % 10
    folder = root / "data"
    folder.mkdir()
    write_idx_gz(folder / data.TRAIN_IMAGES, rng.integers(0, 256, (5, 28, 28), dtype=np.uint8))
    write_idx_gz(folder / data.TRAIN_LABELS, np.arange(5, dtype=np.uint8))
    write_idx_gz(folder / data.TEST_IMAGES, x_test)
    write_idx_gz(folder / data.TEST_LABELS, y_test)
    model_path = root / "tiny.npz"
    nk.MLP([784, 16, 10], seed=0).save(model_path)
    return model_path, folder, x_test, y_test.astype(np.int64)


def run(files, *args):
    model_path, folder, _, _ = files
    return show.main(["--model", str(model_path), "--data-dir", str(folder), "--no-verify", *args])


def teacher_logits(files):
    """The tiny model's logits for every test image, computed here without the viewer's code."""
    model_path, _, x_test, _ = files
    model = nk.MLP.load(model_path)
    return model.forward(x_test.reshape(N_TEST, 784).astype(np.float32) / 255).astype(np.float64)


def numpy_softmax(v, T):
    e = np.exp(v / T - (v / T).max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def parse_bars(out):
    """{T: (probabilities, entropy, marked class)} from the image view's bar blocks."""
    blocks = {}
    lines = out.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"T = (\S+)\s+entropy (\S+) bits", line)
        if not m:
            continue
        probs, marked = [], []
        for c, row in enumerate(lines[i + 1:i + 11]):
            name, bar, rest = row.split("│")
            assert int(name) == c
            assert len(bar) == show.BAR_WIDTH
            probs.append(float(rest.split()[0]))
            if "label" in rest:
                marked.append(c)
        blocks[float(m.group(1))] = (np.array(probs), float(m.group(2)), marked)
    return blocks


def test_image_view_renders_the_image_and_the_soft_targets(files, capsys):
    assert run(files, "--index", "0", "--T", "1", "4", "20") == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "mnist test image 0: label 0, teacher says " + str(int(teacher_logits(files)[0].argmax()))

    # The picture: 14 rows of 28 characters in a frame, two pixels per character.
    top = lines.index("┌" + "─" * 28 + "┐")
    assert lines[top + 15] == "└" + "─" * 28 + "┘"
    rows = [line[1:-1] for line in lines[top + 1:top + 15]]
    assert all(len(r) == 28 and line[0] == line[-1] == "│" for r, line in zip(rows, lines[top + 1:top + 15]))
    for r, row in enumerate(rows):
        for c, ch in enumerate(row):
            inside = 2 * r in SQUARE_ROWS and c in SQUARE_COLS
            assert ch == ("█" if inside else " "), (r, c)

    # The bars: one block per temperature, probabilities that sum to 1 and are
    # the model's soft targets, the label marked, entropy rising with T.
    blocks = parse_bars(out)
    assert sorted(blocks) == [1.0, 4.0, 20.0]
    v = teacher_logits(files)[:1]
    for T, (probs, entropy, marked) in blocks.items():
        assert abs(probs.sum() - 1) < 2e-3
        expected = numpy_softmax(v, T)[0]
        assert np.allclose(probs, expected, rtol=0.06, atol=6e-5)
        assert abs(entropy - float(-(expected * np.log2(expected)).sum())) < 1e-3
        assert marked == [0]
    entropies = [blocks[T][1] for T in (1.0, 4.0, 20.0)]
    assert entropies[0] < entropies[1] < entropies[2] <= np.log2(10) + 1e-9


def test_default_temperatures_and_index(files, capsys):
    assert run(files) == 0
    out = capsys.readouterr().out
    assert out.startswith("mnist test image 0:")
    assert sorted(parse_bars(out)) == list(show.DEFAULT_T)


def test_similar_lists_every_class_once_with_its_closest_classes(files, capsys):
    y_test = files[3]
    assert run(files, "--similar") == 0
    out = capsys.readouterr().out
    assert "┌" not in out and "entropy" not in out     # --similar alone: only the table
    assert out.startswith(f"T = {show.DEFAULT_SIMILAR_T[0]:g}:")
    rows = [re.match(r"\s+(\d+) │ (.*)\((\d+) images\)$", line) for line in out.splitlines()]
    rows = [m for m in rows if m]
    assert [int(m.group(1)) for m in rows] == list(range(10))

    # The same ranking, computed here: mean soft targets at T = 4 per true class.
    p = numpy_softmax(teacher_logits(files), show.DEFAULT_SIMILAR_T[0])
    for c, m in enumerate(rows):
        tokens = m.group(2).split()
        others, probs = [int(t) for t in tokens[0::2]], [float(t) for t in tokens[1::2]]
        assert len(others) == 3 and len(set(others)) == 3 and c not in others
        assert probs == sorted(probs, reverse=True)
        mean = p[y_test == c].mean(axis=0)
        mean[c] = -1
        assert others == list(np.argsort(-mean)[:3])
        assert np.allclose(probs, mean[others], atol=6e-5, rtol=0.06)
        assert int(m.group(3)) == 2


def test_similar_with_index_shows_both(files, capsys):
    assert run(files, "--similar", "--index", "3", "--T", "2") == 0
    out = capsys.readouterr().out
    assert out.startswith("mnist test image 3: label 3")
    assert sorted(parse_bars(out)) == [2.0]
    assert "T = 2: mean soft targets" in out


def test_png(files, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="--png needs matplotlib (pip install nanokd[plot])")
    for args in (["--index", "5"], ["--similar"]):
        png = tmp_path / "view.png"
        assert run(files, *args, "--png", str(png)) == 0
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"wrote {png}" in capsys.readouterr().out
        png.unlink()


def test_png_without_matplotlib_says_how_to_get_it(files, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    png = tmp_path / "view.png"
    assert run(files, "--png", str(png)) == 1
    err = capsys.readouterr().err
    assert "--png needs matplotlib" in err and "pip install" in err
    assert not png.exists()


def test_errors_are_one_clear_line(files, tmp_path, capsys):
    assert run(files, "--index", str(N_TEST)) == 1
    assert f"--index must be in [0, {N_TEST - 1}]" in capsys.readouterr().err

    model_path, folder, _, _ = files
    assert show.main(["--model", str(tmp_path / "missing.npz"), "--data-dir", str(folder)]) == 1
    assert "no model file" in capsys.readouterr().err

    # Without --no-verify the home-made files fail the checksum check.
    assert show.main(["--model", str(model_path), "--data-dir", str(folder)]) == 1
    assert "checksum mismatch" in capsys.readouterr().err

    if not nk.cuda_available():
        assert run(files, "--device", "cuda") == 1
        assert "device='cuda' needs" in capsys.readouterr().err

    with pytest.raises(SystemExit):
        run(files, "--T", "0")
    assert "temperatures must be finite and > 0" in capsys.readouterr().err

    small = tmp_path / "small.npz"
    nk.MLP([196, 8, 10]).save(small)
    assert show.main(["--model", str(small), "--data-dir", str(folder), "--no-verify"]) == 1
    assert "takes inputs of size 196, not 28 x 28 = 784 pixels" in capsys.readouterr().err


def test_python_m_nanokd_show_on_an_ascii_terminal(files):
    """The module runs as a program; where the output cannot take Unicode it falls back to ASCII."""
    model_path, folder, _, _ = files
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONIOENCODING="ascii",
               PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    result = subprocess.run(
        [sys.executable, "-m", "nanokd.show", "--model", str(model_path), "--data-dir", str(folder),
         "--no-verify", "--index", "0", "--T", "1", "4"],
        capture_output=True, env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    out = result.stdout.decode("ascii")
    assert "+" + "-" * 28 + "+" in out and "|" + " " * 10 + "#" * 8 + " " * 10 + "|" in out
    assert out.count("entropy") == 2
