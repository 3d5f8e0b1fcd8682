"""ember.datasets: the bundled digits, CIFAR-10 and (Fashion-)MNIST readers on tiny files made
here (including malicious, truncated and malformed ones), and the synthetic set."""

import gzip
import io
import os
import pickle
import struct
from importlib import resources
from typing import ClassVar

import numpy as np
import pytest

from ember import datasets
from ember.datasets import cifar10, digits, fashion_mnist, mnist, synthetic
from cifar_files import cifar_batch, write_cifar, write_pickle

# ------------------------------------------------------------------------------------ digits


def test_digits_shapes_values_and_classes():
    (x_train, y_train), (x_test, y_test) = digits()
    assert x_train.shape == (1438, 1, 8, 8) and x_test.shape == (359, 1, 8, 8)
    assert x_train.dtype == x_test.dtype == np.uint8
    assert y_train.dtype == y_test.dtype == np.int64
    assert x_train.max() == 16 and x_train.min() == 0
    assert set(y_train) == set(y_test) == set(range(10))
    counts = np.bincount(y_test, minlength=10) / np.bincount(np.concatenate([y_train, y_test]), minlength=10)
    np.testing.assert_allclose(counts, 0.2, atol=0.01)  # stratified
    assert not np.array_equal(y_train[:20], np.sort(y_train[:20]))  # shuffled, not grouped by class


def test_digits_split_is_a_partition_of_the_shipped_set():
    with resources.files("ember.datasets").joinpath("data", "digits.npz").open("rb") as f, np.load(f) as npz:
        images, labels = npz["images"], npz["labels"]
    (x_train, y_train), (x_test, y_test) = digits(test_fraction=0.3, seed=4)
    x = np.concatenate([x_train, x_test])[:, 0]
    y = np.concatenate([y_train, y_test])

    def keyed(xs, ys):
        return sorted(xi.tobytes() + bytes([int(yi)]) for xi, yi in zip(xs, ys))

    assert keyed(x, y) == keyed(images, labels)


def test_digits_is_deterministic_per_seed():
    a, b, c = digits(seed=1), digits(seed=1), digits(seed=2)
    for split in range(2):
        for field in range(2):
            np.testing.assert_array_equal(a[split][field], b[split][field])
    assert not np.array_equal(a[0][1], c[0][1])


def test_digits_tiny_fraction_still_has_every_class_in_both_splits():
    (_, y_train), (_, y_test) = digits(test_fraction=0.001)
    assert set(y_train) == set(y_test) == set(range(10)) and len(y_test) == 10


@pytest.mark.parametrize("kwargs, match", [
    ({"test_fraction": 0}, "test_fraction must be a number strictly between 0 and 1"),
    ({"test_fraction": 1.0}, "test_fraction"),
    ({"test_fraction": "0.2"}, "test_fraction"),
    ({"seed": -1}, "seed must be an integer >= 0"),
])
def test_digits_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        digits(**kwargs)


# ------------------------------------------------------------------------------------ CIFAR-10


def test_cifar10_reads_the_python_batches(tmp_path, rng):
    batches = write_cifar(tmp_path, rng)
    (x_train, y_train), (x_test, y_test) = cifar10(tmp_path)
    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    expected_x = np.concatenate([d for d, _ in train]).reshape(-1, 3, 32, 32)
    assert x_train.shape == (4 + 5 + 6 + 7 + 8, 3, 32, 32) and x_train.dtype == np.uint8
    np.testing.assert_array_equal(x_train, expected_x)
    np.testing.assert_array_equal(y_train, np.concatenate([lab for _, lab in train]))
    assert y_train.dtype == y_test.dtype == np.int64
    data, labels = batches["test_batch"]
    np.testing.assert_array_equal(x_test[:, 0], data[:, :1024].reshape(-1, 32, 32))  # red plane first
    np.testing.assert_array_equal(y_test, labels)


def test_cifar10_finds_the_extracted_folder_and_other_encodings(tmp_path, rng):
    write_cifar(tmp_path / "cifar-10-batches-py", rng)
    (x_train, _), _ = cifar10(str(tmp_path))
    assert len(x_train) == 30
    # str keys (a Python 3 re-pickle), NumPy labels and the newest protocol are fine too
    data, labels = cifar_batch(rng, 3)
    write_pickle(tmp_path / "cifar-10-batches-py" / "test_batch",
                 {"data": data, "labels": np.array(labels, np.int64)}, protocol=pickle.HIGHEST_PROTOCOL)
    _, (x_test, y_test) = cifar10(tmp_path)
    np.testing.assert_array_equal(x_test, data.reshape(3, 3, 32, 32))
    np.testing.assert_array_equal(y_test, labels)


