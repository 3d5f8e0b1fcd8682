"""The ``ember`` command (also ``python -m ember``).

``ember train``      train a classifier (default: the CNN on the bundled digits), report its test
                     accuracy, precision, recall and F1, and save a checkpoint
``ember evaluate``   a checkpoint's classification report on a data set's test split (any Ember
                     checkpoint: the model is rebuilt from the architecture it records)
``ember quantize``   a checkpoint quantized to int8 or int4, with what it gained and lost
``ember info``       the runtime report (version, ISA, threads, CUDA)
``ember bench-gemm`` the GEMM comparison with NumPy on the default or given shapes
``ember``            the runtime report, then the GEMM comparison
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_SHAPES = ["256x256x256", "1024x1024x1024", "65536x27x32", "64x7200x128", "1x4096x4096"]


def _parse_shape(text: str) -> tuple[int, int, int]:
    parts = text.lower().split("x")
    try:
        m, k, n = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape must be MxKxN with positive integers, got {text!r}") from None
    if min(m, k, n) <= 0:
        raise argparse.ArgumentTypeError(f"shape must be MxKxN with positive integers, got {text!r}")
    return m, k, n


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


# Pause before each timing so that the previous library's spinning threads have gone idle.
_SETTLE_S = 0.3


def _median_time(fn, min_time: float = 0.2, max_runs: int = 200) -> float:
    """Median seconds per call over at least min_time (and at least 5 calls)."""
    fn()  # warm up: thread pool, packing buffers, page faults
    times = []
    start = time.perf_counter()
    while len(times) < max_runs and (time.perf_counter() - start < min_time or len(times) < 5):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def bench_gemm(shapes, out=None) -> list[dict]:
    """Time ember's GEMM against NumPy's (OpenBLAS) matmul, interleaved, on each M x K x N shape."""
    out = sys.stdout if out is None else out
    from .kernels import gemm

    rng = np.random.default_rng(0)
    rows = []
    print(f"{'shape (MxKxN)':>18} {'ember ms':>10} {'numpy ms':>10} {'ember GFLOP/s':>14} {'speed-up':>9}", file=out)
    for m, k, n in shapes:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        c = np.empty((m, n), dtype=np.float32)
        # Alternate the two (A B A B A B): a neighbour's load then hits both alike. Each
        # timing starts after a pause: OpenBLAS's idle threads keep spinning for a while
        # after a call and would take the cores that the other library's threads need.
        run_ember = functools.partial(gemm.gemm, a, b, out=c)
        run_numpy = functools.partial(np.matmul, a, b, out=c)
        ember_times, numpy_times = [], []
        for _ in range(3):
            time.sleep(_SETTLE_S)
            ember_times.append(_median_time(run_ember, min_time=0.1))
            time.sleep(_SETTLE_S)
            numpy_times.append(_median_time(run_numpy, min_time=0.1))
        t_ember, t_numpy = float(np.median(ember_times)), float(np.median(numpy_times))
        gflops = 2.0 * m * k * n / t_ember * 1e-9
        speedup = float(np.median(np.array(numpy_times) / np.array(ember_times)))
        row = {"shape": f"{m}x{k}x{n}", "ember_ms": t_ember * 1e3, "numpy_ms": t_numpy * 1e3,
               "gflops": gflops, "speedup": speedup}
        rows.append(row)
        print(f"{row['shape']:>18} {row['ember_ms']:>10.4g} {row['numpy_ms']:>10.4g} {gflops:>14.4g} "
              f"{row['speedup']:>8.2f}x", file=out)
    return rows


DATASETS = ("digits", "cifar10", "mnist", "fashion_mnist", "synthetic")
# Per data set: how uint8 pixels become floats, the augmentation, and the default epochs.
_RECIPES = {
    "digits": {"scale": 1 / 16, "crop_padding": 1, "flip": False, "epochs": 60, "cnn": {"padding": 1}},
    "cifar10": {"scale": 1 / 255, "crop_padding": 4, "flip": True, "epochs": 10, "cnn": {}},
    "mnist": {"scale": 1 / 255, "crop_padding": 0, "flip": False, "epochs": 5, "cnn": {}},
    "fashion_mnist": {"scale": 1 / 255, "crop_padding": 0, "flip": False, "epochs": 10, "cnn": {}},
    "synthetic": {"scale": None, "crop_padding": 0, "flip": False, "epochs": 5, "cnn": {}},
}


def _load_dataset(name: str, data_dir, seed: int):
    """((x_train, y_train), (x_test, y_test)) of a data set; images as given by ember.datasets."""
    from . import datasets

    if name == "digits":
        return datasets.digits(seed=seed)
    if name == "synthetic":
        x, y = datasets.synthetic(2560, shape=(3, 32, 32), classes=10, seed=seed)
        return (x[:2048], y[:2048]), (x[2048:], y[2048:])
    if data_dir is None:
        raise SystemExit(f"ember: --dataset {name} needs --data-dir DIR (where its files are)")
    if name == "cifar10":
        return datasets.cifar10(data_dir)
    return datasets.mnist(data_dir, kind="fashion" if name == "fashion_mnist" else "mnist")


def _preprocess(x, config):
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


def _report_scores(y_true, logits, classes, out) -> dict:
    from . import metrics

    pred = logits.argmax(axis=1)
    p, r, f = metrics.precision_recall_f1(y_true, pred, average="macro", num_classes=classes)
    scores = {"accuracy": metrics.accuracy(y_true, pred), "precision": p, "recall": r, "f1": f}
    print(f"test accuracy {scores['accuracy']:.4f} - macro precision {p:.4f} - recall {r:.4f} - f1 {f:.4f}",
          file=out)
    return scores


def train(args, out=None) -> dict:
    """``ember train``: returns the test scores, samples/s and the checkpoint's path."""
    out = sys.stdout if out is None else out
    import ember

    from . import models
    from .callbacks import ModelCheckpoint
    from .data import transforms as T

    if args.resume:
        saved = _file_config(args.resume)[0]
        for option, key in (("--model", "model"), ("--dataset", "dataset")):
            if saved.get(key, getattr(args, key)) != getattr(args, key):
                raise ValueError(f"--resume: {args.resume} holds a {saved['model']!r} model trained on "
                                 f"{saved.get('dataset', 'digits')!r}, not {option} {getattr(args, key)}: pass "
                                 f"{option} {saved[key]}")
    recipe = _RECIPES[args.dataset]
    ember.manual_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = _load_dataset(args.dataset, args.data_dir, args.seed)
    classes = int(max(y_train.max(), y_test.max())) + 1
    scale = recipe["scale"]
    raw = x_train.astype(np.float64) * (scale if scale is not None else 1.0)
    options = recipe["cnn"] if args.model == "cnn" else {}
    config = {"dataset": args.dataset, "model": args.model, "precision": args.precision, "scale": scale,
              "mean": raw.mean(axis=(0, 2, 3)).tolist(), "std": np.maximum(raw.std(axis=(0, 2, 3)), 1e-6).tolist()}
    xtr, xte = _preprocess(x_train, config), _preprocess(x_test, config)
    steps = []
    if recipe["crop_padding"]:
        steps.append(T.RandomCrop(xtr.shape[2:], padding=recipe["crop_padding"]))
    if recipe["flip"]:
        steps.append(T.RandomHorizontalFlip())
    augment = T.Compose(steps) if steps else None
    model = models.build(args.model, xtr.shape[1:], classes, **options)
    model.compile(optimizer="adam", lr=args.lr, loss="cross_entropy", metrics=["accuracy"])
    epochs = args.epochs if args.epochs is not None else recipe["epochs"]
    path = Path(args.out) if args.out else Path(f"ember-{args.dataset}-{args.model}.safetensors")
    if not path.parent.is_dir():  # before any training, and without creating folders nobody asked for
        raise FileNotFoundError(f"--out {args.out}: the folder {path.parent} does not exist")
    checkpoint = ModelCheckpoint(path, monitor="val_loss", config=config)
    print(f"training {args.model} on {args.dataset}: {len(xtr)} training images {tuple(xtr.shape[1:])}, "
          f"{len(xte)} test images, {classes} classes, {epochs} epochs, precision {args.precision}", file=out)
    start = time.perf_counter()
    history = model.fit(xtr, y_train, batch_size=args.batch_size, epochs=epochs, validation_split=0.1,
                        transform=augment, seed=args.seed, callbacks=[checkpoint], resume_from=args.resume,
                        verbose=args.verbose, precision=args.precision)
    seconds = time.perf_counter() - start
    rates = history.history.get("samples_per_s", [])
    scores = _report_scores(y_test, model.predict(xte), classes, out)
    rate = float(np.mean(rates)) if rates else 0.0
    print(f"training: {seconds:.1f} s, {rate:.0f} samples/s", file=out)
    saved = checkpoint.last_saved
    if saved is not None:
        print(f"checkpoint: {saved.resolve()}", file=out)
    if history.interrupted:
        print("training was interrupted; continue with --resume " + str(saved or path), file=out)
    return {**scores, "samples_per_s": rate, "seconds": seconds, "checkpoint": saved,
            "interrupted": history.interrupted}


