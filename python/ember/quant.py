"""Quantized inference: int8 and int4 weights on Ember's integer kernels, and one-call
post-training quantization of a model with a report of what it gained and what it cost.

Formats (see ``csrc/ops/qmatmul/qmatmul.h`` for the exact arithmetic):

- **int8 (W8A8)**: symmetric weights in [-127, 127], one float32 scale per output channel;
  activations quantized to int8 inside each call, one scale per row.
- **int8 in groups** (``bits=8, group_size=32``; any multiple of 8 works): symmetric weights in
  [-127, 127], one 16-bit scale per output channel and group of ``group_size`` inputs (8.5 bits
  per weight at 32, the size of llama.cpp's q8_0); activations quantized per row and group. The
  scale is an unsigned float with 6 exponent and 10 mantissa bits ("e6m10": fp16's precision over
  2^-31 to 2^33), chosen per group near max|w| / 127 to minimise the rounding error: on Gaussian
  weights 4.9e-3 relative error against q8_0's 5.3e-3, and products 4% more accurate than q8_0's.
- **int4 (W4A8)**: symmetric weights in [-7, 7], one float32 scale per output channel and group
  of ``group_size`` consecutive inputs (32 by default; 64 and 128 too; any multiple of 8
  works), two values per byte; activations quantized to int8 per row and group. Each group's
  scale is chosen among a few clipping levels to minimise its rounding error.
- **int4 with a codebook** (``codebook=True``, W4A8): 4.5 bits per weight, the size of
  llama.cpp's q4_K and more accurate than it. Each weight is a 4-bit index into a fixed
  non-uniform 16-level codebook, times a signed 6-bit scale per 16 inputs, times a float32
  scale per 256 inputs; activations quantized to int8 per row and 256 inputs. On Gaussian
  weights its relative error is 6.4e-2, against 9.2e-2 for int4 in groups of 32 (5 bits).

You pass float32 activations and get float32 outputs; the bias is added in the epilogue. When K
is not a multiple of the group size (or of 4 for int8) the weights are padded with zeros, which
changes nothing in the result. A weight is packed once, at quantization, into the layout the
kernels read (blocks of 16 output channels interleaved by 4 or 8 inputs).
"""

from __future__ import annotations

import json

import numpy as np

from . import _check, _quant_codebook, backend, checkpoint, nn
from ._quant_report import QuantReport, _paired_seconds, _score
from ._quant_weight import (GROUP_SIZES, LAYOUT, QuantizedWeight, _check_bits_group, _format_args, _int8_problems,
                            e6m10_to_float, packed_sizes, quantize_weight)
from .autograd import Function, no_grad
from .tensor import Tensor
from .factories import full, ones, zeros

