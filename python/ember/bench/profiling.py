"""``ember.profile``: where a model's time and memory go, and what its fp32, bf16, int8 and int4
forms cost side by side -- per-layer forward and backward time, FLOPs, bytes moved, parameter
and activation memory and share of the step; latency percentiles at batch 1; throughput against
batch size; peak memory; and, given an evaluation set, each form's accuracy."""

from __future__ import annotations

import bisect
import datetime
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .harness import measure, sample_calls
from .progress import Progress

FORMAT = "ember-profile-1"
VARIANTS = ("fp32", "bf16", "int8", "int4")
TRAINABLE = ("fp32", "bf16")


def _nbytes(t) -> int:
    """Bytes of a tensor's (or an array's) storage; 0 for None."""
    if t is None:
        return 0
    data = getattr(t, "_data", t)
    return int(data.nbytes)


def _leaves(model) -> list:
    """(name, module) of the modules that hold no others: what the per-layer table lists."""
    leaves = [(name, m) for name, m in model.named_modules() if not list(m.children())]
    return leaves or [("", model)]


def _flops(module, x, y) -> tuple:
    """(forward, backward) floating-point operations of one call of ``module`` from its input
    ``x`` to its output ``y`` (shapes only): exact for the matrix products, one per element for
    element-wise layers."""
    from .. import nn, quant

    if isinstance(module, (nn.Linear, quant.QuantLinear)):
        forward = 2.0 * y.size * module.in_features
        return forward, (2.0 * forward if isinstance(module, nn.Linear) else 0.0)
    if isinstance(module, nn.Conv2d):
        kh, kw = module.weight.shape[2:]
        forward = 2.0 * y.size * module.weight.shape[1] * kh * kw
        return forward, 2.0 * forward
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        k = module.kernel_size if isinstance(module.kernel_size, tuple) else (module.kernel_size,) * 2
        return float(y.size * k[0] * k[1]), float(x.size)
    if isinstance(module, (nn.Flatten, nn.Dropout, nn.Identity)):
        return 0.0, 0.0
    return float(max(x.size, y.size)), float(max(x.size, y.size))


def _first_tensor(args):
    from ..tensor import Tensor

    return next((a for a in args if isinstance(a, Tensor)), None)


class _LayerClock:
    """While inside: the forward of each leaf module is timed (its ``forward`` wrapped on the
    instance) and every backward node the forward made is charged to its layer."""

    def __init__(self, model, sync):
        self.leaves = _leaves(model)
        self.sync = sync
        self.stats = {name: {"forward": 0.0, "backward": 0.0, "calls": 0} for name, _ in self.leaves}
        self.shapes = {}
        self.ranges = []  # (first node number, last, layer), in order

    def _wrap(self, name, module, forward):
        from ..autograd.engine import next_sequence

        def timed(*args, **kwargs):
            lo = next_sequence()
            self.sync()
            start = time.perf_counter()
            out = forward(*args, **kwargs)
            self.sync()
            self.stats[name]["forward"] += time.perf_counter() - start
            self.stats[name]["calls"] += 1
            self.ranges.append((lo, next_sequence(), name))
            x = _first_tensor(args)
            if x is not None and name not in self.shapes:
                self.shapes[name] = (module, x, out)
            return out

        return timed

    def _on_backward(self, node, seconds):
        i = bisect.bisect_right(self.starts, node.seq) - 1
        if i >= 0 and node.seq < self.ranges[i][1]:
            self.stats[self.ranges[i][2]]["backward"] += seconds
        else:
            self.other_backward += seconds

    def reset(self):
        for s in self.stats.values():
            s.update(forward=0.0, backward=0.0, calls=0)
        self.ranges = []
        self.other_backward = 0.0

    def __enter__(self):
        for name, module in self.leaves:
            object.__setattr__(module, "forward", self._wrap(name, module, module.forward))
        self.reset()
        return self

    def backward(self, loss):
        from ..autograd.engine import timed_backward

        self.starts = [r[0] for r in self.ranges]
        with timed_backward(self._on_backward):
            loss.backward()
        self.sync()

    def __exit__(self, *exc):
        for _, module in self.leaves:
            module.__dict__.pop("forward", None)


def _batch(x, n):
    """n inputs: ``x``'s rows repeated cyclically."""
    return np.take(x, np.arange(n) % len(x), axis=0)


def _rss_kib(field_name):
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field_name + ":"))
    except (OSError, StopIteration, ValueError):
        return None


