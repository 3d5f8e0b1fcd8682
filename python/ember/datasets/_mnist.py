"""MNIST and Fashion-MNIST from their IDX files."""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ._missing import missing_files

_MAGIC = {3: 0x00000803, 1: 0x00000801}  # unsigned bytes, 3 or 1 dimensions
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_KINDS = {"mnist": "MNIST", "fashion": "FashionMNIST", "fashion_mnist": "FashionMNIST"}


# The largest data an IDX file may promise (16 GiB: 20x the largest real image set).
MAX_IDX_BYTES = 1 << 34
_TAIL = 4096  # bytes read past the data to report how many are left over


def read_idx(path, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes with ``ndim`` dimensions (gzip-compressed if its name ends
    in ``.gz``), as a uint8 array of the shape its header gives.

    The header is read first: its magic number and dimensions are checked (a size that does not
    fit in memory's addresses, or over 16 GiB, is refused by name), then exactly the bytes it
    promises are read, plus a few kilobytes to prove there are no more -- a small compressed
    file that inflates to gigabytes is never inflated past that. A truncated file, or one with bytes left
    over, raises ``ValueError`` naming the file.
    """
    path = Path(path)
    header = 4 + 4 * ndim
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            head = f.read(header)
            if len(head) < header:
                raise ValueError(f"{path}: truncated IDX file, {len(head)} bytes is less than the {header}-byte header")
            magic, *dims = struct.unpack(f">{1 + ndim}I", head)
            if magic != _MAGIC[ndim]:
                raise ValueError(f"{path}: not an IDX file of {ndim}-D unsigned bytes: magic number is {magic:#010x}, "
                                 f"expected {_MAGIC[ndim]:#010x}")
            size = 1
            for d in dims:
                size *= d  # Python ints: no overflow
            if size > MAX_IDX_BYTES:
                raise ValueError(f"{path}: the header promises {dims} = {size} bytes of data, more than the "
                                 f"{MAX_IDX_BYTES} an IDX file may hold")
            data = f.read(size + _TAIL + 1)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise ValueError(f"{path}: not a readable gzip file (truncated or corrupt: {exc})") from exc
    if len(data) < size:
        raise ValueError(f"{path}: truncated IDX file, the header promises {dims} ({header + size} bytes in all) "
                         f"but the file has {header + len(data)} bytes")
    if len(data) > size:
        extra = f"more than {_TAIL}" if len(data) - size > _TAIL else str(len(data) - size)
        raise ValueError(f"{path}: {extra} unexpected bytes after the {dims} data the header promises")
    return np.frombuffer(data, dtype=np.uint8).reshape(dims).copy()


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _split(folder: Path, images_name: str, labels_name: str) -> tuple[np.ndarray, np.ndarray]:
    images_path, labels_path = _find(folder, images_name), _find(folder, labels_name)
    images, labels = read_idx(images_path, 3), read_idx(labels_path, 1)
    if len(images) != len(labels):
        raise ValueError(f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels")
    if len(labels) and labels.max() > 9:
        raise ValueError(f"{labels_path}: labels must lie in 0..9, got a {labels.max()}")
    return images[:, None], labels.astype(np.int64)


def mnist(root, kind="mnist"):
    """MNIST (or Fashion-MNIST with ``kind="fashion"``, also spelled ``"fashion_mnist"``) from its
    four IDX files.

    The files ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``
    and ``t10k-labels-idx1-ubyte``, each plain or gzip-compressed (``.gz``; the plain file is
    used when both exist), are looked up in ``root``, then in ``root/MNIST/raw`` (or
    ``root/FashionMNIST/raw``, torchvision's layout). Nothing is downloaded.

    Returns ``((x_train, y_train), (x_test, y_test))``: ``x`` uint8 ``(N, 1, H, W)`` with ``H, W``
    from the file headers (28x28; 60 000 and 10 000 images for the full sets), ``y`` int64 labels
    0..9. Missing files raise ``FileNotFoundError``; a wrong magic number, a truncated file or
    one with extra bytes, or an image/label count mismatch raise ``ValueError`` naming the file.
    """
    if kind not in _KINDS:
        raise ValueError(f"mnist: kind must be one of {sorted(_KINDS)}, got {kind!r}")
    root = Path(os.fspath(root))
    names = _FILES["train"] + _FILES["test"]
    candidates = (root, root / _KINDS[kind] / "raw")
    for folder in candidates:
        if all(_find(folder, name) for name in names):
            break
    else:
        url = ("https://github.com/zalandoresearch/fashion-mnist" if _KINDS[kind] == "FashionMNIST"
               else "https://yann.lecun.com/exdb/mnist/")
        raise missing_files(_KINDS[kind], root, f"{', '.join(names)} (each may end in .gz; looked in "
                            f"{' and '.join(map(str, candidates))})", "train-images-idx3-ubyte.gz and its three companions", url, root)
    return _split(folder, *_FILES["train"]), _split(folder, *_FILES["test"])


def fashion_mnist(root):
    """Fashion-MNIST from its IDX files: ``mnist(root, kind="fashion")``.

    Labels: 0 T-shirt/top, 1 trouser, 2 pullover, 3 dress, 4 coat, 5 sandal, 6 shirt,
    7 sneaker, 8 bag, 9 ankle boot.
    """
    return mnist(root, kind="fashion")
