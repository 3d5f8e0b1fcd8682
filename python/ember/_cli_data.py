"""What the ``ember`` commands share about data and checkpoints: the data sets they know and how
their pixels become a model's inputs, and loading any checkpoint's model with its test data."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np


DATASETS = ("digits", "cifar10", "mnist", "fashion_mnist", "synthetic")
# Per data set: how uint8 pixels become floats, the augmentation, and the default epochs.
RECIPES = {
    "digits": {"scale": 1 / 16, "crop_padding": 1, "flip": False, "epochs": 60, "cnn": {"padding": 1}},
    "cifar10": {"scale": 1 / 255, "crop_padding": 4, "flip": True, "epochs": 10, "cnn": {}},
    "mnist": {"scale": 1 / 255, "crop_padding": 0, "flip": False, "epochs": 5, "cnn": {}},
    "fashion_mnist": {"scale": 1 / 255, "crop_padding": 0, "flip": False, "epochs": 10, "cnn": {}},
    "synthetic": {"scale": None, "crop_padding": 0, "flip": False, "epochs": 5, "cnn": {}},
}


def load_dataset(name: str, data_dir, seed: int):
    """((x_train, y_train), (x_test, y_test)) of a data set; images as given by ember.datasets."""
    from . import datasets

    if name in ("digits", "synthetic") and data_dir is not None:
        raise ValueError(f"--data-dir {data_dir}: --dataset {name} reads no files (digits ships with Ember, synthetic "
                         "is generated); --data-dir is for cifar10, mnist and fashion_mnist")
    if name == "digits":
        return datasets.digits(seed=seed)
    if name == "synthetic":
        x, y = datasets.synthetic(2560, shape=(3, 32, 32), classes=10, seed=seed)
        return (x[:2048], y[:2048]), (x[2048:], y[2048:])
    if data_dir is None:
        raise ValueError(f"--dataset {name} needs --data-dir DIR (where its files are)")
    if name == "cifar10":
        return datasets.cifar10(data_dir)
    return datasets.mnist(data_dir, kind="fashion" if name == "fashion_mnist" else "mnist")


def output_path(value, default, option: str, inputs=()) -> Path:
    """The file a command writes (``value``, or ``default`` when not given), checked before any
    work: its folder exists, it is no folder itself, and it is none of the command's ``inputs``
    (which writing it would destroy)."""
    path = Path(value) if value else Path(default)
    if not path.parent.is_dir():  # without creating folders nobody asked for
        raise FileNotFoundError(f"{option} {path}: the folder {path.parent} does not exist")
    if path.is_dir():
        raise ValueError(f"{option} {path} is a folder: give the path of a file")
    for given in inputs:
        if given is not None and (path.resolve() == Path(given).resolve()
                                  or (path.exists() and Path(given).exists() and os.path.samefile(path, given))):
            raise ValueError(f"{option} {path} is the input {given}: writing it would destroy the input; "
                             "write to another file")
    return path


def literal_checkpoint_path(path: Path) -> str:
    """The ModelCheckpoint path that writes exactly ``path``: a user's file name may hold braces,
    which ModelCheckpoint would read as fields to fill in."""
    return str(path).replace("{", "{{").replace("}", "}}")


def preprocess(x, config):
    """Pixels to normalised float32 as the checkpoint's config says."""
    from .data import transforms as T

    steps = []
    if config.get("scale") is not None:
        steps.append(T.ToFloat(scale=config["scale"]))
    elif x.dtype != np.float32:
        steps.append(T.ToFloat(scale=1.0))
    if config.get("mean") is not None or config.get("std") is not None:
        steps.append(T.Normalize(config.get("mean") or [0.0], config.get("std") or [1.0]))
    return T.Compose(steps)(x)


def file_config(path) -> tuple[dict, dict, int]:
    """(config, metadata, bytes of the model's tensors) of a checkpoint, reading no tensor data."""
    from . import checkpoint

    _, meta, nbytes = checkpoint.read_header(path)
    try:
        config = json.loads(meta.get("ember.config", "{}"))
    except ValueError as exc:
        raise ValueError(f"{path}: its config is not JSON ({exc})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: its config must be a JSON object, got {type(config).__name__}")
    return config, meta, nbytes


