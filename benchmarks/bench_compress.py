"""Model compression, measured: structured pruning, distillation, and pruning + int8, each form
timed side by side with the original in alternating rounds (``ember.compress.compare``), 2
threads. Speed on the seed CNN (3x32x32 inputs); accuracy on the bundled digits with the
digits CNN (the same architecture on 1x8x8 inputs, ``ember train``'s recipe). ``extra_info``
holds every figure; ``-s`` prints the reports.

    python -m pytest benchmarks/bench_compress.py --benchmark-only -s

As tests (``--benchmark-disable``) each runs once with a single epoch and seed, checking only
that the pieces fit together.
"""

import numpy as np

import ember
from ember import compress, models, quant
from helpers import THREADS, thread_limit

SEED_SHAPE = (3, 32, 32)
DIGITS_SHAPE = (1, 8, 8)


def digits():
    (x, y), (xt, yt) = ember.datasets.digits()
    return (x.astype(np.float32) / 16, y), (xt.astype(np.float32) / 16, yt)


def trained_digits_cnn(seed, epochs, filters=32, hidden=128, init_seed=None):
    """The digits CNN (or a narrower one), its weights drawn from ``init_seed`` (default ``seed``),
    trained on the labels."""
    ember.manual_seed(seed if init_seed is None else init_seed)
    (x, y), _ = digits()
    model = models.cnn(DIGITS_SHAPE, 10, filters=filters, hidden=hidden, padding=1)
    model.compile(optimizer="adam", lr=3e-3, metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=32, seed=seed, verbose=0)
    return model


def accuracy(model):
    _, (xt, yt) = digits()
    return float((model.predict(xt).argmax(1) == yt).mean())


def seed_cnn_input(batch):
    return np.random.default_rng(0).standard_normal((batch, *SEED_SHAPE)).astype(np.float32)


def bench_pruning_and_int8(benchmark):
    quick = getattr(benchmark, "disabled", False)
    epochs, finetune, rounds = (1, 1, 1) if quick else (30, 10, 9)
    benchmark.group = "compression"
    figures = {}

    def run():
        with thread_limit(max(THREADS)):
            ember.manual_seed(0)
            model = models.cnn(SEED_SHAPE, 10)
            small, _ = compress.prune(model, 0.5)
            both, _ = quant.quantize(small, bits=8)
            report = compress.compare({"seed CNN": model, "pruned 0.5": small, "pruned 0.5 + int8": both},
                                      example=seed_cnn_input(1), rounds=rounds)
            teacher = trained_digits_cnn(0, epochs)
            (x, y), _ = digits()
            pruned, _ = compress.prune(teacher, 0.5)
            pruned.compile(optimizer="adam", lr=1e-3)
            pruned.fit(x, y, epochs=finetune, batch_size=32, seed=0, verbose=0)
            pruned_int8, _ = quant.quantize(pruned, bits=8)
            for name in ("pruned 0.5", "pruned 0.5 + int8"):
                figures[name] = {"params": report.ratio(name, "params"), "disk": 1 / report.ratio(name, "disk"),
                                 "speedup_1": report.ratio(name, "latency"),
                                 "speedup_256": report.ratio(name, "throughput")}
            figures["digits"] = {"original": accuracy(teacher), "pruned": accuracy(pruned),
                                 "pruned + int8": accuracy(pruned_int8)}
            print(f"\n{report}\ndigits CNN accuracy, pruned forms fine-tuned {finetune} epochs: " +
                  ", ".join(f"{k} {v:.4f}" for k, v in figures["digits"].items()))

    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(figures, threads=max(THREADS))
    assert figures["pruned 0.5"]["params"] < 0.55 and figures["pruned 0.5 + int8"]["disk"] > 4
    # Fine-tuned, the pruned forms keep the original's accuracy (within a few points after the one
    # epoch of a test run), and int8 costs the pruned model almost nothing.
    acc = figures["digits"]
    assert acc["original"] > 0.8, acc
    assert acc["pruned"] >= acc["original"] - 0.05 and acc["pruned + int8"] >= acc["pruned"] - 0.02, acc


def bench_distillation(benchmark):
    quick = getattr(benchmark, "disabled", False)
    epochs, seeds = (1, (0,)) if quick else (30, (0, 1, 2))
    benchmark.group = "compression"
    figures = {"teacher": [], "distilled": [], "alone": []}

    def run():
        with thread_limit(max(THREADS)):
            (x, y), _ = digits()
            for seed in seeds:
                teacher = trained_digits_cnn(seed, epochs)
                ember.manual_seed(100 + seed)
                student = models.cnn(DIGITS_SHAPE, 10, filters=16, hidden=64, padding=1)
                compress.distill(teacher, student, x, y, temperature=4.0, alpha=0.9, epochs=epochs, lr=3e-3,
                                 batch_size=32, seed=seed, verbose=0)
                alone = trained_digits_cnn(seed, epochs, filters=16, hidden=64, init_seed=100 + seed)
                for key, m in (("teacher", teacher), ("distilled", student), ("alone", alone)):
                    figures[key].append(accuracy(m))
        print("\ndigits, mean over seeds: " + ", ".join(f"{k} {np.mean(v):.4f}" for k, v in figures.items()))

    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update({k: float(np.mean(v)) for k, v in figures.items()}, seeds=len(seeds))
    means = {k: float(np.mean(v)) for k, v in figures.items()}
    assert means["teacher"] > 0.8 and min(means.values()) > 0.5, means  # all learn, far above chance (0.1)
    if not quick:  # trained to the end, the teacher's soft targets beat training the student alone
        assert means["distilled"] > means["alone"], means
