"""Tests for nanokd.data and nanokd.download (which load calls), on tiny IDX files written here (no network)."""

import gzip
import os
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from nanokd import data, download

N_TRAIN, N_TEST = 20, 7
URLLIB_FETCH = download.urllib_fetch  # the default fetcher, before the autouse fixture hides it

# ---------------------------------------------------------------------------
# Helpers and fixtures
# ---------------------------------------------------------------------------


def idx_bytes(array):
    """The IDX encoding of a uint8 array: magic 0x0000 08 <ndim>, sizes, data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_gz(path, payload):
    with gzip.open(path, "wb") as f:
        f.write(payload)


def write_tiny(folder, n_train=N_TRAIN, n_test=N_TEST, seed=0):
    """Write four tiny IDX gzip files into ``folder``; return their arrays."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {
        data.TRAIN_IMAGES: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        data.TRAIN_LABELS: rng.integers(0, 10, n_train, dtype=np.uint8),
        data.TEST_IMAGES: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        data.TEST_LABELS: rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, a in arrays.items():
        write_gz(folder / name, idx_bytes(a))
    return arrays


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No NANOKD_DATA, a private HOME and cache, no system folders, no network."""
    monkeypatch.delenv("NANOKD_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(download, "SYSTEM_DIRS", {})

    def no_network(url, dest, timeout=None):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(download, "urllib_fetch", no_network)


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A local 'mirror' folder of tiny files, registered as MNIST's known-good copies."""
    folder = tmp_path / "mirror"
    arrays = write_tiny(folder)
    known = {f: (download.file_digest(folder / f),) for f in data.FILES}
    monkeypatch.setitem(download.KNOWN_FILES, "mnist", known)
    monkeypatch.setitem(download.MIRRORS, "mnist", (folder.as_uri() + "/",))
    return folder, arrays


def copy_fetch(url, dest):
    """A fetcher that reads file:// URLs without urllib."""
    Path(dest).write_bytes(Path(url.removeprefix("file://")).read_bytes())


def cache_files():
    folder = download.cache_dir("mnist")
    return sorted(os.listdir(folder)) if folder.exists() else []


# ---------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------


def test_load_tiny_files(tmp_path):
    arrays = write_tiny(tmp_path / "d")
    ds = data.load("mnist", tmp_path / "d", verify=False)
    assert isinstance(ds, data.Dataset)
    assert ds.x_train.shape == (N_TRAIN, 28, 28) and ds.x_train.dtype == np.uint8
    assert ds.y_train.shape == (N_TRAIN,) and ds.y_train.dtype == np.int64
    assert ds.x_test.shape == (N_TEST, 28, 28) and ds.y_test.shape == (N_TEST,)
    np.testing.assert_array_equal(ds.x_train, arrays[data.TRAIN_IMAGES])
    np.testing.assert_array_equal(ds.y_train, arrays[data.TRAIN_LABELS])
    np.testing.assert_array_equal(ds.x_test, arrays[data.TEST_IMAGES])
    np.testing.assert_array_equal(ds.y_test, arrays[data.TEST_LABELS])
    x_tr, y_tr, x_te, y_te = ds  # unpacks like a tuple
    assert x_tr is ds.x_train


def test_data_dir_may_hold_a_subfolder_per_dataset(tmp_path):
    arrays = write_tiny(tmp_path / "root" / "mnist")
    ds = data.load("mnist", tmp_path / "root", verify=False)
    np.testing.assert_array_equal(ds.y_test, arrays[data.TEST_LABELS])


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match="unknown data set 'cifar'"):
        data.load("cifar")


def test_missing_file_names_it_and_the_fixes(tmp_path):
    write_tiny(tmp_path / "d")
    (tmp_path / "d" / data.TEST_LABELS).unlink()
    (tmp_path / "d" / data.TRAIN_IMAGES).unlink()
    with pytest.raises(data.DataError, match=r"lacks train-images-idx3-ubyte\.gz, t10k-labels-idx1-ubyte\.gz\. ") as e:
        data.load("mnist", tmp_path / "d", verify=False)
    assert "--data-dir" in str(e.value) and "NANOKD_DATA" in str(e.value)
    assert cache_files() == []  # an explicit folder never triggers a download