def _legacy_model(path, config, nbytes):
    """The model of a checkpoint that ``ember train`` wrote before checkpoints recorded their
    architecture: built from the config's model name and sizes, allocating no more than the
    file backs, then loaded."""
    from . import checkpoint, models, quant
    from .factories import allocation_limit

    q = config.get("quant")
    if q is not None and (not isinstance(q, dict) or set(q) - {"bits", "group_size"}):
        raise ValueError(f"{path}: its config's quant must be {{'bits': 8 or 4, 'group_size': ...}}, got {q!r}")
    try:
        with allocation_limit(checkpoint.rebuild_limit(nbytes), f"the config of {path}"):
            model = models.build(config["model"], config.get("input_shape"), config.get("classes"),
                                 **config.get("options", {}))
            if q is not None:
                # such files predate grouped int8: their group size is int4's
                quant.quantized_structure(model, bits=q.get("bits"),
                                          group_size=q.get("group_size") if q.get("bits") == 4 else None)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: its config does not describe a model Ember can build: {exc}") from None
    model.load(path)
    return model.eval()


def load_model(path):
    """(model, config) of any Ember checkpoint whose model can be rebuilt."""
    from . import checkpoint

    config, meta, nbytes = file_config(path)
    if "ember.architecture" not in meta and {"model", "input_shape", "classes"} <= set(config):
        return _legacy_model(path, config, nbytes), config
    return checkpoint.load_model(path), config


def normalisation(path, config, args, dataset, channels) -> tuple[dict, str | None]:
    """(scale, mean and std, a note or None): how the data set's pixels become the model's
    inputs. Each is what its flag gives, else what the checkpoint's config records (checked: a
    file is not trusted); without either, the scale is the data set's usual one and the note
    says so, and there is no mean or std."""
    recorded = {k: config[k] for k in ("scale", "mean", "std") if k in config}
    count = "1 finite number" if channels == 1 else f"1 or {channels} finite numbers (one per channel)"
    for key in ("mean", "std"):
        v = recorded.get(key)
        if v is not None and (not isinstance(v, list) or len(v) not in (1, channels)
                              or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x)
                                         for x in v)
                              or (key == "std" and not all(x > 0 for x in v))):
            raise ValueError(f"{path}: its config's {key} must be a list of {count}"
                             f"{', each > 0' if key == 'std' else ''}, got {v!r}")
    scale = recorded.get("scale")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0):
        raise ValueError(f"{path}: its config's scale must be a positive number or null, got {scale!r}")
    flags = {k: getattr(args, k) for k in ("scale", "mean", "std") if getattr(args, k) is not None}
    for key in ("mean", "std"):
        if key in flags and len(flags[key]) not in (1, channels):
            raise ValueError(f"--{key}: give {count}, got {len(flags[key])}")
    if "std" in flags and not all(x > 0 for x in flags["std"]):
        raise ValueError(f"--std: every value must be > 0, got {flags['std']}")
    norm = {"scale": None, "mean": None, "std": None, **recorded, **flags}
    if "scale" in recorded or "scale" in flags:
        return norm, None
    scale = norm["scale"] = RECIPES[dataset]["scale"]
    how = "the values as they are" if scale is None else f"pixels x {scale:.6g}"
    return norm, (f"{path} does not record how its inputs were scaled; used {how} (pass --scale, and --mean and "
                  "--std if the model was trained on normalised inputs)")


def test_data(path, model, config, args):
    """(inputs as the model takes them, labels, data set name, normalisation used), after
    checking on one image that the model takes them and gives one score per class."""
    dataset = args.dataset or config.get("dataset", "digits")
    if dataset not in DATASETS:
        raise ValueError(f"{path}: its config names an unknown dataset {dataset!r}; pass --dataset")
    _, (x_test, y) = load_dataset(dataset, args.data_dir, args.seed)
    norm, note = normalisation(path, config, args, dataset, x_test.shape[1])
    x = preprocess(x_test, norm)
    if getattr(model, "data_format", "channels_first") == "channels_last":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    try:
        scores = model.predict(x[:1])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: its model does not take the {dataset} test images (shape {x.shape}): "
                         f"{exc}") from None
    if scores.ndim != 2 or scores.shape[1] <= int(y.max()):
        raise ValueError(f"{path}: its model gives outputs of shape {scores.shape[1:]} per image, not one score per "
                         f"class of {dataset} ({int(y.max()) + 1} classes)")
    if note is not None:
        print(f"ember {args.command}: {note}", file=sys.stderr)
    return x, y, dataset, norm
