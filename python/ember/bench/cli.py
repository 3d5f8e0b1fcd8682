"""``ember bench`` and ``ember profile``: their arguments and what they do (``ember.cli`` adds
them to the ``ember`` command)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

MODEL_NAMES = ("cnn", "mlp")


def _shape(text: str) -> tuple:
    parts = text.lower().split("x")
    try:
        m, k, n = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape must be MxKxN with positive integers, got {text!r}") from None
    if min(m, k, n) <= 0:
        raise argparse.ArgumentTypeError(f"shape must be MxKxN with positive integers, got {text!r}")
    return m, k, n


def _ints(text: str) -> list:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}")
    return values


def _names(allowed):
    def parse(text: str) -> list:
        values = [v.strip() for v in text.split(",") if v.strip()]
        wrong = [v for v in values if v not in allowed]
        if not values or wrong:
            raise argparse.ArgumentTypeError(f"expected some of {', '.join(allowed)} separated by commas, got {text!r}")
        return values
    return parse


def add_bench_arguments(p) -> None:
    from .catalogue import KERNELS

    p.add_argument("kernels", nargs="*", metavar="KERNEL",
                   help=f"kernels to run (default: all): {', '.join(KERNELS)}")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", dest="preset", action="store_const", const="quick",
                      help="small sizes: about a minute on two cores (the default)")
    size.add_argument("--full", dest="preset", action="store_const", const="full",
                      help="the sizes the README's tables quote (minutes; gigabytes for the largest cross-entropy)")
    size.add_argument("--preset", choices=("test", "quick", "full"), help="test: tiny sizes, each case checked once")
    size.add_argument("--shape", type=_shape, action="append", metavar="MxKxN",
                      help="instead of a preset: this size, for the GEMM and quantized-matmul kernels (repeatable)")
    p.add_argument("--threads", type=_ints, help="thread counts, comma-separated (default: Ember's current one)")
    p.add_argument("--rounds", type=int, help="timing rounds per case (default: per preset)")
    p.add_argument("--json", metavar="OUT", help="write the records (machine, versions, medians and spreads) as JSON")
    p.add_argument("--compare", metavar="OLD.json", help="show what changed against an earlier --json run")
    p.add_argument("--plot", metavar="OUT.png", help="throughput against size, with the measured roofs (matplotlib)")
    p.add_argument("--load", metavar="RUN.json", help="show (and plot, compare) a saved run instead of measuring; "
                                                      "KERNEL, --shape and --threads pick its records, --json writes "
                                                      "them")
    p.add_argument("--list", action="store_true", help="list the kernels and their sizes, then stop")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def bench(args, out=None) -> int:
    """``ember bench``: 0 when every timed result was right, 1 when one was wrong."""
    out = sys.stdout if out is None else out
    from .._cli_data import output_path
    from . import plot
    from .catalogue import KERNELS, PRESETS
    from .runner import compare, compare_table, load, run, select, table, write_json

    if args.list:
        for name, kernel in KERNELS.items():
            sizes = "; ".join(f"{p}: " + ", ".join(kernel.case(params).shape for params in kernel.presets[p])
                              for p in PRESETS)
            print(f"{name} ({kernel.what})\n    {sizes}", file=out)
        return 0
    if args.rounds is not None and args.rounds < 1:
        raise ValueError(f"--rounds must be >= 1, got {args.rounds}")
    if args.load:  # a saved run: the selection picks its records; how to measure has no say
        given = [option for option, value in (("--rounds", args.rounds), (f"--preset {args.preset}", args.preset))
                 if value is not None]
        if given:
            raise ValueError(f"{', '.join(given)}: only when measuring, not with --load (which shows a saved run)")
    # Before any measuring: a missing extra, a bad file name or folder is found now, not after minutes.
    inputs = (args.load, args.compare)
    if args.plot:
        plot.output(args.plot, inputs)
    if args.json:
        output_path(args.json, args.json, "--json", inputs)
    old = load(args.compare) if args.compare else None
    if args.load:
        data = select(load(args.load), args.kernels, args.shape, args.threads)
        if (args.kernels or args.shape or args.threads) and not (data["results"] or data["skipped"]
                                                                  or data["failures"]):
            raise ValueError(f"{args.load} holds no records of the kernels, sizes and thread counts asked for")
        if args.json:
            write_json(args.json, data)
    else:
        result = run(args.kernels or None, args.preset or "quick", shapes=args.shape, threads=args.threads,
                     rounds=args.rounds, progress=not args.quiet)
        data = result.to_dict()
        if args.json:
            result.save(args.json)
    print(table(data), file=out)
    if old is not None:
        # against the old run's records of what ran now (its other kernels and thread counts are no news)
        old_part = select(old, args.kernels, args.shape, data["machine"]["threads"])
        print(f"\nagainst {args.compare} ({old['created']}, {old['machine']['cpu_model']}):", file=out)
        print(compare_table(compare(old_part, data)), file=out)
    if args.json:
        print(f"\nrecords: {Path(args.json).resolve()}", file=out)
    if args.plot:
        print(f"plot: {plot.bench(data, args.plot).resolve()}", file=out)
    return 1 if data["failures"] else 0


def add_profile_arguments(p) -> None:
    from .profiling import VARIANTS

    p.add_argument("model", help=f"an Ember checkpoint, or a model name ({', '.join(MODEL_NAMES)}) to profile with "
                                 "fresh weights")
    p.add_argument("--input-shape", type=_ints, default=[3, 32, 32],
                   help="for a model name: one input's shape, C,H,W (default: 3,32,32, the seed CNN's CIFAR-10 input)")
    p.add_argument("--classes", type=int, default=10, help="for a model name: its outputs (default: 10)")
    p.add_argument("--batch-size", type=int, default=64, help="the batch of the per-layer breakdown (default: 64)")
    p.add_argument("--batch-sizes", type=_ints, default=[1, 8, 32, 128],
                   help="batch sizes of the throughput curve (default: 1,8,32,128)")
    p.add_argument("--variants", type=_names(VARIANTS), default=list(VARIANTS),
                   help=f"which forms of the model (default: {','.join(VARIANTS)})")
    p.add_argument("--repeats", type=int, default=100, help="calls behind the batch-1 latency percentiles (default: 100)")
    p.add_argument("--no-eval", action="store_true", help="skip the accuracy on the data set's test split")
    p.add_argument("--json", metavar="OUT", help="write the profile as JSON")
    p.add_argument("--plot", metavar="OUT.png", help="throughput and latency against batch size, and the per-layer "
                                                     "breakdown (matplotlib)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def _model_and_data(args):
    """(model, example batch, evaluation data or None, what the model is)."""
    import numpy as np

    import ember

    from .. import _cli_data as data
    from .. import models

    path = Path(args.model)
    if path.is_file():
        model, config = data.load_model(path)
        x, y, dataset, _ = data.test_data(path, model, config, args)
        return model, x[:args.batch_size], None if args.no_eval else (x, y), f"{path} on {dataset}"
    if args.model not in MODEL_NAMES:
        raise FileNotFoundError(f"no checkpoint at {args.model} (and it is not a model name: {', '.join(MODEL_NAMES)})")
    if args.dataset is not None:
        _, (x, y) = data.load_dataset(args.dataset, args.data_dir, args.seed)
        # --scale, --mean and --std checked and applied as for a checkpoint (which records none here)
        norm, _ = data.normalisation(args.model, {}, args, args.dataset, x.shape[1])
        x = data.preprocess(x, norm)
        shape = x.shape[1:]
        options = data.RECIPES[args.dataset]["cnn"] if args.model == "cnn" else {}
        ember.manual_seed(args.seed)
        model = models.build(args.model, shape, int(max(y.max() + 1, args.classes)), **options)
        return model, x[:args.batch_size], None if args.no_eval else (x, y), f"{args.model} (fresh weights) on " \
                                                                            f"{args.dataset}"
    given = [f"--{k}" for k in ("scale", "mean", "std") if getattr(args, k) is not None]
    if given:
        raise ValueError(f"{', '.join(given)}: only with --dataset (or a checkpoint); random inputs are taken as "
                         "they are")
    if len(args.input_shape) != 3:
        raise ValueError(f"--input-shape must be C,H,W, got {args.input_shape}")
    ember.manual_seed(args.seed)
    model = models.build(args.model, tuple(args.input_shape), args.classes)
    x = np.random.default_rng(args.seed).standard_normal((args.batch_size, *args.input_shape)).astype(np.float32)
    return model, x, None, f"{args.model} (fresh weights) on random inputs"


def profile(args, out=None):
    """``ember profile MODEL``: the report (and JSON, plot)."""
    out = sys.stdout if out is None else out
    from .._cli_data import output_path
    from . import plot
    from .profiling import profile as run_profile

    for name in ("batch_size", "repeats", "classes"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    # Before any work: no output may be the checkpoint profiled, a folder, or in a missing folder.
    inputs = (args.model,) if Path(args.model).exists() else ()
    if args.plot:
        plot.output(args.plot, inputs)
    if args.json:
        output_path(args.json, args.json, "--json", inputs)
    model, x, eval_data, what = _model_and_data(args)
    report = run_profile(model, x, variants=args.variants, batch_sizes=args.batch_sizes, eval_data=eval_data,
                         repeats=args.repeats, progress=not args.quiet)
    print(f"{what}:", file=out)
    print(report.table(), file=out)
    if args.json:
        print(f"\nprofile: {report.save(args.json).resolve()}", file=out)
    if args.plot:
        print(f"plot: {plot.profile(report.to_dict(), args.plot).resolve()}", file=out)
    return report
