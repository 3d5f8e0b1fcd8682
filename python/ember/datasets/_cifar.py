"""CIFAR-10 from the official "python version" batch files, read without trusting the pickles."""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import numpy as np

from ._missing import missing_files

try:  # NumPy >= 2
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # NumPy 1.x
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric

TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
_FOLDER = "cifar-10-batches-py"


class RefusedGlobalError(pickle.UnpicklingError, ValueError):
    """A pickle referenced a global outside the allow-list of ``_ArrayUnpickler``."""


def _latin1_encode(text, encoding="latin1", errors="strict"):
    """``_codecs.encode`` as Python 3 uses it to pickle ``bytes`` at protocols < 3, latin-1 only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise RefusedGlobalError(f"refused _codecs.encode({type(text).__name__}, {encoding!r}, {errors!r}): "
                                 "only the latin-1 encoding of a str rebuilds bytes")
    return text.encode("latin1")


# Every global a CIFAR-10 pickle may name: what rebuilds NumPy arrays, dtypes, scalars and bytes.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy.core.multiarray", "scalar"): _multiarray.scalar,
    ("numpy._core.multiarray", "scalar"): _multiarray.scalar,
    ("numpy.core.numeric", "_frombuffer"): _numeric._frombuffer,  # protocol 5
    ("numpy._core.numeric", "_frombuffer"): _numeric._frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild NumPy arrays, dtypes and scalars (plus plain containers,
    which need no globals) and refuses every other global, so loading cannot run code."""

    def __init__(self, file, path: Path):
        super().__init__(file, encoding="bytes")
        self._path = path

    def find_class(self, module, name):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise RefusedGlobalError(f"{self._path}: the file tries to load {module}.{name}, which was refused "
                                     "(a CIFAR-10 batch holds only NumPy arrays and lists)") from None


def _field(batch: dict, key: str, path: Path):
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    raise ValueError(f"{path}: not a CIFAR-10 batch, it has no {key!r} entry (keys: {sorted(map(repr, batch))})")


def load_batch(path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 batch file as ``(x, y)``: ``x`` uint8 ``(n, 3, 32, 32)``, ``y`` int64 ``(n,)``.

    The pickle is read with an unpickler that only rebuilds NumPy arrays; any other object
    is refused with a ``pickle.UnpicklingError`` naming it. A truncated or malformed file
    raises ``ValueError`` naming the file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            batch = _ArrayUnpickler(f, path).load()
    except (RefusedGlobalError, OSError):
        raise
    except Exception as exc:  # truncated or corrupt pickles fail in many ways; name the file
        raise ValueError(f"{path}: not a readable CIFAR-10 batch (truncated or corrupt pickle: {exc})") from exc
    if not isinstance(batch, dict):
        raise ValueError(  # noqa: TRY004 (a malformed file, like every other check here)
            f"{path}: not a CIFAR-10 batch, it holds a {type(batch).__name__} instead of a dict")
    data, labels = _field(batch, "data", path), _field(batch, "labels", path)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        what = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"{path}: 'data' must be a uint8 array of shape (n, 3072), got a {what}")
    try:
        with warnings.catch_warnings():  # NumPy < 1.24 makes ragged lists object arrays, with a warning
            warnings.simplefilter("ignore")
            y = np.asarray(labels)
    except Exception as exc:
        raise ValueError(f"{path}: 'labels' must be a list of integers ({exc})") from exc
    if y.dtype == object:  # ragged or mixed entries (NumPy >= 1.24 raised above)
        raise ValueError(f"{path}: 'labels' must be a list of integers, got entries of other kinds or lengths")
    if y.ndim != 1 or y.dtype.kind not in "iu" or len(y) != len(data):
        raise ValueError(f"{path}: 'labels' must be {len(data)} integers (one per row of 'data'), got "
                         f"{y.dtype} of shape {y.shape}")
    if len(y) and (y.min() < 0 or y.max() > 9):
        raise ValueError(f"{path}: labels must lie in 0..9, got values from {y.min()} to {y.max()}")
    return data.reshape(-1, 3, 32, 32), y.astype(np.int64)


def cifar10(root):
    """CIFAR-10 from the "python version" files (``cifar-10-python.tar.gz``, extracted).

    ``root`` is the folder holding ``data_batch_1`` ... ``data_batch_5`` and ``test_batch``, or
    the folder containing ``cifar-10-batches-py``. Nothing is downloaded.

    Returns ``((x_train, y_train), (x_test, y_test))``: ``x`` uint8 ``(N, 3, 32, 32)`` (50 000
    and 10 000 images for the full set), ``y`` int64 labels 0..9 (airplane, automobile, bird,
    cat, deer, dog, frog, horse, ship, truck).

    The files are pickles; they are read with a restricted unpickler that rebuilds NumPy arrays
    and nothing else, so a tampered file cannot run code (it raises ``pickle.UnpicklingError``).
    Missing files raise ``FileNotFoundError``; truncated or malformed ones ``ValueError``, both
    naming the file.
    """
    root = Path(os.fspath(root))
    folder = root / _FOLDER if (root / _FOLDER).is_dir() else root
    expected = TRAIN_FILES + (TEST_FILE,)
    missing = [name for name in expected if not (folder / name).is_file()]
    if missing:
        raise missing_files("CIFAR-10", folder, f"{', '.join(missing)} (the python version's batches "
                            f"{', '.join(expected)}, in that folder or in a {_FOLDER} folder inside it)",
                            "cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar.html", root)
    train = [load_batch(folder / name) for name in TRAIN_FILES]
    x_test, y_test = load_batch(folder / TEST_FILE)
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return (x_train, y_train), (x_test, y_test)