def peak_rss(fn):
    """(peak resident set while ``fn()`` runs, what it added to the resident set), in bytes: every
    allocation counted (NumPy's, Ember's host cache, the kernels' own). Linux only (None, None
    elsewhere or where the high-water mark cannot be reset)."""
    before = _rss_kib("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the high-water mark VmHWM to the resident set now
    except OSError:
        fn()
        return None, None
    fn()
    peak = _rss_kib("VmHWM")
    if before is None or peak is None:
        return None, None
    return peak * 1024, max(0, peak - before) * 1024


@dataclass
class ProfileReport:
    """What ``profile`` measured (``to_dict``: the documented JSON, see ``profile.schema.json``)."""

    model: str
    input_shape: list
    device: str
    machine: dict
    variants: dict = field(default_factory=dict)  # name -> record
    skipped: dict = field(default_factory=dict)  # variant -> reason
    batch_sizes: list = field(default_factory=list)
    layer_batch: int = 1
    created: str = field(default_factory=lambda: datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds"))

    def to_dict(self) -> dict:
        return {"format": FORMAT, "created": self.created, "model": self.model, "input_shape": self.input_shape,
                "device": self.device, "machine": self.machine, "batch_sizes": self.batch_sizes,
                "layer_batch": self.layer_batch, "variants": self.variants, "skipped": self.skipped}

    def save(self, path) -> Path:
        """Write the profile as JSON, atomically."""
        from .runner import write_json

        return write_json(path, self.to_dict())

    def table(self) -> str:
        return table(self.to_dict())

    def __str__(self) -> str:
        return self.table()


def _variant_model(model, name):
    """(model, context manager factory) of a variant, or a ValueError saying why it cannot be made."""
    import contextlib

    from .. import precision, quant

    if name == "fp32":
        return model, contextlib.nullcontext
    if name == "bf16":
        return model, lambda: precision.autocast("bf16")
    bits = 8 if name == "int8" else 4
    qmodel, _ = quant.quantize(model, bits=bits)
    return qmodel, contextlib.nullcontext


def _layer_profile(model, policy, x, train, sync, steps):
    """Per-layer records of ``steps`` steps at x's batch: the forward (and, when ``train``, the
    backward of the outputs' sum) of every leaf layer; the median step's figures."""
    from .. import nn
    from ..autograd import no_grad

    per_step = []
    whole = []
    restore_modes = nn.saved_modes(model)
    model.train(train)
    try:
        with _LayerClock(model, sync) as clock:
            for step in range(steps + 1):  # the first warms up
                clock.reset()
                start = time.perf_counter()
                if train:
                    with policy():
                        out = model(x)
                    clock.backward(out.sum())
                    model.zero_grad()
                else:
                    with no_grad(), policy():
                        out = model(x)
                    sync()
                elapsed = time.perf_counter() - start
                if step:
                    per_step.append({k: dict(v) for k, v in clock.stats.items()})
                    whole.append(elapsed)
            shapes = clock.shapes
    finally:
        restore_modes()
    step_s = float(np.median(whole))
    layers = []
    for name, module in _leaves(model):
        if name not in shapes:
            continue  # a layer the forward never called
        mod, xin, yout = shapes[name]
        fwd = float(np.median([s[name]["forward"] for s in per_step]))
        bwd = float(np.median([s[name]["backward"] for s in per_step])) if train else None
        flops_f, flops_b = _flops(mod, xin, yout)
        params = sum(_nbytes(p) for p in module.parameters()) + sum(_nbytes(b) for b in module.buffers())
        layers.append({"name": name or type(module).__name__, "kind": type(module).__name__,
                       "output_shape": list(yout.shape), "forward_s": fwd, "backward_s": bwd,
                       "flops_forward": flops_f, "flops_backward": flops_b if train else None,
                       "bytes_forward": float(_nbytes(xin) + _nbytes(yout) + params),
                       "param_bytes": params, "activation_bytes": _nbytes(yout),
                       "share": (fwd + (bwd or 0.0)) / step_s if step_s > 0 else 0.0})
    return layers, step_s


def _accuracy(model, policy, x, y, device, batch=256):
    from ..autograd import no_grad
    from ..factories import tensor

    correct = 0
    with no_grad(), policy():
        for i in range(0, len(x), batch):
            out = model(tensor(x[i:i + batch], device=device))._host()
            correct += int((out.argmax(axis=1) == y[i:i + batch]).sum())
    return correct / len(x)


def profile(model, example_input, *, variants=VARIANTS, batch_sizes=(1, 8, 32, 128), eval_data=None,
            repeats: int = 100, layer_steps: int = 5, backward: bool = True, progress=None,
            **timing) -> ProfileReport:
    """Profile ``model`` on inputs shaped like ``example_input`` (a batch: array or Tensor).

    For each of ``variants`` ('fp32', 'bf16' -- the same model under ``ember.autocast('bf16')``
    -- and 'int8', 'int4' -- ``ember.quant.quantize``'s copies; a variant that cannot be made is
    listed under ``skipped`` with the reason):

    - per leaf layer, at the example's batch size: forward time, backward time (fp32 and bf16,
      the backward of the outputs' sum, in training mode), FLOPs, bytes moved forward (input,
      output, weights), parameter and activation bytes, share of the whole step;
    - latency at batch 1: p50, p90 and p99 over ``repeats`` calls (evaluation mode, no grad);
    - throughput (samples/s) at each of ``batch_sizes``, the variants timed in alternation;
    - peak host memory (resident set) of a forward at the largest batch and what that forward
      added to it, the bytes Ember's host cache then holds, and the model's bytes;
    - with ``eval_data=(x, y)`` (integer labels), the accuracy.

    The model is left as it was found: its mode, its parameters' gradients, its buffers.

    ``timing`` goes to ``ember.bench.measure`` (rounds, min_time, settle) for the throughput."""
    import ember

    from .. import backend, nn, quant
    from ..autograd import no_grad
    from ..tensor import Tensor
    from ..factories import tensor
    from . import machine

    if not isinstance(model, nn.Module):
        raise TypeError(f"profile: model must be an ember.nn.Module, got {type(model).__name__}")
    x = example_input._host() if isinstance(example_input, Tensor) else np.asarray(example_input)
    if x.ndim < 1 or len(x) == 0:
        raise ValueError(f"profile: example_input must be a batch of inputs (N, ...), got shape {x.shape}")
    x = x.astype(np.float32, copy=False)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise ValueError(f"profile: variants must be among {', '.join(VARIANTS)}, got {list(variants)!r}")
    sizes = sorted({int(b) for b in batch_sizes})
    if not sizes or sizes[0] < 1:
        raise ValueError(f"profile: batch_sizes must be positive integers, got {list(batch_sizes)!r}")
    if repeats < 1 or layer_steps < 1:
        raise ValueError(f"profile: repeats and layer_steps must be >= 1, got {repeats} and {layer_steps}")
    if eval_data is not None:
        if not isinstance(eval_data, (tuple, list)) or len(eval_data) != 2 or len(eval_data[0]) != len(eval_data[1]):
            raise ValueError("profile: eval_data must be (inputs, integer labels) of one length")
        ex, ey = (np.asarray(a._host() if isinstance(a, Tensor) else a) for a in eval_data)
        if ey.dtype.kind not in "iu":
            raise ValueError(f"profile: eval_data's labels must be integers, got {ey.dtype}")
    first = next(iter(model.parameters()), None)
    if first is None:
        first = next(iter(model.buffers()), None)
    device = backend.device_of(first._data) if first is not None else backend.CPU
    sync = device.synchronize
    is_quantized = any(isinstance(m, quant.QuantLinear) for m in model.modules())
    report = ProfileReport(model=type(model).__name__, input_shape=list(x.shape[1:]), device=str(device),
                           machine=machine.describe([ember.get_num_threads()]), batch_sizes=sizes,
                           layer_batch=len(x))
    made = {}
    bar = Progress(len(variants) * 4 + len(sizes), "ember profile", enabled=progress if progress is not None else True)
    # The profile leaves the model as it found it: mode, gradients and buffers (the training steps
    # move BatchNorm's running statistics).
    restore_modes = nn.saved_modes(model)
    grads = [(p, p.grad) for p in model.parameters()]
    for p, _ in grads:  # the steps' gradients start afresh, not summed into the caller's
        p.grad = None
    buffers = [(b, b._data.copy()) for b in model.buffers()]
    try:
        for name in variants:
            if is_quantized and name != "fp32":
                report.skipped[name] = "the model is already quantized: it is profiled as it is"
                continue
            try:
                made[name] = _variant_model(model, name)
            except ValueError as exc:
                report.skipped[name] = str(exc)
        for name, (m, policy) in made.items():
            train = backward and name in TRAINABLE and not is_quantized and any(True for _ in m.parameters())
            bar.step(f"{name}: layers")
            layers, step_s = _layer_profile(m, policy, tensor(x, device=device), train, sync, layer_steps)
            bar.step(f"{name}: latency")
            one = tensor(x[:1], device=device)
            m.eval()

            def call(m=m, policy=policy, one=one):
                with no_grad(), policy():
                    m(one)

            call()
            samples = np.asarray(sample_calls(call, 0.0, repeats, repeats, time.perf_counter, sync))
            bar.step(f"{name}: memory")
            big = tensor(_batch(x, sizes[-1]), device=device)

            def forward_big(m=m, policy=policy, big=big):
                with no_grad(), policy():
                    m(big)
                sync()

            peak, added = peak_rss(forward_big)
            bar.step(f"{name}: accuracy")
            record = {"layers": layers, "step_s": step_s, "trained": train,
                      "latency_s": {"p50": float(np.percentile(samples, 50)), "p90": float(np.percentile(samples, 90)),
                                    "p99": float(np.percentile(samples, 99)), "calls": int(len(samples))},
                      "throughput": [], "model_bytes": sum(_nbytes(p) for p in m.parameters()) +
                      sum(_nbytes(b) for b in m.buffers()),
                      "peak_rss_bytes": peak, "forward_added_bytes": added,
                      "host_cache_bytes": int(ember.host_cache_info()["cached_bytes"]),
                      "accuracy": _accuracy(m, policy, ex.astype(np.float32, copy=False), ey, device)
                      if eval_data is not None else None}
            report.variants[name] = record
        for b in sizes:
            bar.step(f"throughput at batch {b}")
            xb = tensor(_batch(x, b), device=device)

            def forward(m, policy):
                def run():
                    with no_grad(), policy():
                        m(xb)
                return run

            timings = measure({name: forward(m, policy) for name, (m, policy) in made.items()},
                              **{"rounds": 3, "min_time": 0.02, "settle": 0.05, "sync": sync, **timing})
            for name, t in timings.items():
                report.variants[name]["throughput"].append({"batch": b, "seconds": t.median,
                                                            "samples_per_s": b / t.median if t.median > 0 else None,
                                                            "spread": t.spread})
    finally:
        bar.close()
        restore_modes()
        for p, g in grads:
            p.grad = g
        for b, saved in buffers:
            b._data[...] = saved
            b._bump()
    return report


def _fmt_s(seconds):
    if seconds is None:
        return "-"
    return f"{seconds * 1e3:.3g} ms" if seconds >= 1e-4 else f"{seconds * 1e6:.3g} us"


def _fmt_bytes(n):
    if n is None:
        return "-"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


def _grid(head, rows):
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def table(data: dict) -> str:
    """The profile as text: each variant's layers, then the variants side by side."""
    out = [f"{data['model']} on inputs {tuple(data['input_shape'])}, {data['device']}; "
           f"{data['machine']['cpu_model']}, ISA {data['machine']['isa']}, {data['machine']['threads'][0]} threads"]
    for name, v in data["variants"].items():
        out.append("")
        what = "forward + backward of the outputs' sum" if v["trained"] else "forward (inference)"
        out.append(f"{name}: per layer at batch {data['layer_batch']}, {what}; step {_fmt_s(v['step_s'])}")
        rows = [[l["name"], l["kind"], "x".join(map(str, l["output_shape"])), _fmt_s(l["forward_s"]),
                 _fmt_s(l["backward_s"]), f"{l['flops_forward'] / 1e6:.3g}", _fmt_bytes(l["bytes_forward"]),
                 _fmt_bytes(l["param_bytes"]), _fmt_bytes(l["activation_bytes"]), f"{100 * l['share']:.1f}%"]
                for l in v["layers"]]
        out.append(_grid(["layer", "kind", "output", "forward", "backward", "MFLOP fwd", "bytes fwd", "params",
                          "activation", "of step"], rows))
    out.append("")
    head = ["variant", "p50 batch 1", "p90", "p99"] + [f"samples/s @{b}" for b in data["batch_sizes"]] + \
           ["model", "peak RSS (forward's share)", "host cache", "accuracy"]
    rows = []
    for name, v in data["variants"].items():
        lat = v["latency_s"]
        rate = {t["batch"]: t["samples_per_s"] for t in v["throughput"]}
        rows.append([name, _fmt_s(lat["p50"]), _fmt_s(lat["p90"]), _fmt_s(lat["p99"])] +
                    [f"{rate[b]:,.0f}" if rate.get(b) else "-" for b in data["batch_sizes"]] +
                    [_fmt_bytes(v["model_bytes"]),
                     f"{_fmt_bytes(v['peak_rss_bytes'])} (+{_fmt_bytes(v['forward_added_bytes'])})"
                     if v["peak_rss_bytes"] is not None else "-", _fmt_bytes(v["host_cache_bytes"]),
                     f"{100 * v['accuracy']:.2f}%" if v["accuracy"] is not None else "-"])
    out.append(_grid(head, rows))
    for name, reason in data["skipped"].items():
        out.append(f"skipped {name}: {reason}")
    return "\n".join(out)