def test_missing_file_under_nanokd_data(tmp_path, monkeypatch):
    write_tiny(tmp_path / "d")
    (tmp_path / "d" / data.TRAIN_IMAGES).unlink()
    monkeypatch.setenv("NANOKD_DATA", str(tmp_path / "d"))
    with pytest.raises(data.DataError, match=r"from NANOKD_DATA\) lacks train-images-idx3-ubyte\.gz"):
        download.find_or_download("mnist")


def test_data_dir_does_not_exist(tmp_path):
    with pytest.raises(data.DataError, match=r"nope \(from --data-dir / data_dir\) does not exist.*NANOKD_DATA"):
        download.find_or_download("mnist", tmp_path / "nope")


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(data.DataError, match=r"missing file .*nothere\.gz.*--data-dir / NANOKD_DATA"):
        data.read_idx(tmp_path / "nothere.gz")


def test_truncated_gzip(tmp_path):
    write_tiny(tmp_path / "d")
    path = tmp_path / "d" / data.TRAIN_IMAGES
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(data.DataError, match=r"train-images-idx3-ubyte\.gz is truncated \(.*\): delete it and "
                                             r"download or copy it again$"):
        data.load("mnist", tmp_path / "d", verify=False)


def test_not_gzip(tmp_path):
    arrays = write_tiny(tmp_path / "d")
    (tmp_path / "d" / data.TEST_IMAGES).write_bytes(idx_bytes(arrays[data.TEST_IMAGES]))  # uncompressed
    with pytest.raises(data.DataError, match=r"t10k-images-idx3-ubyte\.gz is not a valid gzip file \(.*\): delete "
                                             r"it and download or copy it again$"):
        data.load("mnist", tmp_path / "d", verify=False)


def test_wrong_magic(tmp_path):
    arrays = write_tiny(tmp_path / "d")
    payload = b"\x12\x34" + idx_bytes(arrays[data.TRAIN_LABELS])[2:]
    write_gz(tmp_path / "d" / data.TRAIN_LABELS, payload)
    with pytest.raises(data.DataError, match=r"train-labels-idx1-ubyte\.gz is not a valid IDX file, wrong magic"):
        data.load("mnist", tmp_path / "d", verify=False)


def test_labels_where_images_should_be(tmp_path):
    arrays = write_tiny(tmp_path / "d")
    write_gz(tmp_path / "d" / data.TEST_IMAGES, idx_bytes(arrays[data.TEST_LABELS]))
    with pytest.raises(data.DataError, match=r"t10k-images-idx3-ubyte\.gz should hold \(N, 28, 28\).*wrong magic"):
        data.load("mnist", tmp_path / "d", verify=False)


def test_wrong_item_count(tmp_path):
    arrays = write_tiny(tmp_path / "d")
    payload = idx_bytes(arrays[data.TRAIN_LABELS])[:-3]  # header says 20, data has 17
    write_gz(tmp_path / "d" / data.TRAIN_LABELS, payload)
    with pytest.raises(data.DataError, match=r"train-labels-idx1-ubyte\.gz is not a valid IDX file.*wrong number"):
        data.load("mnist", tmp_path / "d", verify=False)


def test_label_out_of_range(tmp_path):
    write_tiny(tmp_path / "d")
    write_gz(tmp_path / "d" / data.TEST_LABELS, idx_bytes(np.array([0, 3, 10, 2, 1, 1, 9])))
    with pytest.raises(data.DataError, match=r"t10k-labels-idx1-ubyte\.gz has label 10, out of the range 0-9"):
        data.load("mnist", tmp_path / "d", verify=False)


def test_image_label_count_mismatch(tmp_path):
    write_tiny(tmp_path / "d")
    write_gz(tmp_path / "d" / data.TRAIN_LABELS, idx_bytes(np.zeros(N_TRAIN - 1)))
    with pytest.raises(data.DataError, match=r"has 20 images but .*train-labels-idx1-ubyte\.gz has 19 labels"):
        data.load("mnist", tmp_path / "d", verify=False)


