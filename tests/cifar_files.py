"""CIFAR-10 "python version" batch files for tests: small, with rows that identify themselves."""

import pickle

import numpy as np


def cifar_batch(rng, n, start=0):
    data = rng.integers(0, 256, (n, 3072)).astype(np.uint8)
    data[:, 0] = np.arange(start, start + n)  # identifies the row
    return data, [int(v) for v in rng.integers(0, 10, n)]


def write_pickle(path, obj, protocol=2):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def write_cifar(folder, rng, n=4):
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for k, name in enumerate(names):
        data, labels = cifar_batch(rng, n + k, start=10 * k)
        write_pickle(folder / name, {b"batch_label": b"batch", b"data": data, b"labels": labels})
        batches[name] = (data, labels)
    return batches
