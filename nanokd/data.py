"""MNIST, Fashion-MNIST and a user's own data: decoding and checking it, and preparing the inputs.

Both data sets come as the same four gzip-compressed IDX files::

    train-images-idx3-ubyte.gz   60000 x 28 x 28 uint8 pixels
    train-labels-idx1-ubyte.gz   60000 uint8 labels 0..9
    t10k-images-idx3-ubyte.gz    10000 x 28 x 28
    t10k-labels-idx1-ubyte.gz    10000

The data set ``"custom"`` is any four files in that layout and with those
names, in a folder the user names (Kuzushiji-MNIST, EMNIST digits, home-made
data): the images may be of any size H x W (the same for training and test),
and the number of classes is the largest training label + 1.  It gets the
same checks as the known sets but no checksums, since nanokd cannot know them.

:func:`load` finds the files (:func:`nanokd.download.find_or_download`, which
also downloads and verifies them), decodes and checks them;
:func:`num_classes` counts their classes, :func:`to_float` turns the pixels
into the ``(N, H * W)`` float32 inputs the networks take,
:func:`split_validation` holds out the last training images and
:func:`balanced_subset` draws a small training set (the paper's augmentation,
jitter, is :mod:`nanokd.jitter`).  IDX decoding itself is done by the
``mnist`` package's :func:`mnist.parse_idx`; this module adds shape checks
and error messages that say what to do.  The files' names and
:class:`~nanokd.download.DataError` are imported from :mod:`nanokd.download`
and can be used from here too (``nanokd.data.DataError``).
"""

import gzip
import zlib
from pathlib import Path
from typing import NamedTuple

import mnist
import numpy as np

from nanokd.download import (CUSTOM, DATASETS, FILES, KNOWN_DATASETS, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES,
                             TRAIN_LABELS, DataError, check_name, find_or_download, verify_file)

__all__ = ["CUSTOM", "DATASETS", "FILES", "KNOWN_DATASETS", "TEST_IMAGES", "TEST_LABELS", "TRAIN_IMAGES",
           "TRAIN_LABELS", "DataError", "IMAGE_SIZE", "NUM_CLASSES", "EXPECTED_COUNT", "Dataset", "read_idx", "load",
           "num_classes", "to_float", "split_validation", "balanced_subset"]


#: The image side and class count of MNIST and Fashion-MNIST (a custom data set's come from its files:
#: ``x_train.shape[1:]`` and :func:`num_classes`).
IMAGE_SIZE = 28
NUM_CLASSES = 10

#: Number of examples per file in the real data sets (checked when ``verify=True``).
EXPECTED_COUNT = {TRAIN_IMAGES: 60000, TRAIN_LABELS: 60000, TEST_IMAGES: 10000, TEST_LABELS: 10000}