def test_checksum_mismatch(tmp_path):
    write_tiny(tmp_path / "d")
    with pytest.raises(data.DataError, match=r"checksum mismatch for .*train-images-idx3-ubyte\.gz"):
        data.load("mnist", tmp_path / "d", verify=True)


def test_verified_files_must_have_the_real_sizes(mirror):
    folder, _ = mirror  # its digests are now the known-good ones
    with pytest.raises(data.DataError, match=r"has 20 images, expected 60000"):
        data.load("mnist", folder, verify=True)


def test_checksum_mismatch_says_which_file_it_is(mirror):
    folder, _ = mirror  # registered as MNIST, checked as Fashion-MNIST
    with pytest.raises(data.DataError, match=r"\(it is mnist/t10k-labels-idx1-ubyte\.gz\)"):
        download.verify_file(folder / data.TEST_LABELS, "fashion-mnist")


# ---------------------------------------------------------------------------
# Finding and downloading
# ---------------------------------------------------------------------------


def test_download_is_verified_and_renamed_into_place(mirror, monkeypatch):
    folder, arrays = mirror
    monkeypatch.setattr(download, "urllib_fetch", URLLIB_FETCH)  # the real one, on file:// URLs
    got = download.find_or_download("mnist")
    assert got == download.cache_dir("mnist")
    assert cache_files() == sorted(data.FILES)  # no temporary files left
    for f in data.FILES:
        assert (got / f).read_bytes() == (folder / f).read_bytes()
    ds = data.load("mnist", verify=False)  # now found in the cache
    np.testing.assert_array_equal(ds.x_train, arrays[data.TRAIN_IMAGES])


def test_download_fetches_only_missing_files(mirror):
    folder, _ = mirror
    cache = download.cache_dir("mnist")
    cache.mkdir(parents=True)
    (cache / data.TRAIN_IMAGES).write_bytes((folder / data.TRAIN_IMAGES).read_bytes())
    urls = []

    def fetch(url, dest):
        urls.append(url)
        copy_fetch(url, dest)

    download.find_or_download("mnist", fetch=fetch)
    assert sorted(u.rsplit("/", 1)[1] for u in urls) == sorted(set(data.FILES) - {data.TRAIN_IMAGES})
    assert cache_files() == sorted(data.FILES)


def test_corrupt_download_leaves_nothing_behind(mirror):
    def corrupt(url, dest):
        copy_fetch(url, dest)
        with open(dest, "r+b") as f:
            f.seek(20)
            f.write(b"\xff\xff")

    with pytest.raises(data.DataError, match=r"could not download .*\n.*checksum mismatch"):
        download.find_or_download("mnist", fetch=corrupt)
    assert cache_files() == []


def test_interrupted_download_leaves_nothing_behind(mirror):
    def half_then_fail(url, dest):
        Path(dest).write_bytes(b"\x1f\x8b partial")
        raise ConnectionResetError("connection reset by peer")

    with pytest.raises(data.DataError, match=r"connection reset by peer"):
        download.find_or_download("mnist", fetch=half_then_fail)
    assert cache_files() == []


def test_first_mirror_fails_second_works(mirror, monkeypatch):
    folder, _ = mirror
    monkeypatch.setitem(download.MIRRORS, "mnist", ("https://dead.invalid/mnist/", folder.as_uri() + "/"))
    urls = []

    def fetch(url, dest):
        urls.append(url)
        if "dead.invalid" in url:
            Path(dest).write_bytes(b"<html>404</html>")
            raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)
        copy_fetch(url, dest)

    download.find_or_download("mnist", fetch=fetch)
    assert cache_files() == sorted(data.FILES)
    assert len(urls) == 8 and urls[0].startswith("https://dead.invalid/")


def test_load_downloads_by_default_and_not_when_told_not_to(mirror, monkeypatch):
    _, arrays = mirror
    monkeypatch.setattr(download, "urllib_fetch", URLLIB_FETCH)  # the real one, on file:// URLs
    with pytest.raises(data.DataError, match="not found, and downloading is off"):
        data.load("mnist", download=False, verify=False)
    assert cache_files() == []
    ds = data.load("mnist", verify=False)  # the mirror's files are tiny: not the counts of the real ones
    np.testing.assert_array_equal(ds.x_test, arrays[data.TEST_IMAGES])


