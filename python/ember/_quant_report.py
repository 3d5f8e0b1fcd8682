"""What post-training quantization changed, measured: ``QuantReport`` and the scoring and
paired timing behind it (``ember.quant.quantize`` fills one in)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .autograd import no_grad
from .tensor import Tensor
from .factories import tensor


@dataclass
class QuantReport:
    """What quantization changed: the bytes of the weights it touched, as the model holds them
    (each tensor once: before, the float weights of the quantized layers; after, their packed
    forms plus any of those float weights the model still holds for another module, so the
    difference is what the model's size changed), the forward's speed on a batch, and the
    accuracy (or loss) on evaluation data when given."""

    bits: int
    group_size: int | None
    layers: int
    bytes_before: int
    bytes_after: int
    seconds_before: float | None = None
    seconds_after: float | None = None
    ratios: list | None = None  # the speed-up of each alternating round
    metric: str | None = None
    before: float | None = None
    after: float | None = None
    notes: list = field(default_factory=list)
    codebook: bool = False

    @property
    def compression(self) -> float:
        return self.bytes_before / max(self.bytes_after, 1)

    @property
    def speedup(self) -> float | None:
        """The median over alternating rounds of (float forward time / quantized forward time)."""
        if self.ratios:
            return float(np.median(self.ratios))
        if self.seconds_before is None or not self.seconds_after:
            return None
        return self.seconds_before / self.seconds_after

    def __str__(self) -> str:
        kind = f"int{self.bits}" + (" (codebook, 4.5 bits per weight)" if self.codebook else
                                    f" (groups of {self.group_size})" if self.group_size is not None else "")
        lines = [f"quantized {self.layers} Linear layer(s) to {kind}",
                 f"  weights: {self.bytes_before / 1e6:.3f} MB -> {self.bytes_after / 1e6:.3f} MB "
                 f"({self.compression:.2f}x smaller)"]
        if self.speedup is not None:
            spread = ""
            if self.ratios:
                lo, hi = np.percentile(self.ratios, [25, 75])
                spread = f"; middle half of {len(self.ratios)} alternating rounds {lo:.2f}-{hi:.2f}x"
            lines.append(f"  forward: {self.seconds_before * 1e3:.3f} ms -> {self.seconds_after * 1e3:.3f} ms "
                         f"(median speed-up {self.speedup:.2f}x{spread})")
        if self.metric is not None:
            change = self.after - self.before
            if self.metric == "accuracy":
                lines.append(f"  accuracy: {self.before:.4f} -> {self.after:.4f} ({100 * change:+.2f} points)")
            else:
                lines.append(f"  {self.metric}: {self.before:.6g} -> {self.after:.6g} ({change:+.3g})")
        lines.extend(f"  {n}" for n in self.notes)
        return "\n".join(lines)


def _on_model_device(model, x) -> Tensor:
    """Inputs ``x`` as a tensor where the model's weights are: float32, or int64 for integer
    inputs (a language model's token ids)."""
    first = next(iter(model.parameters()), None)
    if first is None:
        first = next(iter(model.buffers()))
    x = np.asarray(x)
    return tensor(x.astype(np.int64 if x.dtype.kind in "iu" else np.float32), device=first.device)


def _paired_seconds(model, qmodel, x, rounds=21):
    """Forward times of both models on ``x``, alternating which runs first each round (so that
    drifting clocks and caches treat them alike): each one's median, and each round's ratio."""
    from .bench.harness import measure

    xt = _on_model_device(model, x)

    def forward(m):
        def run():
            with no_grad():
                m(xt)
        return run

    timings = measure({"before": forward(model), "after": forward(qmodel)}, rounds=rounds, min_time=0.0,
                      min_calls=1, settle=0.0)
    before, after = (np.asarray(timings[k].rounds) for k in ("before", "after"))
    return float(np.median(before)), float(np.median(after)), (before / after).tolist()


def _judge(out, y, who: str):
    """How a model's outputs ``out`` (an array, one row per sample) are scored against targets
    ``y``, the one rule of every report: ``('labels', predicted labels)`` when ``y`` holds class
    labels -- integer labels (N,) with (N, C) scores, C >= 2, predicted by each row's argmax;
    0/1 labels ((N,) or (N, 1), integers or bools) with one logit per sample ((N,) or (N, 1),
    before any sigmoid) predicted 1 where the logit is > 0 -- else ``('mse', mean squared error)``
    (float targets, or integers of another shape: values to regress; (N,) targets of (N, 1)
    outputs are the same values, not an N x N grid). ``who`` names the caller in errors."""
    n = len(out) if out.ndim else 0
    if y.dtype.kind in "iub" and out.ndim in (1, 2) and y.shape[:1] == (n,):
        if out.ndim == 2 and out.shape[1] >= 2 and y.shape == (n,):
            return "labels", out.argmax(axis=1)
        if out.size == n and y.size == n and np.isin(y, (0, 1)).all():
            return "labels", (out.reshape(y.shape) > 0).astype(np.int64)
    if y.shape != out.shape:
        if y.size != out.size:
            raise ValueError(f"{who}: eval_data's targets have shape {y.shape}, the model's outputs {out.shape}")
        y = y.reshape(out.shape)
    return "mse", float(np.mean((out - y) ** 2))


def _score(model, x, y):
    """('loss', the model's own compute_loss) for a model that defines one (a language model),
    else ('accuracy', value) or ('mse', value) as ``_judge`` decides."""
    if callable(getattr(model, "compute_loss", None)):
        with no_grad():
            return "loss", float(model.compute_loss(_on_model_device(model, x), np.asarray(y)).item())
    with no_grad():
        out = model(_on_model_device(model, x))._host()
    y = np.asarray(y._data if isinstance(y, Tensor) else y)
    kind, value = _judge(out, y, "quantize")
    if kind == "labels":
        return "accuracy", float((value == y.reshape(value.shape)).mean())
    return "mse", value