class Dataset(NamedTuple):
    """A data set as host NumPy arrays: images ``(N, H, W) uint8`` (28 x 28 for MNIST), labels ``(N,) int64``."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


# ---------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------


def read_idx(path):
    """Decode one gzip-compressed IDX file with :func:`mnist.parse_idx`.

    Raises :class:`DataError` naming the file when it is missing, not gzip,
    truncated or not valid IDX.
    """
    path = Path(path)
    fix = "delete it and download or copy it again"
    try:
        with gzip.open(path, "rb") as fd:
            return mnist.parse_idx(fd)
    except FileNotFoundError:
        raise DataError(f"missing file {path}; copy it there or point --data-dir / NANOKD_DATA elsewhere") from None
    except EOFError as e:
        raise DataError(f"{path} is truncated ({e}): {fix}") from None
    except (gzip.BadGzipFile, zlib.error) as e:
        raise DataError(f"{path} is not a valid gzip file ({e}): {fix}") from None
    except mnist.IdxDecodeError as e:
        raise DataError(f"{path} is not a valid IDX file, wrong magic number or size ({e}): {fix}") from None


def _check_images(x, path, size=(IMAGE_SIZE, IMAGE_SIZE)):
    """``x`` must be ``(N, H, W)`` uint8 images, of ``size`` (H, W) unless that is None (custom data)."""
    shape = "(N, H, W)" if size is None else f"(N, {size[0]}, {size[1]})"
    if x.ndim != 3 or x.dtype != np.uint8 or (size is not None and x.shape[1:] != tuple(size)):
        raise DataError(
            f"{path} should hold {shape} uint8 images, but holds {x.shape} {x.dtype} "
            f"(wrong magic number: is it a label file?)"
        )


def _check_label_file(y, path, n_classes=NUM_CLASSES):
    """``y`` must be ``(N,)`` uint8 labels, each below ``n_classes`` unless that is None (custom training labels)."""
    if y.ndim != 1 or y.dtype != np.uint8:
        raise DataError(
            f"{path} should hold (N,) uint8 labels, but holds {y.shape} {y.dtype} "
            f"(wrong magic number: is it an image file?)"
        )
    if n_classes is not None and y.size and y.max() >= n_classes:
        raise DataError(f"{path} has label {y.max()}, out of the range 0-{n_classes - 1}: the file is corrupt")


def _check_custom(arrays, folder):
    """The checks only a custom data set needs: one image size, at least two classes, test labels in range.

    The known data sets' sizes and class counts are fixed (:data:`IMAGE_SIZE`,
    :data:`NUM_CLASSES`); a custom set's come from its training files.
    """
    x_train, x_test = arrays[TRAIN_IMAGES], arrays[TEST_IMAGES]
    y_train, y_test = arrays[TRAIN_LABELS], arrays[TEST_LABELS]
    if len(x_train) == 0:
        raise DataError(f"{folder / TRAIN_IMAGES} holds no images: there is nothing to train on")
    if x_train.shape[1:] != x_test.shape[1:]:
        (h, w), (ht, wt) = x_train.shape[1:], x_test.shape[1:]
        raise DataError(f"{folder / TEST_IMAGES} holds {ht}x{wt} images but {folder / TRAIN_IMAGES} holds "
                        f"{h}x{w} images: the training and test images must be the same size")
    n_classes = int(y_train.max()) + 1
    if n_classes < 2:
        raise DataError(f"{folder / TRAIN_LABELS} has only label 0: a classifier needs at least two classes "
                        f"(labels 0, 1, ...)")
    if y_test.size and y_test.max() >= n_classes:
        raise DataError(f"{folder / TEST_LABELS} has label {y_test.max()}, out of the range 0-{n_classes - 1} of the "
                        f"training labels ({folder / TRAIN_LABELS}: the number of classes is the largest training "
                        f"label + 1 = {n_classes}); a class the training set never shows cannot be learned")


def load(name="mnist", data_dir=None, *, download=True, verify=True):
    """Load a data set as host NumPy arrays.

    Parameters
    ----------
    name : {"mnist", "fashion-mnist", "custom"}
        ``"custom"``: the four files in ``data_dir``, of any image size and
        number of classes (see the module's docstring); never downloaded, and
        without checksums whatever ``verify`` says.
    data_dir : str or Path, optional
        Where the files are; see :func:`nanokd.download.find_or_download` for the search order.
        Needed for ``"custom"``.
    download : bool
        Download missing files into the cache folder if not found.
    verify : bool
        Check each file's checksum against :data:`nanokd.download.KNOWN_FILES` and the split
        sizes (60000 / 10000).  Pass ``False`` for home-made test files.

    Returns
    -------
    Dataset
        ``x_train (N, 28, 28) uint8``, ``y_train (N,) int64``, ``x_test``, ``y_test``
        (``(N, H, W)`` for custom data).
    """
    folder = find_or_download(name, data_dir, download=download)
    custom = name == CUSTOM
    verify = verify and not custom
    arrays = {}
    for filename in FILES:
        path = folder / filename
        if verify and path.is_file():
            verify_file(path, name)
        arrays[filename] = read_idx(path)
    for images, labels in ((TRAIN_IMAGES, TRAIN_LABELS), (TEST_IMAGES, TEST_LABELS)):
        x, y = arrays[images], arrays[labels]
        _check_images(x, folder / images, size=None if custom else (IMAGE_SIZE, IMAGE_SIZE))
        _check_label_file(y, folder / labels, n_classes=None if custom else NUM_CLASSES)
        if len(x) != len(y):
            raise DataError(f"{folder / images} has {len(x)} images but {folder / labels} has {len(y)} labels")
        if verify and len(x) != EXPECTED_COUNT[images]:
            raise DataError(f"{folder / images} has {len(x)} images, expected {EXPECTED_COUNT[images]}")
    if custom:
        _check_custom(arrays, folder)
    return Dataset(
        arrays[TRAIN_IMAGES],
        arrays[TRAIN_LABELS].astype(np.int64),
        arrays[TEST_IMAGES],
        arrays[TEST_LABELS].astype(np.int64),
    )


def num_classes(name, ds):
    """The number of classes of data set ``name`` as loaded in ``ds``.

    :data:`NUM_CLASSES` (10) for MNIST and Fashion-MNIST, whatever labels the
    files hold; for custom data the largest training label + 1 (:func:`load`
    has checked that the test labels are below it).
    """
    check_name(name)
    return int(ds.y_train.max()) + 1 if name == CUSTOM else NUM_CLASSES


# ---------------------------------------------------------------------------
# Preparing the inputs
# ---------------------------------------------------------------------------


def to_float(x, xp=np):
    """Pixels ``(N, H, W) uint8`` -> network inputs ``(N, H * W) float32`` in [0, 1] on ``xp``'s device.

    The uint8 array is moved first (4x fewer bytes), then converted there.
    """
    x = xp.asarray(x)
    out = x.reshape(len(x), -1).astype(xp.float32)
    out /= 255
    return out


def split_validation(x, y, n_val=10000):
    """Hold out the last ``n_val`` training examples for validation.

    Returns ``(x_train, y_train, x_val, y_val)``, views of the inputs;
    ``n_val=0`` gives empty validation arrays.  Raises ValueError unless
    ``0 <= n_val < len(x)``.
    """
    n = len(x)
    if len(y) != n:
        raise ValueError(f"x has {n} examples but y has {len(y)}")
    if not 0 <= n_val < n:
        raise ValueError(f"n_val must be in [0, {n}), got {n_val}")
    k = n - n_val
    return x[:k], y[:k], x[k:], y[k:]


def balanced_subset(y, n, seed):
    """Indices of ``n`` examples, the same number of each class, drawn without replacement: a sorted (n,) array.

    For a small training set that keeps the classes as balanced as the full
    one (the paper's section 6 trains on 3 % of its data).  ``n`` must be a
    multiple of the number of classes present in ``y`` (a NumPy array of
    labels), and each class must have enough examples.  The draw depends only
    on ``seed``, ``n`` and ``y``.
    """
    y = np.asarray(y)
    classes = np.unique(y)
    if n <= 0 or n % len(classes):
        raise ValueError(f"n must be a positive multiple of the {len(classes)} classes, got {n}")
    per_class = n // len(classes)
    rng = np.random.default_rng(seed)
    picked = []
    for c in classes:
        members = np.flatnonzero(y == c)
        if len(members) < per_class:
            raise ValueError(f"class {c} has {len(members)} examples, fewer than the {per_class} asked for")
        picked.append(rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(picked))