def test_images_of_another_size_than_28x28_are_refused(tmp_path):
    arrays = write_tiny(tmp_path / "d")
    write_gz(tmp_path / "d" / data.TEST_IMAGES, idx_bytes(arrays[data.TEST_IMAGES][:, :14, :14].copy()))
    with pytest.raises(data.DataError, match=r"t10k-images-idx3-ubyte\.gz should hold \(N, 28, 28\) uint8 images"):
        data.load("mnist", tmp_path / "d", verify=False)


def test_no_network_no_local_copy():
    with pytest.raises(data.DataError) as e:
        download.find_or_download("mnist")  # urllib_fetch is replaced by no_network
    message = str(e.value)
    for needed in ("could not download", "network disabled", "--data-dir", "NANOKD_DATA", str(download.cache_dir("mnist"))):
        assert needed in message
    assert cache_files() == []


def test_download_off_and_no_local_copy():
    with pytest.raises(data.DataError, match=r"mnist not found, and downloading is off.*--data-dir.*NANOKD_DATA"):
        download.find_or_download("mnist", download=False)


def test_search_order(tmp_path, monkeypatch):
    for where in ("arg", "env", "cache/nanokd/mnist"):
        write_tiny(tmp_path / where)
    monkeypatch.setenv("NANOKD_DATA", str(tmp_path / "env"))
    assert download.find_or_download("mnist", tmp_path / "arg", download=False) == tmp_path / "arg"
    assert download.find_or_download("mnist", download=False) == tmp_path / "env"
    monkeypatch.delenv("NANOKD_DATA")
    assert download.find_or_download("mnist", download=False) == tmp_path / "cache" / "nanokd" / "mnist"


