"""nanokd.atomic: a file is replaced whole or not at all, and no temporary file is left behind."""

import json
import os
import stat

import numpy as np
import pytest

from nanokd.atomic import atomic_file, save_figure_atomic, write_json_atomic


def test_json_is_written_and_replaces_the_old_file(tmp_path):
    path = tmp_path / "sub" / "record.json"  # the folder is created
    write_json_atomic(path, {"a": 1})
    write_json_atomic(path, {"a": 2, "b": [1.5]})
    assert json.loads(path.read_text()) == {"a": 2, "b": [1.5]}
    assert path.read_text().endswith("\n")
    assert os.listdir(path.parent) == ["record.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "record.json"
    write_json_atomic(path, {"old": True})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"new": object()})  # json cannot encode it, half way through
    assert json.loads(path.read_text()) == {"old": True}
    with pytest.raises(RuntimeError):
        with atomic_file(tmp_path / "other.bin", "wb") as f:
            f.write(b"partial")
            raise RuntimeError("interrupted")
    assert sorted(os.listdir(tmp_path)) == ["record.json"]


def test_default_serialises_what_json_cannot(tmp_path):
    write_json_atomic(tmp_path / "r.json", {"dtype": np.dtype("float32")}, default=str)
    assert json.loads((tmp_path / "r.json").read_text()) == {"dtype": "float32"}


def test_the_file_gets_a_plain_files_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "r.json", [])
    finally:
        os.umask(umask)
    assert stat.S_IMODE(os.stat(tmp_path / "r.json").st_mode) == 0o644  # not mkstemp's 0600


def test_binary_mode_and_bad_mode(tmp_path):
    with atomic_file(tmp_path / "w.npz", "wb") as f:
        np.savez(f, x=np.arange(3))
    np.testing.assert_array_equal(np.load(tmp_path / "w.npz")["x"], np.arange(3))
    with pytest.raises(ValueError, match="mode"):
        with atomic_file(tmp_path / "x", "a"):
            pass


def test_figure_format_comes_from_the_file_name(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    save_figure_atomic(fig, tmp_path / "plot.png")
    save_figure_atomic(fig, tmp_path / "plot.svg")
    plt.close(fig)
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (tmp_path / "plot.svg").read_bytes()[:1000]
    assert sorted(os.listdir(tmp_path)) == ["plot.png", "plot.svg"]
