"""The ``ember`` command (also ``python -m ember``).

``ember train``      train a classifier (default: the CNN on the bundled digits), report its test
                     accuracy, precision, recall and F1, and save a checkpoint; or, with
                     ``--model gpt``, a character-level GPT on a text (default: Tiny Shakespeare)
``ember generate``   text from a GPT checkpoint
``ember evaluate``   a checkpoint's classification report on a data set's test split (any Ember
                     checkpoint: the model is rebuilt from the architecture it records)
``ember quantize``   a checkpoint quantized to int8 or int4, with what it gained and lost
``ember compress``   a checkpoint pruned (and fine-tuned) and/or quantized, every form side by side
``ember export``     a checkpoint's model as ONNX (checked, and run in ONNX Runtime when installed)
``ember serve``      an HTTP inference service for a checkpoint or an ONNX file
``ember profile``    a model's time and memory, layer by layer, in its fp32, bf16, int8 and int4 forms
``ember bench``      Ember's kernels against the references installed here, with the hardware limits
``ember info``       the runtime report (version, ISA, threads, CUDA)
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

from . import _cli_gpt
from ._cli_data import (DATASETS, RECIPES, file_config, literal_checkpoint_path, load_dataset, load_model,
                        output_path, preprocess, test_data)
from .bench import cli as bench_cli


def _int_at_least(minimum: int, expected: str):
    """An argparse type: an int >= minimum, else a message saying what was expected."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value
    return parse


_positive_int = _int_at_least(1, "a positive integer")
_nonnegative_int = _int_at_least(0, "an integer >= 0")


def _port(text: str) -> int:
    """An argparse type: a TCP port, 0 (any free one) to 65535."""
    value = _int_at_least(0, "a port from 0 to 65535")(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text!r}")
    return value