class Py2Pickler(pickle._Pickler):
    """Writes str and bytes as Python 2 wrote its str (BINSTRING opcodes), like the original files."""

    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)

    def save_binstring(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        short = len(raw) < 256
        self.write((pickle.SHORT_BINSTRING + bytes([len(raw)]) if short else
                    pickle.BINSTRING + struct.pack("<i", len(raw))) + raw)
        self.memoize(obj)

    dispatch[bytes] = save_binstring
    dispatch[str] = save_binstring


def test_cifar10_reads_python2_era_pickles(tmp_path, rng):
    write_cifar(tmp_path, rng)
    data, labels = cifar_batch(rng, 5)
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump({b"batch_label": b"testing batch 1 of 1", b"data": data, b"labels": labels,
                                      b"filenames": [b"cat_%d.png" % i for i in range(5)]})
    raw = buf.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")  # NumPy 1's module name
    assert b"_codecs" not in raw and b"numpy.core.multiarray\n_reconstruct" in raw
    (tmp_path / "test_batch").write_bytes(raw)
    _, (x_test, y_test) = cifar10(tmp_path)
    np.testing.assert_array_equal(x_test.reshape(5, -1), data)
    np.testing.assert_array_equal(y_test, labels)


class RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("where", ["top", "labels", "data"])
def test_cifar10_refuses_pickles_that_run_code(tmp_path, rng, where):
    write_cifar(tmp_path, rng)
    marker = tmp_path / "pwned"
    data, labels = cifar_batch(rng, 4)
    payload = {"top": RunsACommand(marker),
               "labels": {b"data": data, b"labels": [RunsACommand(marker)] * 4},
               "data": {b"data": [RunsACommand(marker)], b"labels": labels}}[where]
    write_pickle(tmp_path / "data_batch_3", payload)
    with pytest.raises(pickle.UnpicklingError, match=rf"data_batch_3: the file tries to load {os.name}\.system, "
                                                     "which was refused"):
        cifar10(tmp_path)
    assert not marker.exists()


def test_cifar10_refuses_hand_made_opcodes(tmp_path, rng):
    write_cifar(tmp_path, rng)
    marker = tmp_path / "pwned"
    # GLOBAL builtins.exec, a string argument, REDUCE, STOP
    code = f"open({str(marker)!r}, 'w').close()".encode()
    write_pickle(tmp_path / "test_batch", None)
    (tmp_path / "test_batch").write_bytes(b"\x80\x02cbuiltins\nexec\nX" + struct.pack("<I", len(code)) + code
                                          + b"\x85R.")
    with pytest.raises(pickle.UnpicklingError, match="tries to load builtins.exec, which was refused"):
        cifar10(tmp_path)
    # _codecs.encode is allowed only to rebuild bytes from latin-1
    (tmp_path / "test_batch").write_bytes(b"\x80\x02c_codecs\nencode\nX\x02\x00\x00\x00abX\x05\x00\x00\x00rot13"
                                          b"\x86R.")
    with pytest.raises(pickle.UnpicklingError, match="refused _codecs.encode"):
        cifar10(tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize("keep", [0, 1, 30, 0.5, 0.9, -1])
def test_cifar10_truncated_file(tmp_path, rng, keep):
    write_cifar(tmp_path, rng)
    path = tmp_path / "data_batch_2"
    raw = path.read_bytes()
    path.write_bytes(raw[:int(keep * len(raw)) if isinstance(keep, float) else keep])
    with pytest.raises(ValueError, match=r"data_batch_2: not a readable CIFAR-10 batch \(truncated or corrupt"):
        cifar10(tmp_path)


@pytest.mark.parametrize("payload, match", [
    ([1, 2], "holds a list instead of a dict"),
    ({b"data": np.zeros((2, 3072), np.uint8)}, "no 'labels' entry"),
    ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, r"uint8 array of shape \(n, 3072\), got a uint8 array of shape \(2, 100\)"),
    ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "got a float32 array"),
    ({b"data": b"abc", b"labels": [0, 1]}, "got a bytes"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, r"'labels' must be 2 integers"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, r"labels must lie in 0\.\.9"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, "cat"]}, "'labels' must be 2 integers"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [[0], [1, 2]]}, "'labels' must be a list of integers"),
])
def test_cifar10_malformed_batches(tmp_path, rng, payload, match):
    write_cifar(tmp_path, rng)
    write_pickle(tmp_path / "test_batch", payload)
    with pytest.raises(ValueError, match="test_batch: .*" + match):
        cifar10(tmp_path)