def test_cache_defaults_to_home(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert download.cache_dir("mnist") == tmp_path / "home" / ".cache" / "nanokd" / "mnist"


def test_system_folder_after_cache(tmp_path, monkeypatch):
    write_tiny(tmp_path / "debian")
    monkeypatch.setattr(download, "SYSTEM_DIRS", {"fashion-mnist": (tmp_path / "debian",)})
    assert download.find_or_download("fashion-mnist", download=False) == tmp_path / "debian"
    write_tiny(download.cache_dir("fashion-mnist"))
    assert download.find_or_download("fashion-mnist", download=False) == download.cache_dir("fashion-mnist")


# ---------------------------------------------------------------------------
# to_float, split_validation
# ---------------------------------------------------------------------------


def test_to_float():
    x = np.array([[[0, 255], [51, 1]]], dtype=np.uint8).repeat(3, axis=0)
    f = data.to_float(x)
    assert f.shape == (3, 4) and f.dtype == np.float32
    np.testing.assert_allclose(f[0], [0, 1, 0.2, 1 / 255], rtol=1e-6)
    assert f.min() == 0 and f.max() == 1


def test_split_validation():
    x, y = np.arange(50).reshape(10, 5), np.arange(10)
    x_tr, y_tr, x_val, y_val = data.split_validation(x, y, n_val=3)
    assert x_tr.shape == (7, 5) and y_tr.shape == (7,) and x_val.shape == (3, 5) and y_val.shape == (3,)
    np.testing.assert_array_equal(y_val, [7, 8, 9])  # the last ones
    np.testing.assert_array_equal(y_tr, np.arange(7))
    x_tr, y_tr, x_val, y_val = data.split_validation(x, y, n_val=0)
    assert x_tr.shape == (10, 5) and x_val.shape == (0, 5) and y_val.shape == (0,)


@pytest.mark.parametrize("n_val", [-1, 10, 11])
def test_split_validation_bad_n_val(n_val):
    with pytest.raises(ValueError, match="n_val must be in"):
        data.split_validation(np.zeros((10, 5)), np.zeros(10), n_val=n_val)


def test_split_validation_length_mismatch():
    with pytest.raises(ValueError, match="x has 10 examples but y has 9"):
        data.split_validation(np.zeros((10, 5)), np.zeros(9), n_val=2)


# ---------------------------------------------------------------------------
# The real data sets (skipped when absent)
# ---------------------------------------------------------------------------


def test_real_mnist(mnist_dir):
    ds = data.load("mnist", mnist_dir, verify=True)
    assert ds.x_train.shape == (60000, 28, 28) and ds.x_test.shape == (10000, 28, 28)
    assert ds.y_train.shape == (60000,) and ds.y_test.shape == (10000,)
    # Label counts from shared/data/mnist/SOURCE.md.
    assert np.bincount(ds.y_train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(ds.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert abs(ds.x_train.mean() / 255 - 0.1307) < 1e-4


def test_real_fashion_mnist_from_debian(monkeypatch):
    folder = Path("/usr/share/datasets/fashion-mnist")
    if any(not (folder / f).is_file() for f in data.FILES):
        pytest.skip(f"Debian's fashion-mnist not installed ({folder}; apt-get install dataset-fashion-mnist)")
    monkeypatch.setattr(download, "SYSTEM_DIRS", {"fashion-mnist": (folder,)})
    ds = data.load("fashion-mnist", download=False, verify=True)
    assert np.bincount(ds.y_train).tolist() == [6000] * 10
    assert np.bincount(ds.y_test).tolist() == [1000] * 10


def test_balanced_subset_has_the_same_number_of_each_class_and_depends_only_on_its_seed():
    y = np.random.default_rng(0).integers(0, 10, 2000)
    idx = data.balanced_subset(y, 300, seed=4)
    assert len(idx) == 300 and len(np.unique(idx)) == 300 and np.all(np.diff(idx) > 0)
    assert np.bincount(y[idx], minlength=10).tolist() == [30] * 10
    np.testing.assert_array_equal(idx, data.balanced_subset(y, 300, seed=4))
    assert not np.array_equal(idx, data.balanced_subset(y, 300, seed=5))
    with pytest.raises(ValueError, match="multiple of the 10 classes"):
        data.balanced_subset(y, 305, seed=0)
    with pytest.raises(ValueError, match="class 3 has"):
        data.balanced_subset(np.r_[y[y != 3], [3]], 300, seed=0)


def test_download_goes_to_a_hidden_part_file_beside_its_target_and_says_so(mirror, capsys):
    """Each file is fetched into '.NAME.*.part' in the cache folder (never under its own name until verified),
    and each fetch is announced on stderr."""
    folder, _ = mirror
    seen = []

    def fetch(url, dest):
        seen.append((url.rsplit("/", 1)[1], Path(dest)))
        copy_fetch(url, dest)

    download.find_or_download("mnist", fetch=fetch)
    assert sorted(name for name, _ in seen) == sorted(data.FILES)
    for name, dest in seen:
        assert dest.parent == download.cache_dir("mnist")
        assert dest.name.startswith(f".{name}.") and dest.name.endswith(".part")
    err = capsys.readouterr().err
    for name in data.FILES:
        assert f"nanokd: downloading {folder.as_uri()}/{name}\n" in err


def test_a_failed_download_lists_every_mirror_then_says_where_the_files_may_be(monkeypatch):
    monkeypatch.setitem(download.MIRRORS, "mnist", ("https://a.invalid/", "https://b.invalid/"))
    monkeypatch.setattr(download, "SYSTEM_DIRS", {"mnist": ("/usr/share/datasets/mnist", "/srv/mnist")})
    with pytest.raises(data.DataError) as e:
        download.find_or_download("mnist")
    name = data.FILES[0]
    lines = str(e.value).split("\n")
    assert lines[:3] == [f"could not download {name}:",
                         f"  https://a.invalid/{name}: <urlopen error network disabled in tests>",
                         f"  https://b.invalid/{name}: <urlopen error network disabled in tests>"]
    assert lines[3] == (
        f"nanokd needs the four mnist files {', '.join(data.FILES)}. Either pass --data-dir DIR (data_dir=DIR in "
        f"Python) or set the environment variable NANOKD_DATA=DIR, where DIR holds the four files or a 'mnist/' "
        f"folder with them (e.g. a shared copy such as shared/data/mnist beside the repository); or copy them into "
        f"{download.cache_dir('mnist')}, or let nanokd download them there (needs network); or install them in "
        f"/usr/share/datasets/mnist; or install them in /srv/mnist.")
