"""The data sets' files: finding them, downloading them and checking them against known checksums.

MNIST and Fashion-MNIST come as the same four gzip-compressed IDX files
(:data:`FILES`); a custom data set is four files of the same names in a
folder the user names (:mod:`nanokd.data` decodes them all).
:func:`find_or_download` finds a folder holding them, or downloads the known
sets' files from public mirrors (:data:`MIRRORS`) into a cache folder;
:func:`verify_file` checks a file against the known-good copies
(:data:`KNOWN_FILES`) and, when it is another known file, says which.  Every
failure is a :class:`DataError` whose message says what to do.
"""

import hashlib
import http.client
import os
import shutil
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import NamedTuple

#: The data set of a user's own files (see :mod:`nanokd.data`).
CUSTOM = "custom"
#: The data sets nanokd knows (checksums, mirrors), then the custom one.
KNOWN_DATASETS = ("mnist", "fashion-mnist")
DATASETS = (*KNOWN_DATASETS, CUSTOM)

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)


class Digest(NamedTuple):
    """The checksums of one known-good copy of a file."""

    md5: str
    sha256: str


#: Known-good copies of each file, as (md5, sha256): a file passes verification
#: when it matches any one of them.
#:
#: * MNIST: the canonical files (the md5 is the one torchvision checks).
#: * Fashion-MNIST, first: the canonical files (md5 from the Fashion-MNIST
#:   README, also checked by torchvision).  Second: Debian's copies in
#:   /usr/share/datasets/fashion-mnist (package dataset-fashion-mnist), whose
#:   gzip header was rewritten when the package was built (file name dropped,
#:   new time stamp): same compressed data and pixels, other checksums.
#:   Putting the name and original time stamp back into Debian's headers
#:   rebuilds the canonical files byte for byte (their md5 matches), which is
#:   how the canonical sha256 values here were checked.
KNOWN_FILES = {
    "mnist": {
        TRAIN_IMAGES: (
            Digest(
                "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            ),
        ),
        TRAIN_LABELS: (
            Digest(
                "d53e105ee54ea40749a09fcbcd1e9432",
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            ),
        ),
        TEST_IMAGES: (
            Digest(
                "9fb629c4189551a2d022fa330f9573f3",
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            ),
        ),
        TEST_LABELS: (
            Digest(
                "ec29112dd5afa0611ce80d1b7f02629c",
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            ),
        ),
    },
    "fashion-mnist": {
        TRAIN_IMAGES: (
            Digest(
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            ),
            Digest(
                "cf8536b0aa1a6ac5fa3f23001093305c",
                "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
            ),
        ),
        TRAIN_LABELS: (
            Digest(
                "25c81989df183df01b3e8a0aad5dffbe",
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            ),
            Digest(
                "10bea18fdb374794d4bb42e356e600c9",
                "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
            ),
        ),
        TEST_IMAGES: (
            Digest(
                "bef4ecab320f06d8554ea6380940ec79",
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            ),
            Digest(
                "f78720b4224f21cce2f2ccf2d7a94c9a",
                "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
            ),
        ),
        TEST_LABELS: (
            Digest(
                "bb300cfdad3c16e7a12a480ee83cd310",
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            ),
            Digest(
                "0d30e22e447f3c33dab9ed536400ac01",
                "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
            ),
        ),
    },
}

#: Public mirrors, tried in order; a file's URL is the base followed by its name.
MIRRORS = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
}

#: Folders where a system package installs the files (Debian: dataset-fashion-mnist).
SYSTEM_DIRS = {
    "fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"),),
}

DOWNLOAD_TIMEOUT_S = 60


class DataError(ValueError):
    """The data set is missing, incomplete or corrupt; the message says how to fix it."""


# ---------------------------------------------------------------------------
# Finding the files
# ---------------------------------------------------------------------------


def cache_dir(name):
    """The download folder: ``$XDG_CACHE_HOME/nanokd/<name>``, by default ``~/.cache/nanokd/<name>``."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "nanokd" / name


def check_name(name):
    """Raise ValueError unless ``name`` is one of :data:`DATASETS`."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {DATASETS}")


def _missing(folder):
    """The names of the four files that ``folder`` lacks."""
    return [f for f in FILES if not (Path(folder) / f).is_file()]


def _how_to_fix(name):
    """The end of every 'files not found' message: where nanokd looks for them."""
    if name == CUSTOM:
        return (f"--dataset {CUSTOM} needs a folder with four gzip-compressed IDX files named as MNIST's: "
                f"{', '.join(FILES)} (images N x H x W uint8, labels N uint8 from 0), passed as --data-dir DIR "
                f"(data_dir=DIR in Python).")
    system = "".join(f"; or install them in {folder}" for folder in SYSTEM_DIRS.get(name, ()))
    return (
        f"nanokd needs the four {name} files {', '.join(FILES)}. Either pass --data-dir DIR "
        f"(data_dir=DIR in Python) or set the environment variable NANOKD_DATA=DIR, where DIR "
        f"holds the four files or a '{name}/' folder with them (e.g. a shared copy such as "
        f"shared/data/{name} beside the repository); or copy them into {cache_dir(name)}, or let "
        f"nanokd download them there (needs network){system}."
    )


def _dataset_folder(root, name):
    """``root/<name>`` if that folder exists, else ``root`` itself."""
    root = Path(root).expanduser()
    return root / name if (root / name).is_dir() else root