def _finite_float(zero_ok: bool, expected: str):
    """An argparse type: a finite float > 0 (>= 0 when ``zero_ok``), else a message saying what
    was expected."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not (value >= 0 if zero_ok else value > 0) or value == float("inf"):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value
    return parse


_positive_float = _finite_float(False, "a positive number")
_nonnegative_float = _finite_float(True, "a finite number >= 0")


def _report_scores(y_true, logits, classes, out) -> dict:
    from . import metrics

    pred = logits.argmax(axis=1)
    p, r, f = metrics.precision_recall_f1(y_true, pred, average="macro", num_classes=classes)
    scores = {"accuracy": metrics.accuracy(y_true, pred), "precision": p, "recall": r, "f1": f}
    print(f"test accuracy {scores['accuracy']:.4f} - macro precision {p:.4f} - recall {r:.4f} - f1 {f:.4f}",
          file=out)
    return scores


def _recorded_precision(path) -> str:
    """'bf16' or 'fp32': the precision checkpoint ``path`` was trained under (fp32 when it does
    not record one)."""
    from . import precision

    text = file_config(path)[1].get("ember.precision")
    try:
        policy = precision.from_record(json.loads(text)) if text is not None else precision.FP32
    except ValueError as exc:
        raise ValueError(f"--resume: {path}: {exc}") from None
    return "bf16" if policy.low_precision_matmul else "fp32"


def train(args, out=None) -> dict:
    """``ember train``: returns the test scores, samples/s and the checkpoint's path. Under
    ``mpiexec -n N`` it trains data-parallel on the N ranks, and only rank 0 prints and saves."""
    out = sys.stdout if out is None else out
    import ember

    from .distributed import comm

    if comm.launched_world_size() > 1 and comm.init().rank != 0:
        out = io.StringIO()  # the other ranks train silently
    if args.precision is None:  # a resumed run goes on as it was trained; a new one in fp32
        args.precision = _recorded_precision(args.resume) if args.resume else "fp32"
    if args.model == "gpt":
        if args.dataset is not None:
            raise ValueError(f"--dataset {args.dataset} is an image data set; --model gpt trains on --text FILE "
                             "(default: the shipped Tiny Shakespeare)")
        return _cli_gpt.train(args, out)
    given = [f"--{k.replace('_', '-')}" for k in _cli_gpt.GPT_FLAGS if getattr(args, k) is not None]
    if given:
        raise ValueError(f"{', '.join(given)}: only with --model gpt")
    args.dataset = args.dataset or "digits"
    args.batch_size = args.batch_size or 64
    args.lr = args.lr or 1e-3

    from . import models
    from .callbacks import ModelCheckpoint
    from .data import transforms as T

    if args.resume:
        saved = file_config(args.resume)[0]
        for option, key in (("--model", "model"), ("--dataset", "dataset")):
            if saved.get(key, getattr(args, key)) != getattr(args, key):
                raise ValueError(f"--resume: {args.resume} holds a {saved.get('model', 'cnn')!r} model trained on "
                                 f"{saved.get('dataset', 'digits')!r}, not {option} {getattr(args, key)}: pass "
                                 f"{option} {saved[key]}")
    recipe = RECIPES[args.dataset]
    ember.manual_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = load_dataset(args.dataset, args.data_dir, args.seed)
    classes = int(max(y_train.max(), y_test.max())) + 1
    scale = recipe["scale"]
    raw = x_train.astype(np.float64) * (scale if scale is not None else 1.0)
    options = recipe["cnn"] if args.model == "cnn" else {}
    config = {"dataset": args.dataset, "model": args.model, "precision": args.precision, "scale": scale,
              "mean": raw.mean(axis=(0, 2, 3)).tolist(), "std": np.maximum(raw.std(axis=(0, 2, 3)), 1e-6).tolist()}
    xtr, xte = preprocess(x_train, config), preprocess(x_test, config)
    config["input_shape"] = list(xtr.shape[1:])  # what a server needs to know of its requests
    steps = []
    if recipe["crop_padding"]:
        steps.append(T.RandomCrop(xtr.shape[2:], padding=recipe["crop_padding"]))
    if recipe["flip"]:
        steps.append(T.RandomHorizontalFlip())
    augment = T.Compose(steps) if steps else None
    model = models.build(args.model, xtr.shape[1:], classes, **options)
    model.compile(optimizer="adam", lr=args.lr, loss="cross_entropy", metrics=["accuracy"])
    epochs = args.epochs if args.epochs is not None else recipe["epochs"]
    path = output_path(args.out, f"ember-{args.dataset}-{args.model}.safetensors", "--out")  # before training
    checkpoint = ModelCheckpoint(literal_checkpoint_path(path), monitor="val_loss", config=config)
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


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, got {text!r}")
    return value


def _numbers(text: str) -> list:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not all(np.isfinite(values)):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
    return values


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

    model, config = load_model(args.path)
    bits = _quantized_bits(model)
    if bits is not None:
        raise ValueError(f"{args.path} is already quantized (int{bits})")
    if args.codebook and args.bits != 4:
        raise ValueError(f"--codebook: an int4 format, for --bits 4 (got --bits {args.bits})")
    if args.codebook and args.group_size is not None:
        raise ValueError(f"--group-size {args.group_size}: the codebook format (--codebook) has a scale per 16 inputs, "
                         "fixed; leave --group-size out, or drop --codebook for int4 in groups")
    kind = f"int{args.bits}" + ("cb" if args.codebook else "g" if args.bits == 8 and args.group_size else "")
    path = output_path(args.out, Path(args.path).with_suffix(f".{kind}.safetensors"), "--out",
                       (args.path, args.text))
    form = {"bits": args.bits, "group_size": args.group_size, "codebook": args.codebook}
    if config.get("model") == "gpt":
        x, y = _cli_gpt.validation_windows(args.text, config, args.path)
        qmodel, report = quant.quantize(model, **form, eval_data=(x, y))
        return _save_with_report(qmodel, path, config, report, "quantized",
                                 f"{args.path} on {len(x)} windows of its validation text (loss in nats per "
                                 "character):", out)
    if args.text is not None:
        raise ValueError("--text: only for a GPT checkpoint (ember train --model gpt)")
    x, y, dataset, norm = test_data(args.path, model, config, args)
    qmodel, report = quant.quantize(model, **form, eval_data=(x, y))
    return _save_with_report(qmodel, path, {**config, **norm, "dataset": dataset}, report, "quantized",
                             f"{args.path} on the {dataset} test split ({len(y)} images):", out)


def _save_with_report(model, path, config, report, what, heading, out):
    model.save(path, config=config)
    print(heading, file=out)
    print(report, file=out)
    print(f"{what} checkpoint: {path.resolve()}", file=out)
    return report, path


def compress(args, out=None):
    """``ember compress PATH --prune F [--finetune N] [--quantize 8|4]``: the compressed checkpoint,
    and a report of every form (original, pruned, quantized) side by side on the test split."""
    out = sys.stdout if out is None else out
    from . import compress as ember_compress
    from . import quant

    if args.prune is None and args.quantize is None:
        raise ValueError("ask for --prune FRACTION, --quantize BITS or both")
    if args.prune is None and args.finetune:
        raise ValueError("--finetune: fine-tuning follows pruning; give --prune FRACTION too")
    suffix = (f".pruned{round(100 * args.prune)}" if args.prune is not None else "") + \
        (f".int{args.quantize}" if args.quantize is not None else "")
    path = output_path(args.out, Path(args.path).with_suffix(f"{suffix}.safetensors"), "--out", (args.path,))
    model, config = load_model(args.path)
    if _quantized_bits(model) is not None:
        raise ValueError(f"{args.path} is already quantized: compress its float checkpoint")
    x, y, dataset, norm = test_data(args.path, model, config, args)
    forms, current, name = {"original": model}, model, ""
    if args.prune is not None:
        current, result = ember_compress.prune(model, args.prune, criterion=args.criterion)
        if not result.kept:
            raise ValueError(f"{args.path}: no layer of this model can be pruned:\n{result}")
        print(result, file=out)
        if args.finetune:
            (x_train, y_train), _ = load_dataset(dataset, args.data_dir, args.seed)
            current.compile(optimizer="adam", lr=args.lr, loss="cross_entropy", metrics=["accuracy"])
            current.fit(preprocess(x_train, norm), y_train, batch_size=args.batch_size, epochs=args.finetune,
                        seed=args.seed, verbose=0)
        name = f"pruned {args.prune:g}" + (f" + {args.finetune} epochs" if args.finetune else "")
        forms[name] = current
    if args.quantize is not None:
        current, _ = quant.quantize(current, bits=args.quantize)
        name = f"{name} + int{args.quantize}" if name else f"int{args.quantize}"
        forms[name] = current
    report = ember_compress.compare(forms, eval_data=(x, y))
    return _save_with_report(current, path, {**config, **norm, "dataset": dataset}, report, "compressed",
                             f"{args.path} on the {dataset} test split ({len(y)} images):", out)


def evaluate(args, out=None) -> dict:
    """``ember evaluate PATH``: the classification report of a checkpoint on a test split."""
    out = sys.stdout if out is None else out
    from . import metrics

    model, config = load_model(args.path)
    x, y, dataset, _ = test_data(args.path, model, config, args)
    logits = model.predict(x)
    bits = _quantized_bits(model)
    what = _describe_model(model)
    kind = f" (int{bits})" if bits is not None else ""
    print(f"{args.path}: {what}{kind} on the {dataset} test split ({len(y)} images)", file=out)
    classes = logits.shape[1]
    print(metrics.classification_report(y, logits.argmax(axis=1), num_classes=classes), file=out)
    return _report_scores(y, logits, classes, out)


def export(args, out=None):
    """``ember export PATH --onnx OUT``: the model as ONNX, checked and run in ONNX Runtime on the
    data set's first test images when it is installed."""
    out = sys.stdout if out is None else out
    from . import onnx as ember_onnx

    onnx_path = output_path(args.onnx, args.onnx, "--onnx", (args.path,))
    model, config = load_model(args.path)
    x, y, dataset, norm = test_data(args.path, model, config, args)
    try:
        path = ember_onnx.export(model, x[:1], onnx_path, opset=args.opset, dynamic_batch=not args.static_batch,
                                 metadata={"ember.dataset": dataset, "ember.input": {k: norm[k] for k in
                                                                                     ("scale", "mean", "std")}})
    except (OSError, ValueError, ImportError):
        raise
    except Exception as exc:  # onnx's shape inference or checker refusing the graph, or any other error type
        raise ValueError(f"{args.path}: the export to {onnx_path} failed, nothing was written: "
                         f"{type(exc).__name__}: {exc}") from None
    print(f"{args.path} -> {path.resolve()} (ONNX opset {args.opset}; input {tuple(x.shape[1:])} float32, "
          f"{'a fixed batch of 1' if args.static_batch else 'any batch'})", file=out)
    try:
        import onnxruntime
    except ImportError:
        print("ONNX Runtime is not installed: the file was checked by onnx.checker but not run", file=out)
        return path
    batch = x[:1] if args.static_batch else x[:256]
    try:
        got = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": batch})[0]
    except Exception as exc:  # ONNX Runtime's own error types
        raise ValueError(f"{path} was written, but ONNX Runtime {onnxruntime.__version__} cannot run it: "
                         f"{type(exc).__name__}: {exc}") from None
    want = model.predict(batch)
    err = float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))
    print(f"ONNX Runtime {onnxruntime.__version__} on {len(batch)} {dataset} test image(s): largest difference "
          f"{err:.2e} of the largest output, {np.mean(got.argmax(1) == want.argmax(1)):.2%} of the classes agree",
          file=out)
    return path