class _QuantLinearFn(Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        return weight.matmul(x, bias)

    @staticmethod
    def backward(ctx, g):
        raise RuntimeError("QuantLinear is for inference only: it has no backward. Train the float model, "
                           "then quantize it")


class QuantLinear(nn.Module):
    """An inference-only Linear whose weight is quantized (int8 or int4). Its state_dict holds
    ``weight_data`` (int8 / uint8), ``weight_scales`` (float32; uint8 bytes for grouped int8's
    16-bit scales, little-endian, and for the codebook format's), ``weight_colsum`` (int8 per
    channel only) and ``bias``; ``bits``, ``group_size`` and ``codebook`` are fixed at
    construction."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, bits: int = 8,
                 group_size: int | None = None, codebook: bool = False):
        super().__init__()
        self.group_size = _check_bits_group(bits, group_size, codebook)
        in_features = _check.integer(in_features, "QuantLinear: in_features", 1, 65536)  # the kernels' K
        out_features = _check.integer(out_features, "QuantLinear: out_features", 1)
        self.in_features, self.out_features, self.bits = in_features, out_features, bits
        self.codebook = bool(codebook)
        # A zero weight, packed: int8 zeros (stored as 128 in groups; int4 zeros are 8 in each
        # nibble), scales 1 (the codebook format's: float scales 0).
        sizes = packed_sizes(out_features, in_features, bits, self.group_size, codebook)
        data_type, data_size = sizes["data"]
        self.register_buffer("weight_data", full(data_size, 0 if bits == 8 and self.group_size is None else
                                                 128 if bits == 8 else 0x88, dtype=data_type))
        scale_type, scale_size = sizes["scales"]
        if scale_type == np.uint16:  # as bytes; e6m10 1.0 is 31 << 10, bytes 0x00 0x7C
            scales = zeros(2 * scale_size, dtype=np.uint8)
            with no_grad():
                scales[1::2] = 0x7C
        else:
            scales = zeros(scale_size, dtype=np.uint8) if codebook else ones(scale_size)
        self.register_buffer("weight_scales", scales)
        self.register_buffer("weight_colsum", zeros(sizes["colsum"][1], dtype=np.int32) if "colsum" in sizes else None)
        self.register_buffer("bias", zeros(out_features) if bias else None)

    @classmethod
    def from_linear(cls, linear, bits: int = 8, group_size: int | None = None, codebook: bool = False) -> QuantLinear:
        """Quantize a trained ``nn.Linear``."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"QuantLinear.from_linear needs an nn.Linear, got {type(linear).__name__}")
        return cls.from_weight(linear.weight, linear.bias, bits, group_size, codebook)

    @classmethod
    def from_weight(cls, weight, bias=None, bits: int = 8, group_size: int | None = None,
                    codebook: bool = False) -> QuantLinear:
        """Quantize the map ``x @ weight.T + bias`` of a trained (out_features, in_features)
        ``weight`` (and ``bias`` or None), wherever a module keeps it."""
        out_features, in_features = weight.shape
        if bias is not None:
            bias = bias.detach()._host() if isinstance(bias, Tensor) else np.asarray(bias)
            if bias.shape != (out_features,):
                raise ValueError(f"QuantLinear.from_weight: bias must have shape ({out_features},) like the "
                                 f"weight's outputs, got {bias.shape}")
            if bias.dtype.kind not in "fiu":
                raise TypeError(f"QuantLinear.from_weight: bias must hold numbers, got {bias.dtype}")
        q = cls(in_features, out_features, bias is not None, bits, group_size, codebook)
        qw = quantize_weight(weight, bits, group_size, codebook)
        # where the weight is (a NumPy array has no .device before NumPy 2)
        q.to(weight.device if isinstance(weight, Tensor) else
             backend.device_of(weight).name if backend.is_array(weight) else "cpu")
        with no_grad():
            q.weight_data[...] = qw.data
            q.weight_scales[...] = qw.scales.view(np.uint8) if qw.scales.dtype == np.uint16 else qw.scales
            if qw.colsum is not None:
                q.weight_colsum[...] = qw.colsum
            if bias is not None:
                q.bias[...] = backend.device_of(q.bias._data).asarray(bias)
        return q

    def check_loaded_state(self, state: dict) -> list:
        """Quantized weights from a file are checked, not trusted: float scales finite and > 0
        (the codebook format's >= 0), int8 values in [-127, 127] (the kernels' integer bounds),
        and each channel's column sum equal to the one its values give (a wrong one would make
        the fast path silently disagree)."""
        problems = []
        scales = state.get("weight_scales")
        if self.codebook:
            if scales is not None and scales.dtype == np.uint8 and scales.size == self.weight_scales.numel():
                problems += _quant_codebook.scale_problems(scales, self.out_features, self.in_features)
            return problems
        if self.bits == 8 and self.group_size is not None:  # any e6m10 bits are a valid scale
            data = state.get("weight_data")
            if data is not None and data.dtype == np.uint8 and data.size and int(data.min()) < 1:
                problems.append("weight_data: int8 weights must lie in [-127, 127] (bytes 1 to 255), found -128 "
                                "(byte 0)")
            return problems
        if scales is not None and not (np.isfinite(scales) & (scales > 0)).all():
            bad = scales[~(np.isfinite(scales) & (scales > 0))]
            problems.append(f"weight_scales: scales must be finite and > 0, found {bad[:3].tolist()}")
        data, colsum = state.get("weight_data"), state.get("weight_colsum")
        if self.bits == 8 and (data is not None or colsum is not None):  # one loaded alone meets the other held
            data = self.weight_data._host() if data is None else data
            colsum = self.weight_colsum._host() if colsum is None and self.weight_colsum is not None else colsum
            if colsum is not None:
                problems += _int8_problems(data, colsum, self.in_features)
        return problems

    @property
    def qweight(self) -> QuantizedWeight:
        """The packed weight over this module's buffers (checked: scales finite and > 0)."""
        colsum = self.weight_colsum._data if self.weight_colsum is not None else None
        scales = self.weight_scales._data
        if self.bits == 8 and self.group_size is not None:
            scales = scales.view(np.uint16)  # little-endian bytes, as every machine Ember runs on
        return QuantizedWeight(self.bits, (self.out_features, self.in_features), self.weight_data._data,
                               scales, colsum, self.group_size, codebook=self.codebook, check=False)

    def forward(self, x):
        if not isinstance(x, Tensor):
            raise TypeError(f"QuantLinear: input must be a Tensor, got {type(x).__name__}")
        return _QuantLinearFn.apply(x, self.qweight, self.bias)

    def extra_repr(self) -> str:
        g = _format_args(self.bits, self.group_size, self.codebook)
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, bits={self.bits}{g}")


nn.register(QuantLinear, name="quant.QuantLinear")


def _replace_linears(model, bits, group_size, codebook, convert: bool) -> list:
    """Swap every nn.Linear below ``model`` for a QuantLinear (quantized from it when
    ``convert``, else an empty shell to load a checkpoint into); returns (float weight,
    QuantLinear) for each QuantLinear made. A module that applies a weight as a linear map
    outside an nn.Linear (MultiheadAttention's stacked input projection, a GPT's tied output
    head) offers it through ``quantize_projections(make)``: ``make(weight, bias)`` gives the
    QuantLinear to use instead.

    Sharing is kept: a Linear reached twice (``self.b = self.a``) becomes one QuantLinear, and
    layers whose weight is one Parameter share one packed weight (each keeps its own bias)."""
    made = []  # (float weight, QuantLinear)
    packed = {}  # id(float weight) -> the first QuantLinear made from it
    swapped = {}  # id(nn.Linear) -> its QuantLinear
    visited = set()

    def make(weight, bias):
        q = (QuantLinear.from_weight(weight, bias, bits, group_size, codebook) if convert else
             QuantLinear(weight.shape[1], weight.shape[0], bias is not None, bits, group_size, codebook))
        first = packed.setdefault(id(weight), q)
        if first is not q:  # a weight another layer uses too: one packed copy for both
            for name in ("weight_data", "weight_scales", "weight_colsum"):
                q._buffers[name] = first._buffers[name]
        made.append((weight, q))
        return q

    def visit(module):
        visited.add(id(module))
        for name, child in list(module._modules.items()):
            if type(child) is nn.Linear:  # a subclass may compute more than x @ wᵀ + b: it stays float
                if id(child) not in swapped:
                    swapped[id(child)] = make(child.weight, child.bias)
                module._modules[name] = swapped[id(child)]
            elif child is not None and id(child) not in visited:
                visit(child)
        hook = getattr(module, "quantize_projections", None)
        if hook is not None:
            hook(make)

    visit(model)
    return made


def quantized_structure(model, bits: int = 8, group_size: int | None = None, codebook: bool = False):
    """``model`` with every Linear replaced by an empty QuantLinear of the same shape, in place:
    the structure a quantized checkpoint loads into."""
    group_size = _check_bits_group(bits, group_size, codebook)
    _replace_linears(model, bits, group_size, codebook, convert=False)
    return model.eval()


def quantize(model, bits: int = 8, group_size: int | None = None, calibration=None, eval_data=None,
             codebook: bool = False):
    """A copy of ``model`` (in evaluation mode) with every ``nn.Linear`` replaced by a
    ``QuantLinear`` (and the projections that modules such as ``nn.MultiheadAttention`` and
    ``ember.gpt.GPT`` keep outside one), and a ``QuantReport``: bytes of those layers' weights before and after,
    each tensor counted once, the measured speed-up of the model's forward on ``calibration``
    (a batch of inputs; the first 256 inputs of ``eval_data`` when not given), and, with
    ``eval_data=(x, y)``, the accuracy (class labels: the argmax of several outputs, or a single
    logit > 0 for 0/1 labels) or mean squared error before and after. Activations are
    quantized dynamically, so ``calibration`` is only used for the timing. A model with a
    ``compute_loss(x, y)`` (such as ``ember.gpt.GPT``) is scored by that loss instead.
    ``group_size`` picks int4's groups (32 by default) or, with ``bits=8``, grouped int8 (one
    scale per channel without it). ``bits=4, codebook=True`` picks the int4 codebook format (4.5
    bits per weight, more accurate than groups of 32; a ``group_size`` with it is a ValueError).

    Shared weights stay shared: a Linear reached twice becomes one QuantLinear, and layers that
    use one weight Parameter share one packed copy of it. A weight that a module left in float
    also uses (an embedding tied to the output head, as in ``ember.gpt.GPT``) is quantized for
    the layer, whose product then runs on the integer kernels, and kept in float32 for the other
    module: the report counts both after quantization and says so in its notes."""
    import copy

    group_size = _check_bits_group(bits, group_size, codebook)
    if not isinstance(model, nn.Module):
        raise TypeError(f"quantize: model must be an ember.nn.Module, got {type(model).__name__}")
    linears = [m for m in model.modules() if type(m) is nn.Linear]
    kept = [name for name, m in model.named_modules() if isinstance(m, nn.Linear) and type(m) is not nn.Linear]
    if not linears:
        raise ValueError("quantize: the model has no nn.Linear layer to quantize" +
                         (f" ({', '.join(kept)} subclass it, and a subclass stays float32)" if kept else ""))
    restore_modes = nn.saved_modes(model)
    model.eval()
    try:
        qmodel = copy.deepcopy(model)
        made = _replace_linears(qmodel, bits, group_size, codebook, convert=True)
        qmodel.eval()
        # Each tensor once; a float weight the model still holds (a tied embedding's) counts after too.
        floats = {id(w): w for w, _ in made}
        packed = {id(q.weight_data): q for _, q in made}
        held = {id(p): name for name, p in qmodel.named_parameters() if id(p) in floats}
        before = sum(w._data.nbytes for w in floats.values())
        after = sum(q.qweight.nbytes for q in packed.values()) + sum(floats[i]._data.nbytes for i in held)
        report = QuantReport(bits, group_size, len(made), before, after, codebook=bool(codebook))
        if held:
            report.notes.append(f"kept in float32 as well: {', '.join(held.values())} (another module uses it too, "
                                "as a tied embedding does), so the quantized copy adds its bytes")
        if kept:
            report.notes.append(f"left in float32: {', '.join(kept)} (subclasses of nn.Linear, whose forward may do "
                                "more than the product a QuantLinear computes)")
        if eval_data is not None:
            if not isinstance(eval_data, (tuple, list)) or len(eval_data) != 2:
                raise ValueError("quantize: eval_data must be (x, y)")
            x_eval = eval_data[0]._data if isinstance(eval_data[0], Tensor) else np.asarray(eval_data[0])
            report.metric, report.before = _score(model, x_eval, eval_data[1])
            _, report.after = _score(qmodel, x_eval, eval_data[1])
            if calibration is None:
                calibration = x_eval[:256]
        if calibration is not None:
            batch = calibration._data if isinstance(calibration, Tensor) else np.asarray(calibration)
            report.seconds_before, report.seconds_after, report.ratios = _paired_seconds(model, qmodel, batch)
            if report.speedup < 1.0:
                report.notes.append(
                    f"the quantized forward is slower here: at {len(batch)} inputs per call, Linear layers holding "
                    f"{before / 1e6:.2f} MB of float32 weights are too small for the bytes saved to outweigh "
                    "quantizing the activations in every call; int8/int4 pay off on larger layers, which are "
                    "bound by reading their weights")
    finally:
        restore_modes()
    return qmodel, report


__all__ = ["GROUP_SIZES", "LAYOUT", "e6m10_to_float", "QuantLinear", "QuantReport", "QuantizedWeight", "quantize", "quantize_weight",
           "quantized_structure"]


# ----------------------------------------------------------------------------- checkpoints


def _describe(model):
    """The "ember.quant" metadata of a model: the packed layout and each quantized layer's bits
    and group size (None for a float model)."""
    layers = {name: {"bits": m.bits, "group_size": m.group_size, **({"codebook": True} if m.codebook else {})}
              for name, m in model.named_modules() if isinstance(m, QuantLinear)}
    return json.dumps({"layout": LAYOUT, "layers": layers}) if layers else None


def _check_section(path, model, text) -> None:
    """A quantized checkpoint loads only into layers quantized the same way: say which differ."""
    saved = json.loads(text) if text is not None else {"layers": {}}
    if not isinstance(saved, dict) or not isinstance(saved.get("layers"), dict):
        raise ValueError("metadata ember.quant must hold a JSON object with 'layers'")
    if saved["layers"] and saved.get("layout") != LAYOUT:
        raise ValueError(f"{path} holds quantized weights in layout {saved.get('layout')!r}; this Ember reads "
                         f"{LAYOUT!r}")
    mine = json.loads(_describe(model) or '{"layers": {}}')["layers"]
    if saved["layers"] == mine:
        return
    if not mine:
        kinds = sorted({f"int{v.get('bits')}" for v in saved["layers"].values() if isinstance(v, dict)})
        raise ValueError(f"{path} holds a quantized model ({', '.join(kinds)} layers: "
                         f"{', '.join(saved['layers'])}); load it into ember.quant.quantized_structure(model, "
                         f"bits=...) of the same float model")
    diff = [f"{name}: file {saved['layers'].get(name)}, model {mine.get(name)}"
            for name in sorted(set(saved["layers"]) | set(mine)) if saved["layers"].get(name) != mine.get(name)]
    raise ValueError(f"{path}: the quantized layers differ from the model's: " + "; ".join(diff))


checkpoint.register_section("ember.quant", _describe, _check_section)