def test_cifar10_missing_files(tmp_path, rng):
    write_cifar(tmp_path, rng)
    (tmp_path / "data_batch_4").unlink()
    (tmp_path / "test_batch").unlink()
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path} lacks data_batch_4, test_batch \(the python version's "
                                                 r"batches data_batch_1, data_batch_2, .*test_batch.* Its files come from "
                                                 r"cifar-10-python.tar.gz \(https://www.cs.toronto.edu/~kriz/cifar.html\)"):
        cifar10(tmp_path)
    with pytest.raises(FileNotFoundError, match=rf"the folder {tmp_path / 'nowhere'} does not exist"):
        cifar10(tmp_path / "nowhere")
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=rf"is there but not extracted: run  tar -xzf {tmp_path}/cifar-10-"):
        cifar10(tmp_path)


# ------------------------------------------------------------------------------------ MNIST


def idx_bytes(arr, magic=None):
    magic = {3: 0x803, 1: 0x801}[arr.ndim] if magic is None else magic
    return struct.pack(f">{1 + arr.ndim}I", magic, *arr.shape) + arr.astype(np.uint8).tobytes()


def write_idx(path, raw, gz=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)
    return path


def write_mnist(folder, rng, n_train=5, n_test=3, gz=(False, True, False, True), hw=(28, 28)):
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, *hw)).astype(np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, *hw)).astype(np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    for (name, arr), compressed in zip(arrays.items(), gz):
        write_idx(folder / name, idx_bytes(arr), compressed)
    return arrays


@pytest.mark.parametrize("gz", [(False,) * 4, (True,) * 4, (False, True, True, False)])
def test_mnist_reads_plain_and_gzipped_idx(tmp_path, rng, gz):
    arrays = write_mnist(tmp_path, rng, gz=gz)
    (x_train, y_train), (x_test, y_test) = mnist(tmp_path)
    assert x_train.shape == (5, 1, 28, 28) and x_test.shape == (3, 1, 28, 28)
    assert x_train.dtype == np.uint8 and y_train.dtype == y_test.dtype == np.int64
    np.testing.assert_array_equal(x_train[:, 0], arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(y_train, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(x_test[:, 0], arrays["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(y_test, arrays["t10k-labels-idx1-ubyte"])
    x_train[0, 0, 0, 0] += 1  # the arrays are the caller's to modify


def test_mnist_dims_come_from_the_header_and_plain_files_win(tmp_path, rng):
    arrays = write_mnist(tmp_path, rng, hw=(5, 7), gz=(False,) * 4)
    write_idx(tmp_path / "train-labels-idx1-ubyte", b"not even gzip", gz=False)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(arrays["train-labels-idx1-ubyte"]))
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(b"ignored: the plain file is used")
    (x_train, y_train), _ = mnist(tmp_path)
    assert x_train.shape == (5, 1, 5, 7)
    np.testing.assert_array_equal(y_train, arrays["train-labels-idx1-ubyte"])


def test_torchvision_layout_and_fashion_mnist(tmp_path, rng):
    arrays = write_mnist(tmp_path / "FashionMNIST" / "raw", rng)
    for load in (fashion_mnist, lambda root: mnist(root, kind="fashion"), lambda root: mnist(root, "fashion_mnist")):
        (_, y_train), _ = load(tmp_path)
        np.testing.assert_array_equal(y_train, arrays["train-labels-idx1-ubyte"])
    with pytest.raises(FileNotFoundError, match=r"MNIST: .* lacks .* looked in .* and .*MNIST/raw\)"):
        mnist(tmp_path)
    write_mnist(tmp_path / "MNIST" / "raw", rng, n_train=2)
    assert len(mnist(tmp_path)[0][0]) == 2


def corrupt(folder, name, raw, gz=False):
    for suffix in ("", ".gz"):
        (folder / (name + suffix)).unlink(missing_ok=True)
    write_idx(folder / name, raw, gz)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_errors(tmp_path, rng, gz):
    arrays = write_mnist(tmp_path, rng, gz=(gz,) * 4)
    images = arrays["t10k-images-idx3-ubyte"]
    good = idx_bytes(images)
    name = "t10k-images-idx3-ubyte"
    cases = [
        (idx_bytes(images, magic=0x801), r"magic number is 0x00000801, expected 0x00000803"),
        (idx_bytes(images.astype(np.uint8), magic=0x0D03), "magic number is 0x00000d03"),
        (good[:-1], r"truncated IDX file, the header promises \[3, 28, 28\] \(2368 bytes in all\) but the file has 2367 bytes"),
        (good[:10], "truncated IDX file, 10 bytes is less than the 16-byte header"),
        (good + b"\0\0", "2 unexpected bytes after"),
    ]
    for raw, match in cases:
        corrupt(tmp_path, name, raw, gz)
        with pytest.raises(ValueError, match=match) as info:
            mnist(tmp_path)
        assert name in str(info.value)
    corrupt(tmp_path, name, good, gz)
    corrupt(tmp_path, "t10k-labels-idx1-ubyte", idx_bytes(np.zeros(4, np.uint8)), gz)
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.* holds 3 images but .*t10k-labels-idx1-ubyte.* "
                                         "holds 4 labels"):
        mnist(tmp_path)
    corrupt(tmp_path, "t10k-labels-idx1-ubyte", idx_bytes(np.array([1, 12, 3], np.uint8)), gz)
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte.*labels must lie in 0\.\.9, got a 12"):
        mnist(tmp_path)


def test_truncated_gzip_stream(tmp_path, rng):
    write_mnist(tmp_path, rng, gz=(True,) * 4)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz: not a readable gzip file"):
        mnist(tmp_path)


def test_mnist_missing_files_and_bad_kind(tmp_path, rng):
    write_mnist(tmp_path, rng)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"lacks train-images-idx3-ubyte, .*t10k-labels-idx1-ubyte "
                                                r"\(each may end in \.gz; .*Download train-images-idx3-ubyte.gz and "
                                                r"its three companions from https://yann.lecun.com") as info:
        mnist(tmp_path)
    assert str(tmp_path) in str(info.value)
    with pytest.raises(ValueError, match="kind must be one of"):
        mnist(tmp_path, kind="emnist")


# ------------------------------------------------------------------------------------ synthetic


def test_synthetic_shapes_and_determinism():
    x, y = synthetic(50, shape=(3, 4, 4), classes=5, seed=3)
    assert x.shape == (50, 3, 4, 4) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y), [10] * 5)
    x2, y2 = synthetic(50, shape=(3, 4, 4), classes=5, seed=3)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    x3, _ = synthetic(50, shape=(3, 4, 4), classes=5, seed=4)
    assert not np.array_equal(x, x3)
    x64, _ = synthetic(50, shape=(3, 4, 4), classes=5, seed=3, dtype=np.float64)
    assert x64.dtype == np.float64
    np.testing.assert_array_equal(x64, x)
    assert synthetic(7, shape=6)[0].shape == (7, 6)