def _file_config(path) -> tuple[dict, dict, int]:
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
    from .tensor import allocation_limit

    q = config.get("quant")
    if q is not None and (not isinstance(q, dict) or set(q) - {"bits", "group_size"}):
        raise ValueError(f"{path}: its config's quant must be {{'bits': 8 or 4, 'group_size': ...}}, got {q!r}")
    try:
        with allocation_limit(checkpoint.rebuild_limit(nbytes), f"the config of {path}"):
            model = models.build(config["model"], config.get("input_shape"), config.get("classes"),
                                 **config.get("options", {}))
            if q is not None:
                quant.quantized_structure(model, bits=q.get("bits"), group_size=q.get("group_size") or 32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: its config does not describe a model Ember can build: {exc}") from None
    model.load(path)
    return model.eval()


def _load_model(path):
    """(model, config) of any Ember checkpoint whose model can be rebuilt."""
    from . import checkpoint

    config, meta, nbytes = _file_config(path)
    if "ember.architecture" not in meta and {"model", "input_shape", "classes"} <= set(config):
        return _legacy_model(path, config, nbytes), config
    return checkpoint.load_model(path), config


def _numbers(text: str) -> list:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not all(np.isfinite(values)):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
    return values


def _normalisation(path, config, args, dataset, channels) -> tuple[dict, str | None]:
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
    scale = norm["scale"] = _RECIPES[dataset]["scale"]
    how = "the values as they are" if scale is None else f"pixels x {scale:.6g}"
    return norm, (f"{path} does not record how its inputs were scaled; used {how} (pass --scale, and --mean and "
                  "--std if the model was trained on normalised inputs)")


def _test_data(path, model, config, args):
    """(inputs as the model takes them, labels, data set name, normalisation used), after
    checking on one image that the model takes them and gives one score per class."""
    dataset = args.dataset or config.get("dataset", "digits")
    if dataset not in DATASETS:
        raise ValueError(f"{path}: its config names an unknown dataset {dataset!r}; pass --dataset")
    _, (x_test, y) = _load_dataset(dataset, args.data_dir, args.seed)
    norm, note = _normalisation(path, config, args, dataset, x_test.shape[1])
    x = _preprocess(x_test, norm)
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


def _describe_model(model) -> str:
    """``Sequential(Conv2d, ReLU, ...)``: the model's class and its layers' classes."""
    kinds = [type(m).__name__ for m in model.children()]
    return type(model).__name__ + (f"({', '.join(kinds)})" if kinds else "")


def _quantized_bits(model):
    from . import quant

    return next((m.bits for m in model.modules() if isinstance(m, quant.QuantLinear)), None)


def quantize(args, out=None):
    """``ember quantize PATH --bits 8|4``: the quantized checkpoint and the report."""
    out = sys.stdout if out is None else out
    from . import quant

    model, config = _load_model(args.path)
    bits = _quantized_bits(model)
    if bits is not None:
        raise ValueError(f"{args.path} is already quantized (int{bits})")
    x, y, dataset, norm = _test_data(args.path, model, config, args)
    qmodel, report = quant.quantize(model, bits=args.bits, group_size=args.group_size, eval_data=(x, y))
    path = Path(args.out) if args.out else Path(args.path).with_suffix(f".int{args.bits}.safetensors")
    qmodel.save(path, config={**config, **norm, "dataset": dataset})
    print(f"{args.path} on the {dataset} test split ({len(y)} images):", file=out)
    print(report, file=out)
    print(f"quantized checkpoint: {path.resolve()}", file=out)
    return report, path


def evaluate(args, out=None) -> dict:
    """``ember evaluate PATH``: the classification report of a checkpoint on a test split."""
    out = sys.stdout if out is None else out
    from . import metrics

    model, config = _load_model(args.path)
    x, y, dataset, _ = _test_data(args.path, model, config, args)
    logits = model.predict(x)
    bits = _quantized_bits(model)
    what = _describe_model(model)
    kind = f" (int{bits})" if bits is not None else ""
    print(f"{args.path}: {what}{kind} on the {dataset} test split ({len(y)} images)", file=out)
    classes = logits.shape[1]
    print(metrics.classification_report(y, logits.argmax(axis=1), num_classes=classes), file=out)
    return _report_scores(y, logits, classes, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ember", description="Ember: a lightweight deep-learning engine.")
    sub = parser.add_subparsers(dest="command")
    p_train = sub.add_parser("train", help="train a classifier and save a checkpoint")
    p_train.add_argument("--dataset", choices=DATASETS, default="digits")
    p_train.add_argument("--data-dir", help="directory holding the data set's files (cifar10, mnist)")
    p_train.add_argument("--model", choices=("cnn", "mlp"), default="cnn",
                         help="cnn: Conv2d(32, 3x3) > ReLU > MaxPool2d(2) > Linear(128) > ReLU > Linear; "
                              "mlp: Linear(256) > ReLU > Linear(128) > ReLU > Linear (default: cnn)")
    p_train.add_argument("--epochs", type=_positive_int,
                         help="the final epoch's index (default: per data set); with --resume, training continues "
                              "from the checkpoint's epoch up to this one (Keras's epochs and initial_epoch)")
    p_train.add_argument("--batch-size", type=_positive_int, default=64, help="samples per step (default: 64)")
    p_train.add_argument("--lr", type=_positive_float, default=1e-3, help="Adam's learning rate (default: 0.001)")
    p_train.add_argument("--seed", type=int, default=0,
                         help="seeds the weights, the split, the batch order and the augmentation (default: 0)")
    p_train.add_argument("--out", help="checkpoint path (default: ember-DATASET-MODEL.safetensors)")
    p_train.add_argument("--resume", help="continue from this checkpoint")
    p_train.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                         help="bf16: Linear layers multiply in bf16 (AMX or AVX512-BF16 where the CPU has them), "
                              "weights and sums stay float32 (default: fp32)")
    p_train.add_argument("--verbose", type=int, choices=(0, 1, 2), default=None,
                         help="0 quiet, 1 progress bars, 2 a line per epoch (default: bars on a terminal)")
    p_eval = sub.add_parser("evaluate", help="print a checkpoint's classification report")
    p_quant = sub.add_parser("quantize", help="quantize a checkpoint's Linear layers to int8 or int4")
    for p in (p_eval, p_quant):
        p.add_argument("path", help="any Ember checkpoint (ember train, model.save, ModelCheckpoint, ember.save)")
        p.add_argument("--dataset", choices=DATASETS, help="default: the one its config names, else digits")
        p.add_argument("--data-dir", help="directory holding the data set's files (cifar10, mnist)")
        p.add_argument("--seed", type=int, default=0, help="the split seed (digits, synthetic)")
        p.add_argument("--scale", type=_positive_float,
                       help="pixels are multiplied by this (default: what the checkpoint records, else the data "
                            "set's usual range, such as 1/255)")
        p.add_argument("--mean", type=_numbers, help="then minus these (one per channel, comma-separated)")
        p.add_argument("--std", type=_numbers, help="then divided by these")
        p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                       help="import MODULE first: the module defining a model's own registered Module classes")
    p_quant.add_argument("--bits", type=int, choices=(8, 4), default=8)
    p_quant.add_argument("--group-size", type=int, default=32,
                         help="int4 only: inputs per scale, a multiple of 8 from 8 to 4096 (default: 32)")
    p_quant.add_argument("--out", help="default: PATH with .int8/.int4 before .safetensors")
    sub.add_parser("info", help="print the runtime report")
    p_bench = sub.add_parser("bench-gemm", help="compare ember's GEMM with NumPy's")
    p_bench.add_argument("shapes", nargs="*", type=_parse_shape, metavar="MxKxN",
                         help=f"shapes to time (default: {' '.join(DEFAULT_SHAPES)})")
    args = parser.parse_args(argv)
    if args.command is None:  # usage, not a job nobody asked for
        parser.print_help(sys.stderr)
        return 2
    try:
        return _run(args)
    except KeyboardInterrupt:
        print(f"ember {args.command}: interrupted", file=sys.stderr)
        return 130


def _import_modules(names) -> None:
    """Import the modules ``--import`` names (from the current folder too, as ``python -m``
    would); a module that fails to import is a ValueError naming it."""
    import importlib

    if names and "" not in sys.path:
        sys.path.insert(0, "")
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ValueError(f"--import {name}: {exc}") from None


def _run(args) -> int:
    """Exit status: 0 done, 2 bad usage, files or data (a message, not a traceback), 130 after
    Ctrl-C (training stops cleanly after its current step and says how to resume)."""
    if args.command in ("train", "evaluate", "quantize"):
        if args.command == "train" and args.verbose is None:
            args.verbose = "auto"
        try:
            _import_modules(getattr(args, "imports", []))
            result = {"train": train, "evaluate": evaluate, "quantize": quantize}[args.command](args)
        except (FileNotFoundError, ValueError) as exc:
            print(f"ember {args.command}: {exc}", file=sys.stderr)
            return 2
        return 130 if isinstance(result, dict) and result.get("interrupted") else 0
    if args.command == "info":
        from . import info

        info()
    else:
        bench_gemm(args.shapes or [_parse_shape(s) for s in DEFAULT_SHAPES])
    return 0


if __name__ == "__main__":
    sys.exit(main())
