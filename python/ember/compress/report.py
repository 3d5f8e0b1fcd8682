"""One report for every way of making a model smaller: forms of a model side by side.

For each form (the original, pruned, distilled, quantized, combinations): parameters, bytes of
its checkpoint on disk, FLOPs of one forward per sample, the measured latency at batch 1 and
throughput at batch 256 (all forms timed in the same alternating rounds, so they see the same
machine), and accuracy / macro precision / recall / F1 on evaluation data, with the change from
the first form.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field

import numpy as np

from .. import nn
from ..autograd import no_grad
from .._quant_report import _judge, _on_model_device
from .prune import is_chain
from ..tensor import Tensor

METRICS = ("accuracy", "precision", "recall", "f1", "mse")


@dataclass
class Form:
    """One model's figures (None where not measured)."""

    name: str
    params: int
    disk_bytes: int
    flops: int | None
    latency_s: float | None = None  # batch 1, median over rounds
    throughput: float | None = None  # samples/s at the large batch
    scores: dict = field(default_factory=dict)


@dataclass
class CompressionReport:
    forms: list
    batch: int = 256
    notes: list = field(default_factory=list)

    def __getitem__(self, name) -> Form:
        for f in self.forms:
            if f.name == name:
                return f
        raise KeyError(f"no form named {name!r}; the report has {[f.name for f in self.forms]}")

    def ratio(self, name, what: str, base: str | None = None) -> float:
        """How form ``name`` compares with ``base`` (default: the first form) in ``what``:
        'params' / 'disk' (its share of the base's), 'latency' / 'throughput' (its speed-up)."""
        a, b = self[name], self[base] if base is not None else self.forms[0]
        if what == "params":
            return a.params / b.params
        if what == "disk":
            return a.disk_bytes / b.disk_bytes
        if what == "latency":
            return b.latency_s / a.latency_s
        if what == "throughput":
            return a.throughput / b.throughput
        raise ValueError(f"ratio: what must be 'params', 'disk', 'latency' or 'throughput', got {what!r}")

    def as_dict(self) -> dict:
        return {"batch": self.batch, "notes": list(self.notes),
                "forms": [{"name": f.name, "params": f.params, "disk_bytes": f.disk_bytes, "flops": f.flops,
                           "latency_s": f.latency_s, "throughput": f.throughput, **f.scores} for f in self.forms]}

    def __str__(self) -> str:
        base = self.forms[0]
        head = ["form", "params", "disk", "MFLOP/sample", "batch-1 ms", f"batch-{self.batch} samples/s",
                *[m for m in METRICS if m in base.scores]]
        rows = [head]
        for f in self.forms:
            row = [f.name, f"{f.params:,}" + ("" if f is base else f" ({f.params / base.params:.2f}x)"),
                   f"{f.disk_bytes / 1e6:.3f} MB" + ("" if f is base else f" ({base.disk_bytes / f.disk_bytes:.2f}x smaller)"),
                   "-" if f.flops is None else f"{f.flops / 1e6:.2f}",
                   "-" if f.latency_s is None else f"{f.latency_s * 1e3:.3f}" + (
                       "" if f is base or base.latency_s is None else f" ({base.latency_s / f.latency_s:.2f}x)"),
                   "-" if f.throughput is None else f"{f.throughput:,.0f}" + (
                       "" if f is base or base.throughput is None else f" ({f.throughput / base.throughput:.2f}x)")]
            for m in head[6:]:
                v = f.scores.get(m)
                change = "" if f is base or v is None else (
                    f" ({v - base.scores[m]:+.3g})" if m == "mse" else f" ({100 * (v - base.scores[m]):+.2f})")
                row.append("-" if v is None else (f"{v:.4g}" if m == "mse" else f"{v:.4f}") + change)
            rows.append(row)
        widths = [max(len(r[c]) for r in rows) for c in range(len(head))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


# ---------------------------------------------------------------- the measurements
def _params(model) -> int:
    """The model's parameters; a quantized Linear counts the weights it stands for
    (in_features * out_features, and its bias), not its packed bytes and scales."""
    from ..quant import QuantLinear

    total = sum(p.numel() for p in model.parameters())
    for m in model.modules():
        if isinstance(m, QuantLinear):
            total += m.in_features * m.out_features + (0 if m.bias is None else m.bias.numel())
    return total


def _disk_bytes(model) -> int:
    from ..checkpoint import save

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.safetensors")
        save(path, model)
        return os.path.getsize(path)


def _layer_flops(layer, x_shape, y_shape) -> int:
    if isinstance(layer, nn.Conv2d):
        kh, kw = layer.kernel_size
        return 2 * (layer.in_channels // layer.groups) * kh * kw * int(np.prod(y_shape[1:]))
    if hasattr(layer, "in_features") and hasattr(layer, "out_features"):  # Linear, QuantLinear
        return 2 * layer.in_features * int(np.prod(y_shape[1:]))
    return 0


def _leaves(model):
    if is_chain(model):
        out = []
        for child in model.children():
            out += _leaves(child)
        return out
    if next(iter(model.children()), None) is None:
        return [model]
    raise ValueError("not a Sequential chain")


def flops_per_sample(model, sample: np.ndarray) -> int | None:
    """Multiply-adds x 2 of the convolutions and matrix products of one forward on one sample
    (a Sequential model's layers followed one by one); None for other models."""
    try:
        layers = _leaves(model)
    except ValueError:
        return None
    x = _on_model_device(model, np.asarray(sample, np.float32)[None])
    total = 0
    with no_grad():
        for layer in layers:
            y = layer(x)
            total += _layer_flops(layer, x.shape, y.shape)
            x = y
    return total


def _scores(model, x, y) -> dict:
    from .. import metrics
    from ..training import predict

    kind, value = _judge(predict(model, x, batch_size=256), y, "compare")
    if kind == "mse":
        return {"mse": value}
    labels = y.reshape(value.shape).astype(np.int64)
    p, r, f = metrics.precision_recall_f1(labels, value, average="macro")
    return {"accuracy": metrics.accuracy(labels, value), "precision": p, "recall": r, "f1": f}


def compare(models: dict, eval_data=None, example=None, batch: int = 256, rounds: int = 7) -> CompressionReport:
    """The figures of each model in ``models`` ({name: model}, the first the reference), on
    ``eval_data=(x, y)`` when given (accuracy and macro precision/recall/F1 for class labels --
    the argmax of several outputs, or a single logit > 0 for 0/1 labels -- else the mean
    squared error, as ``ember.quant.quantize`` scores),
    timed on inputs shaped like ``example``'s (a batch of inputs; default: eval_data's x). Every
    model is put in evaluation mode and left there."""
    from ..bench.harness import measure

    if not isinstance(models, dict) or not models:
        raise ValueError("compare: models must be a non-empty dict {name: model}")
    for name, m in models.items():
        if not isinstance(m, nn.Module):
            raise TypeError(f"compare: {name!r} is a {type(m).__name__}, not an ember.nn.Module")
        m.eval()
    if eval_data is not None:
        if not isinstance(eval_data, (tuple, list)) or len(eval_data) != 2:
            raise ValueError("compare: eval_data must be (x, y)")
        x_eval = np.asarray(eval_data[0]._host() if isinstance(eval_data[0], Tensor) else eval_data[0], np.float32)
        y_eval = np.asarray(eval_data[1]._host() if isinstance(eval_data[1], Tensor) else eval_data[1])
        if example is None:
            example = x_eval[:1]
    if example is None:
        raise ValueError("compare: give eval_data or an example input to time the models on")
    sample = np.asarray(example._host() if isinstance(example, Tensor) else example, np.float32)
    if sample.ndim < 2 or len(sample) == 0:
        raise ValueError(f"compare: example must be a batch of inputs, got shape {sample.shape}")
    sample = sample[0]
    rng = np.random.default_rng(0)
    big = x_eval[:batch] if eval_data is not None and len(x_eval) >= batch else \
        rng.standard_normal((batch, *sample.shape)).astype(np.float32)
    forms = [Form(name, _params(m), _disk_bytes(m), flops_per_sample(m, sample)) for name, m in models.items()]

    def timed(m, x):
        xt = _on_model_device(m, x)

        def run():
            with no_grad():
                m(xt)._host()

        return run

    one = measure({n: timed(m, sample[None]) for n, m in models.items()}, rounds=rounds, min_time=0.02, settle=0.05)
    many = measure({n: timed(m, big) for n, m in models.items()}, rounds=rounds, min_time=0.05, min_calls=2,
                   settle=0.05)
    for f in forms:
        f.latency_s = one[f.name].median
        f.throughput = len(big) / many[f.name].median
    if eval_data is not None:
        for f, m in zip(forms, models.values()):
            f.scores = _scores(m, x_eval, y_eval)
    return CompressionReport(forms, batch=len(big))