def test_synthetic_is_learnable():
    x, y = synthetic(2000, shape=(3, 8, 8), classes=10, seed=0)
    flat = x.reshape(len(x), -1)
    train, test = slice(0, 1000), slice(1000, None)
    means = np.stack([flat[train][y[train] == c].mean(axis=0) for c in range(10)])
    spread = np.linalg.norm(means[:, None] - means[None], axis=-1)[~np.eye(10, dtype=bool)]
    assert spread.min() > 5  # class means are far apart
    pred = np.argmin(((flat[test, None] - means[None]) ** 2).sum(-1), axis=1)
    assert (pred == y[test]).mean() > 0.95


@pytest.mark.parametrize("kwargs, match", [
    ({"n": 0}, "n must be an integer >= 1"),
    ({"n": 2.5}, "n must be an integer"),
    ({"n": 4, "shape": (3, 0)}, "shape must be a non-empty tuple of integers >= 1"),
    ({"n": 4, "shape": ()}, "shape must be"),
    ({"n": 4, "classes": 1}, "classes must be an integer >= 2"),
    ({"n": 4, "seed": -3}, "seed must be an integer >= 0"),
    ({"n": 4, "dtype": np.int64}, "dtype must be a floating-point type, got int64"),
])
def test_synthetic_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        synthetic(**kwargs)


def test_public_names():
    assert sorted(datasets.__all__) == ["cifar10", "digits", "fashion_mnist", "mnist", "shakespeare", "synthetic"]


def test_idx_decompression_bomb_is_not_inflated(tmp_path):
    """A 1 MB .gz that promises 30 images but inflates to gigabytes: refused after reading
    what the header promises (plus a few kilobytes), not after inflating all of it."""
    import gzip
    import resource
    import struct

    from ember.datasets._mnist import read_idx

    path = tmp_path / "bomb-images-idx3-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(struct.pack(">4I", 0x803, 30, 28, 28))
        chunk = bytes(1 << 20)
        for _ in range(1024):  # 1 GiB of zeros, about 1 MB compressed
            f.write(chunk)
    assert path.stat().st_size < 4 << 20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ValueError, match="more than 4096 unexpected bytes"):
        read_idx(path, 3)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 64 * 1024


def test_idx_dims_that_overflow_are_named(tmp_path):
    import struct

    from ember.datasets._mnist import read_idx

    path = tmp_path / "huge-images-idx3-ubyte"
    path.write_bytes(struct.pack(">4I", 0x803, 2**32 - 1, 2**32 - 1, 2**32 - 1) + bytes(100))
    with pytest.raises(ValueError, match="promises"):
        read_idx(path, 3)