def find_or_download(name, data_dir=None, *, download=True, fetch=None):
    """Return the folder holding the four files of data set ``name``.

    Looks, in this order, in

    1. ``data_dir`` (the ``--data-dir`` option);
    2. the folder named by the environment variable ``NANOKD_DATA``;
    3. the cache folder :func:`cache_dir`, ``~/.cache/nanokd/<name>``;
    4. a system folder (:data:`SYSTEM_DIRS`), e.g. Debian's
       ``/usr/share/datasets/fashion-mnist``;
    5. and finally downloads the missing files into the cache folder.

    In steps 1 and 2 the folder may hold the files itself or in a ``<name>/``
    subfolder, and it is the only place looked at: a missing file there is an
    error, never a reason to download elsewhere.

    A custom data set (``name="custom"``) is looked for in ``data_dir`` only,
    the folder itself, and never downloaded.

    Parameters
    ----------
    name : {"mnist", "fashion-mnist", "custom"}
    data_dir : str or Path, optional
    download : bool
        Allow step 5.  Each file is fetched to a temporary name in the cache
        folder, checked against :data:`KNOWN_FILES`, then renamed into place, so
        a partial or corrupt download never sits under the final name.
    fetch : callable, optional
        ``fetch(url, dest_path)`` writes the file at ``url`` to ``dest_path``;
        the default uses urllib with a timeout.  Tests pass a fake.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    DataError
        When the files are not found and cannot be downloaded.
    """
    check_name(name)
    if name == CUSTOM:
        return _custom_folder(data_dir)
    for root, source in ((data_dir, "--data-dir / data_dir"), (os.environ.get("NANOKD_DATA"), "NANOKD_DATA")):
        if root:
            return _checked_folder(_dataset_folder(root, name), source, name)

    cache = cache_dir(name)
    for folder in (cache, *SYSTEM_DIRS.get(name, ())):
        if not _missing(folder):
            return folder

    missing = _missing(cache)
    if not download:
        raise DataError(f"{name} not found, and downloading is off. " + _how_to_fix(name))
    cache.mkdir(parents=True, exist_ok=True)
    for filename in missing:
        _download(name, filename, cache, fetch or urllib_fetch)
    return cache


def _custom_folder(data_dir):
    """The folder of a custom data set: ``data_dir`` itself, which must hold the four files (no search, no download)."""
    if not data_dir:
        raise DataError("no folder given. " + _how_to_fix(CUSTOM))
    return _checked_folder(Path(data_dir).expanduser(), "--data-dir / data_dir", CUSTOM)


def _checked_folder(folder, source, name):
    """``folder`` (named by ``source``) if it holds the four files; else a DataError saying what it lacks."""
    if not folder.is_dir():
        raise DataError(f"{folder} (from {source}) does not exist. " + _how_to_fix(name))
    missing = _missing(folder)
    if missing:
        raise DataError(f"{folder} (from {source}) lacks {', '.join(missing)}. " + _how_to_fix(name))
    return folder


def urllib_fetch(url, dest_path, timeout=DOWNLOAD_TIMEOUT_S):
    """Write the file at ``url`` (http, https or file) to ``dest_path``."""
    with urllib.request.urlopen(url, timeout=timeout) as response, open(dest_path, "wb") as f:
        shutil.copyfileobj(response, f, 1 << 20)


def _download(name, filename, folder, fetch):
    """Fetch ``filename`` from the first mirror that gives a verified copy.

    The file goes to a temporary name in ``folder`` and is ``os.replace``d into
    place only after its checksum matches; on any failure it is deleted.
    """
    errors = []
    for base in MIRRORS[name]:
        url = base + filename
        print(f"nanokd: downloading {url}", file=sys.stderr)
        fd, tmp = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=folder)
        os.close(fd)
        try:
            fetch(url, tmp)
            verify_file(tmp, name, filename)
            os.replace(tmp, Path(folder) / filename)
            return
        except (OSError, ValueError, http.client.HTTPException) as e:
            errors.append(f"  {url}: {e}")
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    raise DataError(f"could not download {filename}:\n" + "\n".join(errors) + "\n" + _how_to_fix(name))


# ---------------------------------------------------------------------------
# Checking
# ---------------------------------------------------------------------------


def file_digest(path):
    """The :class:`Digest` (md5 and sha256) of a file, read in one pass."""
    md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            md5.update(chunk)
            sha256.update(chunk)
    return Digest(md5.hexdigest(), sha256.hexdigest())


def verify_file(path, name, filename=None):
    """Check that ``path`` is a known-good copy of ``filename`` of data set ``name``.

    ``filename`` defaults to the name of ``path``.  Raises :class:`DataError`
    on a checksum mismatch, naming the file and, when it recognises it, which
    file it actually is: then the advice is to keep it (it is good, only in
    the wrong place), else to replace it.
    """
    path = Path(path)
    filename = filename or path.name
    digest = file_digest(path)
    if digest in KNOWN_FILES[name][filename]:
        return
    known = [(other, f) for other, files in KNOWN_FILES.items() for f, ds in files.items() if digest in ds]
    mismatch = f"checksum mismatch for {path}: md5 {digest.md5} is not that of {name}'s {filename}"
    if not known:
        raise DataError(f"{mismatch}. The file is corrupt or not one of the {name} files: delete it and download "
                        f"or copy it again (or pass --no-verify for a home-made file).")
    other, actual = known[0]
    if other != name:  # a good file of the other data set: deleting it would lose it
        raise DataError(f"{mismatch} (it is {other}/{actual}): a good file of the other data set, keep it. Pass "
                        f"--dataset {other} to train on {other}, or point --data-dir at a folder of the {name} files.")
    raise DataError(f"{mismatch} (it is {other}/{actual}): a good file under the wrong name, keep it. Rename the "
                    f"files in {path.parent} after what they hold.")


def file_sha256s(folder):
    """``{file name: sha256}`` of the four files in ``folder``: what a custom run records of its data."""
    return {f: file_digest(Path(folder) / f).sha256 for f in FILES}