def serve(args, out=None):
    """``ember serve PATH``: serve until interrupted."""
    from . import serve as serving

    serving.run(args.path, host=args.host, port=args.port, max_batch=1 if args.no_batching else args.max_batch,
                max_wait_ms=args.max_wait_ms, max_rows=args.max_rows, max_body_bytes=int(args.max_body_mb * 2**20),
                input_shape=args.input_shape, watch_seconds=args.watch, access_log=args.access_log)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ember", description="Ember: a lightweight deep-learning engine.")
    sub = parser.add_subparsers(dest="command")
    p_train = sub.add_parser("train", help="train a classifier (or, --model gpt, a GPT on a text) and save a "
                                           "checkpoint")
    p_train.add_argument("--dataset", choices=DATASETS, help="the image data set (default: digits)")
    p_train.add_argument("--data-dir", help="directory holding the data set's files (cifar10, mnist)")
    p_train.add_argument("--model", choices=("cnn", "mlp", "gpt"), default="cnn",
                         help="cnn: Conv2d(32, 3x3) > ReLU > MaxPool2d(2) > Linear(128) > ReLU > Linear; "
                              "mlp: Linear(256) > ReLU > Linear(128) > ReLU > Linear; gpt: a character-level "
                              "language model on --text (default: cnn)")
    p_train.add_argument("--epochs", type=_positive_int,
                         help="the final epoch's index (default: per data set; gpt: 4); with --resume, training "
                              "continues from the checkpoint's epoch up to this one (Keras's epochs and "
                              "initial_epoch)")
    p_train.add_argument("--batch-size", type=_positive_int, help="samples per step (default: 64; gpt: 32)")
    p_train.add_argument("--lr", type=_positive_float,
                         help="Adam's learning rate (default: 0.001; gpt: AdamW's peak rate, 0.003, after a warmup "
                              "and down a cosine to a tenth)")
    p_train.add_argument("--seed", type=_nonnegative_int, default=0,
                         help="seeds the weights, the split, the batch order and the augmentation (default: 0)")
    p_train.add_argument("--out", help="checkpoint path (default: ember-DATASET-MODEL.safetensors)")
    p_train.add_argument("--resume", help="continue from this checkpoint")
    p_train.add_argument("--precision", choices=("fp32", "bf16"),
                         help="bf16: Linear layers multiply in bf16 (AMX or AVX512-BF16 where the CPU has them), "
                              "weights and sums stay float32 (default: with --resume, the checkpoint's; else fp32)")
    p_train.add_argument("--verbose", type=int, choices=(0, 1, 2), default=None,
                         help="0 quiet, 1 progress bars, 2 a line per epoch (default: bars on a terminal)")
    gpt = p_train.add_argument_group("--model gpt")
    gpt.add_argument("--text", metavar="FILE", help="a UTF-8 text to learn, its last tenth held out for validation "
                                                   "(default: Tiny Shakespeare, shipped with Ember)")
    d = _cli_gpt.DEFAULTS
    gpt.add_argument("--steps-per-epoch", type=_positive_int, help=f"default: {d['steps_per_epoch']}")
    gpt.add_argument("--block-size", type=_positive_int, help=f"characters of context (default: {d['block_size']})")
    gpt.add_argument("--layers", type=_positive_int, help=f"Transformer blocks (default: {d['layers']})")
    gpt.add_argument("--heads", type=_positive_int, help=f"attention heads per block (default: {d['heads']})")
    gpt.add_argument("--width", type=_positive_int, help=f"the model's width, a multiple of --heads "
                                                         f"(default: {d['width']})")
    p_gen = sub.add_parser("generate", help="text from a GPT checkpoint (ember train --model gpt)")
    p_gen.add_argument("path", help="a checkpoint of ember train --model gpt")
    p_gen.add_argument("--prompt", help="the text to continue (default: a new line)")
    p_gen.add_argument("--tokens", type=_positive_int, default=500, help="characters to add (default: 500)")
    p_gen.add_argument("--temperature", type=float, default=0.8,
                       help="sampling temperature; 0 takes the most likely character (default: 0.8)")
    p_gen.add_argument("--top-k", type=_positive_int, default=20,
                       help="sample among the k most likely characters (default: 20)")
    p_gen.add_argument("--seed", type=_nonnegative_int, default=0, help="seeds the sampling (default: 0)")
    p_gen.add_argument("--bits", type=int, choices=(8, 4), help="quantize the model to int8 or int4 first")
    p_gen.add_argument("--codebook", action="store_true",
                       help="with --bits 4: the int4 codebook format (4.5 bits per weight, more accurate)")
    p_eval = sub.add_parser("evaluate", help="print a checkpoint's classification report")
    p_quant = sub.add_parser("quantize", help="quantize a checkpoint's Linear layers to int8 or int4")
    p_compress = sub.add_parser("compress", help="prune (and fine-tune) and/or quantize a checkpoint, and compare "
                                                 "every form")
    p_export = sub.add_parser("export", help="write a checkpoint's model as ONNX, checked in ONNX Runtime")
    p_export.add_argument("--onnx", required=True, metavar="OUT.onnx", help="where to write the ONNX model")
    p_export.add_argument("--opset", type=int, default=21, help="ONNX opset, 17 or later (default: 21)")
    p_export.add_argument("--static-batch", action="store_true", help="a fixed batch of 1 instead of any batch")
    p_profile = sub.add_parser("profile", help="a model's time and memory per layer, latency and throughput, in its "
                                               "fp32, bf16, int8 and int4 forms")
    bench_cli.add_profile_arguments(p_profile)
    for p in (p_eval, p_quant, p_compress, p_export, p_profile):
        if p is not p_profile:
            p.add_argument("path", help="any Ember checkpoint (ember train, model.save, ModelCheckpoint, ember.save)")
        p.add_argument("--dataset", choices=DATASETS, help="default: the one its config names, else digits")
        p.add_argument("--data-dir", help="directory holding the data set's files (cifar10, mnist)")
        p.add_argument("--seed", type=_nonnegative_int, default=0, help="the split seed (digits, synthetic)")
        p.add_argument("--scale", type=_positive_float,
                       help="pixels are multiplied by this (default: what the checkpoint records, else the data "
                            "set's usual range, such as 1/255)")
        p.add_argument("--mean", type=_numbers, help="then minus these (one per channel, comma-separated)")
        p.add_argument("--std", type=_numbers, help="then divided by these")
        p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                       help="import MODULE first: the module defining a model's own registered Module classes")
    p_quant.add_argument("--bits", type=int, choices=(8, 4), default=8)
    p_quant.add_argument("--group-size", type=int,
                         help="inputs per scale, a multiple of 8 from 8 to 4096: int4's groups (default: 32); with "
                              "--bits 8, int8 in groups (32: 8.5 bits per weight, the size of llama.cpp's q8_0, "
                              "and more accurate than one scale per channel, the default)")
    p_quant.add_argument("--codebook", action="store_true",
                         help="int4 only: the codebook format, 4.5 bits per weight and more accurate than groups of "
                              "32 (--group-size does not apply)")
    p_quant.add_argument("--out", help="default: PATH with .int8/.int8g/.int4/.int4cb before .safetensors")
    p_quant.add_argument("--text", metavar="FILE", help="a GPT checkpoint: the text it was trained on, scored on its "
                                                       "last tenth (default: the shipped text)")
    p_compress.add_argument("--prune", type=_fraction, metavar="FRACTION",
                            help="remove this fraction of each prunable layer's channels (structured)")
    p_compress.add_argument("--criterion", choices=("l1", "l2", "bn_scale"), default="l1",
                            help="which channels go: smallest weight norm (l1, l2) or BatchNorm scale")
    p_compress.add_argument("--finetune", type=_positive_int, metavar="EPOCHS",
                            help="train the pruned model this many epochs on the data set's training split")
    p_compress.add_argument("--lr", type=_positive_float, default=1e-3, help="fine-tuning learning rate (Adam)")
    p_compress.add_argument("--batch-size", type=_positive_int, default=64, help="fine-tuning batch size")
    p_compress.add_argument("--quantize", type=int, choices=(8, 4), metavar="BITS",
                            help="then quantize the Linear layers to int8 or int4")
    p_compress.add_argument("--out", help="default: PATH with .prunedNN/.intN before .safetensors")
    p_serve = sub.add_parser("serve", help="serve a checkpoint or an ONNX file over HTTP, with dynamic batching, "
                                           "metrics and reloading")
    p_serve.add_argument("path", help="an Ember checkpoint or a .onnx file")
    p_serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine "
                                                             "only)")
    p_serve.add_argument("--port", type=_port, default=8000, help="port (default: 8000; 0: any free one)")
    p_serve.add_argument("--max-batch", type=_positive_int, default=64,
                         help="inputs gathered into one model call at most (default: 64)")
    p_serve.add_argument("--max-wait-ms", type=_nonnegative_float, default=2.0,
                         help="how long the first request of a batch waits for others (default: 2)")
    p_serve.add_argument("--no-batching", action="store_true", help="run every request alone")
    p_serve.add_argument("--max-rows", type=_positive_int, default=1024, help="inputs per request at most (default: 1024)")
    p_serve.add_argument("--max-body-mb", type=_positive_float, default=16.0, help="request body limit (default: 16)")
    p_serve.add_argument("--input-shape", type=bench_cli._ints,
                         help="one input's shape, C,H,W, when the file does not record it")
    p_serve.add_argument("--watch", type=_positive_float, metavar="SECONDS",
                         help="reload the file whenever it changes, checking every SECONDS")
    p_serve.add_argument("--access-log", action="store_true", help="log every request")
    p_serve.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                         help="import MODULE first: the module defining a model's own registered Module classes")
    sub.add_parser("info", help="print the runtime report")
    bench_cli.add_bench_arguments(sub.add_parser(
        "bench", help="time Ember's kernels against NumPy and PyTorch, with the measured hardware limits"))
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
    if args.command == "info":
        from . import info

        info()
        return 0
    if args.command == "train" and args.verbose is None:
        args.verbose = "auto"
    commands = {"train": train, "generate": lambda a: _cli_gpt.generate(a, sys.stdout), "evaluate": evaluate, "quantize": quantize, "compress": compress, "export": export,
                "serve": serve,
                "profile": bench_cli.profile,
                "bench": bench_cli.bench}
    try:
        _import_modules(getattr(args, "imports", []))
        result = commands[args.command](args)
    except (OSError, ValueError, ImportError) as exc:  # OSError: a file or folder that cannot be read or written
        print(f"ember {args.command}: {exc}", file=sys.stderr)
        return _failed(2)
    except MemoryError as exc:  # sizes this machine cannot hold: a message, not a traceback
        print(f"ember {args.command}: out of memory{f' ({exc})' if str(exc) else ''}; try smaller sizes",
              file=sys.stderr)
        return _failed(2)
    if isinstance(result, int):  # bench: 1 when a timed result was wrong
        return result
    return 130 if isinstance(result, dict) and result.get("interrupted") else 0


def _failed(code: int) -> int:
    """A failure that ends one rank of a distributed job ends them all: the others would wait for
    it until their collectives time out."""
    comm = sys.modules.get("ember.distributed.comm")
    if comm is not None and comm.is_initialized() and comm.world().size > 1:
        comm.world().abort(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
