"""Export a model to ONNX (the optional extra ``ember[onnx]``), to run it in another runtime.

``export(model, example_input, path)`` writes a ``.onnx`` file of an ``nn.Sequential`` model (nested
Sequentials included; not a Sequential subclass with its own ``forward``, whose computation is not
the chain of its layers): every layer Ember ships that ONNX can express, each as the ONNX operator
that computes what Ember computes --

- ``Linear`` as ``Gemm`` (``MatMul`` on inputs of rank > 2); ``Conv2d`` as ``Conv`` (stride,
  padding -- ``'same'`` resolved to explicit pads --, dilation, groups); ``MaxPool2d`` /
  ``AvgPool2d`` as ``MaxPool`` / ``AveragePool`` (``ceil_mode`` with Ember's output size and
  divisor: see ``_pool``);
  ``AdaptiveAvgPool2d`` as ``GlobalAveragePool`` or an exact ``AveragePool``;
- ``BatchNorm1d/2d`` folded into the ``Conv`` or ``Linear`` before it (eval mode's normalisation
  is an affine map of that layer's outputs), else as ``BatchNormalization``; ``LayerNorm`` as
  ``LayerNormalization``;
- ReLU, LeakyReLU, Sigmoid, Tanh, GELU (``Gelu``), SiLU, Softmax; ``Flatten`` as ``Flatten`` or
  ``Reshape``; ``Dropout`` and ``Identity`` dropped (a deployed model runs in eval mode);
- int8 and int4 ``QuantLinear`` (``ember.quant``; not the int4 codebook format) as integer graphs with Ember's scales: the
  activations quantized per row (int8) or per row and group (int4) exactly as Ember does --
  ``round_half_even(x * (127 / max|x|))`` --, ``MatMulInteger`` on the int8 values and the
  weights' integers, then the float epilogue; an input of rank > 2 as the rows of its last axis.
  (ONNX's ``QuantizeLinear`` divides by the scale, which can round an integer differently;
  multiplying as Ember does gives the same integers.)

The graph passes ``onnx.checker`` with full shape inference; the input is named ``input`` and the
output ``output`` (or as given), with a symbolic batch dimension when ``dynamic_batch``. A layer
ONNX cannot express is an error naming it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DEFAULT_OPSET = 21


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("ONNX export needs the onnx package: pip install 'ember[onnx]'") from None
    return onnx


def _layers(model, prefix=""):
    """(name, module) of the model's layers in order, Sequentials flattened (not a Sequential
    subclass with its own forward: that is one layer, with no ONNX form)."""
    from .compress.prune import is_chain

    if is_chain(model):
        out = []
        for name, child in model.named_children():
            out += _layers(child, f"{prefix}{name}.")
        return out
    return [(prefix[:-1] or type(model).__name__, model)]


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


class _Graph:
    """The nodes, initializers and names of the graph being built."""

    def __init__(self, onnx):
        self.onnx, self.helper = onnx, onnx.helper
        self.nodes, self.initializers, self.names = [], [], set()

    def name(self, base):
        name, i = base, 1
        while name in self.names:
            i += 1
            name = f"{base}_{i}"
        self.names.add(name)
        return name

    def const(self, base, array):
        name = self.name(base)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op, inputs, layer, doc, outputs=1, **attrs):
        outs = [self.name(f"{layer}.{op.lower()}") for _ in range(outputs)]
        self.nodes.append(self.helper.make_node(op, list(inputs), outs, name=self.name(f"{layer}/{op}"),
                                                doc_string=doc, **attrs))
        return outs[0] if outputs == 1 else outs


def _host(t):
    """A parameter's or buffer's values as a host array (None stays None)."""
    return None if t is None else t.detach()._host()


def _fold(weight, bias, bn):
    """(weight, bias) of a Conv2d or Linear followed by BatchNorm in eval mode: the normalisation is
    y = (z - mean) / sqrt(var + eps) * gamma + beta, an affine map of each output channel."""
    mean, var = _host(bn.running_mean).astype(np.float64), _host(bn.running_var).astype(np.float64)
    gamma = _host(bn.weight).astype(np.float64) if bn.affine else np.ones_like(mean)
    beta = _host(bn.bias).astype(np.float64) if bn.affine else np.zeros_like(mean)
    scale = gamma / np.sqrt(var + bn.eps)
    w = weight.astype(np.float64) * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
    b = ((bias.astype(np.float64) if bias is not None else 0.0) - mean) * scale + beta
    return w.astype(np.float32), b.astype(np.float32)


def _conv_pads(layer, in_hw):
    if isinstance(layer.padding, str):
        if layer.padding == "valid":
            return [0, 0, 0, 0]
        pads = []  # 'same' (stride 1): the extra pixel of an odd total at the end, as Ember pads
        for k, d in zip(layer.kernel_size, layer.dilation):
            total = d * (k - 1)
            pads.append((total // 2, total - total // 2))
        return [pads[0][0], pads[1][0], pads[0][1], pads[1][1]]
    ph, pw = layer.padding
    return [ph, pw, ph, pw]


def _reduce_max(g, x, axis, name, doc, opset):
    """ReduceMax over one axis, kept: its axes are an input from opset 18, an attribute before."""
    if opset >= 18:
        return g.node("ReduceMax", [x, g.const(f"{name}.axis{axis}", np.array([axis], np.int64))], name, doc,
                      keepdims=1)
    return g.node("ReduceMax", [x], name, doc, axes=[axis], keepdims=1)


def _quant_linear(g, x, layer, name, doc, x_shape, opset):
    """An int8 (per channel or in groups) or int4 QuantLinear: Ember's integers and scales in an
    integer ONNX graph. An input of rank > 2 is computed as Ember does: as (rows, K), each row
    quantized alone, then reshaped back to (..., N)."""
    qw = layer.qweight
    n, k = qw.shape
    values = qw._values()  # (N, K) int8
    bias = _host(layer.bias) if layer.bias is not None else None
    lead = None
    if len(x_shape) > 2:
        lead = g.node("Shape", [x], name, doc, end=-1)  # the input's (..., K) without K
        x = g.node("Reshape", [x, g.const(f"{name}.rows_shape", np.array([-1, k], np.int64))], name, doc)
    if qw.group_size is None:
        absmax = _reduce_max(g, g.node("Abs", [x], name, doc), 1, name, doc, opset)  # (rows, 1)
        q, sx = _quantize_rows(g, x, absmax, name, doc)
        acc = g.node("MatMulInteger", [q, g.const(f"{name}.weight_q", values.T.copy())], name, doc)
        sw = qw.scales[:n].astype(np.float32)
        # (acc * sw) * sx, not acc * (sx * sw): ONNX Runtime's MatMulIntegerToFloat fusion rewrites the
        # latter pattern and, with int8 activations, computes it wrongly (onnxruntime 1.32).
        y = g.node("Mul", [g.node("Mul", [g.node("Cast", [acc], name, doc, to=g.onnx.TensorProto.FLOAT),
                                          g.const(f"{name}.weight_scale", sw)], name, doc), sx], name, doc)
    else:
        gs = qw.group_size
        groups = -(-k // gs)
        kp = groups * gs
        if kp != k:  # zeros past K, as Ember pads: they change no group's largest magnitude
            x = g.node("Pad", [x, g.const(f"{name}.pads", np.array([0, 0, 0, kp - k], np.int64))], name, doc)
        xg = g.node("Reshape", [x, g.const(f"{name}.groups_shape", np.array([0, groups, gs], np.int64))], name, doc)
        absmax = _reduce_max(g, g.node("Abs", [xg], name, doc), 2, name, doc, opset)  # (rows, groups, 1)
        q, sx = _quantize_rows(g, xg, absmax, name, doc)
        qt = g.node("Transpose", [q], name, doc, perm=[1, 0, 2])  # (groups, rows, gs)
        wq = np.zeros((n, kp), np.int8)
        wq[:, :k] = values
        w = wq.reshape(n, groups, gs).transpose(1, 2, 0).copy()  # (groups, gs, N)
        acc = g.node("MatMulInteger", [qt, g.const(f"{name}.weight_q", w)], name, doc)  # (groups, rows, N)
        sw = qw.group_scales().T.reshape(groups, 1, n).astype(np.float32)
        sxt = g.node("Transpose", [sx], name, doc, perm=[1, 0, 2])  # (groups, rows, 1)
        scaled = g.node("Mul", [g.node("Cast", [acc], name, doc, to=g.onnx.TensorProto.FLOAT),
                                g.node("Mul", [sxt, g.const(f"{name}.weight_scale", sw)], name, doc)], name, doc)
        y = g.node("ReduceSum", [scaled, g.const(f"{name}.axis0", np.array([0], np.int64))], name, doc, keepdims=0)
    if bias is not None:
        y = g.node("Add", [y, g.const(f"{name}.bias", bias)], name, doc)
    if lead is not None:
        shape = g.node("Concat", [lead, g.const(f"{name}.out_features", np.array([n], np.int64))], name, doc, axis=0)
        y = g.node("Reshape", [y, shape], name, doc)
    return y


def _quantize_rows(g, x, absmax, name, doc):
    """(int8 q, float scale) with Ember's rule: scale = a / 127, q = round_half_even(x * (127 / a)),
    a row (or group) of zeros all zero."""
    tiny = g.const(f"{name}.tiny", np.array(np.finfo(np.float32).tiny, np.float32))
    inv = g.node("Div", [g.const(f"{name}.q127", np.array(127.0, np.float32)), g.node("Max", [absmax, tiny], name, doc)],
                 name, doc)
    scaled = g.node("Round", [g.node("Mul", [x, inv], name, doc)], name, doc)
    clipped = g.node("Clip", [scaled, g.const(f"{name}.qmin", np.array(-127.0, np.float32)),
                              g.const(f"{name}.qmax", np.array(127.0, np.float32))], name, doc)
    q = g.node("Cast", [clipped], name, doc, to=g.onnx.TensorProto.INT8)
    sx = g.node("Div", [absmax, g.const(f"{name}.d127", np.array(127.0, np.float32))], name, doc)
    return q, sx


def _pool(g, x, name, layer, doc, x_shape, y_shape):
    """MaxPool or AveragePool computing Ember's pooling, its output size included.

    With ceil_mode, Ember (as PyTorch) drops a last window that would start in the right padding,
    where ONNX's ceil rule keeps it; so the graph pools in floor mode, with the end padding that
    gives Ember's output size. Windows may then reach past Ember's padding, and ONNX Runtime takes
    no pad as large as the kernel (a dilated one can need it): for MaxPool all the padding is a Pad
    of -inf before it; for AveragePool counting Ember's padding (count_include_pad=True), that
    padding is a Pad of zeros, which its divisor counts, and the rest is padding it does not count."""
    from . import nn

    k = _pair(layer.kernel_size)
    s = _pair(layer.stride if layer.stride else layer.kernel_size)
    p = _pair(layer.padding)
    maxpool = isinstance(layer, nn.MaxPool2d)
    d = _pair(layer.dilation) if maxpool else (1, 1)
    count_pad = not maxpool and layer.count_include_pad
    end = list(p)
    if layer.ceil_mode:  # the end padding that makes floor((n + p + end - d(k-1) - 1) / s) + 1 Ember's size
        end = [max(0, (o - 1) * st + dd * (kk - 1) + 1 - n - pp)
               for o, st, dd, kk, n, pp in zip(y_shape[2:], s, d, k, x_shape[2:], p)]
        if maxpool or count_pad:
            real = end if maxpool else [min(e, pp) for e, pp in zip(end, p)]
            fill = np.array(-np.inf if maxpool else 0.0, np.float32)
            x = g.node("Pad", [x, g.const(f"{name}.pads", np.array([0, 0, *p, 0, 0, *real], np.int64)),
                               g.const(f"{name}.fill", fill)], name, doc)
            p, end, count_pad = (0, 0), [e - r for e, r in zip(end, real)], False
    attrs = dict(kernel_shape=list(k), strides=list(s), pads=[p[0], p[1], end[0], end[1]], ceil_mode=0)
    if maxpool:
        return g.node("MaxPool", [x], name, doc, dilations=list(d), **attrs)
    return g.node("AveragePool", [x], name, doc, count_include_pad=int(count_pad), **attrs)


def _convert(g, x, name, layer, x_shape, y_shape, nxt, opset):
    """ONNX nodes for one layer from tensor ``x``: (output name, whether ``nxt`` was folded in)."""
    from . import nn, quant

    doc = repr(layer)
    batchnorm = isinstance(nxt, (nn.BatchNorm1d, nn.BatchNorm2d)) and nxt.track_running_stats
    if isinstance(layer, nn.Linear):
        w, b = _host(layer.weight), _host(layer.bias)
        if batchnorm and len(x_shape) == 2:
            w, b = _fold(w, b, nxt)
        else:
            batchnorm = False
        if len(x_shape) == 2:
            inputs = [x, g.const(f"{name}.weight", w)] + ([g.const(f"{name}.bias", b)] if b is not None else [])
            return g.node("Gemm", inputs, name, doc, transB=1), batchnorm
        # Gemm takes matrices only: (..., K) @ W.T as MatMul with the weight stored transposed
        y = g.node("MatMul", [x, g.const(f"{name}.weight_t", w.T.copy())], name, doc)
        return (g.node("Add", [y, g.const(f"{name}.bias", b)], name, doc) if b is not None else y), False
    if isinstance(layer, nn.Conv2d):
        w, b = _host(layer.weight), _host(layer.bias)
        if batchnorm:
            w, b = _fold(w, b, nxt)
        inputs = [x, g.const(f"{name}.weight", w)] + ([g.const(f"{name}.bias", b)] if b is not None else [])
        return g.node("Conv", inputs, name, doc, kernel_shape=list(layer.kernel_size), strides=list(layer.stride),
                      pads=_conv_pads(layer, x_shape[2:]), dilations=list(layer.dilation), group=layer.groups), batchnorm
    if isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
        return _pool(g, x, name, layer, doc, x_shape, y_shape), False
    if isinstance(layer, nn.AdaptiveAvgPool2d):
        out = _pair(layer.output_size)
        h, w = x_shape[2:]
        if out == (1, 1):
            return g.node("GlobalAveragePool", [x], name, doc), False
        if h % out[0] or w % out[1]:
            raise ValueError(f"export: {name} ({doc}) on {h}x{w} inputs pools windows of different sizes, which ONNX "
                             "cannot express; use an output size that divides the input")
        k = [h // out[0], w // out[1]]
        return g.node("AveragePool", [x], name, doc, kernel_shape=k, strides=k), False
    if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
        if not layer.track_running_stats:
            raise ValueError(f"export: {name} ({doc}) normalises by each batch's own statistics (no running "
                             "statistics), which an exported model cannot reproduce")
        c = layer.num_features
        scale = _host(layer.weight) if layer.affine else np.ones(c, np.float32)
        bias = _host(layer.bias) if layer.affine else np.zeros(c, np.float32)
        return g.node("BatchNormalization", [x, g.const(f"{name}.weight", scale), g.const(f"{name}.bias", bias),
                                             g.const(f"{name}.running_mean", _host(layer.running_mean)),
                                             g.const(f"{name}.running_var", _host(layer.running_var))],
                      name, doc, epsilon=float(layer.eps)), False
    if isinstance(layer, nn.LayerNorm):
        shape = layer.normalized_shape
        scale = _host(layer.weight) if layer.weight is not None else np.ones(shape, np.float32)
        bias = _host(layer.bias) if layer.bias is not None else np.zeros(shape, np.float32)
        return g.node("LayerNormalization", [x, g.const(f"{name}.weight", scale), g.const(f"{name}.bias", bias)], name,
                      doc, axis=-len(shape), epsilon=float(layer.eps)), False
    if isinstance(layer, quant.QuantLinear):
        return _quant_linear(g, x, layer, name, doc, x_shape, opset), False
    if isinstance(layer, nn.LeakyReLU):
        return g.node("LeakyRelu", [x], name, doc, alpha=float(layer.negative_slope)), False
    if isinstance(layer, nn.Softmax):
        axis = nn.functional.legacy_softmax_dim(len(x_shape)) if layer.dim is None else int(layer.dim)
        return g.node("Softmax", [x], name, doc, axis=axis), False
    if isinstance(layer, nn.SiLU):
        return g.node("Mul", [x, g.node("Sigmoid", [x], name, doc)], name, doc), False
    if isinstance(layer, nn.GELU):
        if opset >= 20:
            return g.node("Gelu", [x], name, doc), False
        half = g.node("Mul", [x, g.const(f"{name}.half", np.array(0.5, np.float32))], name, doc)
        erf = g.node("Erf", [g.node("Mul", [x, g.const(f"{name}.rsqrt2", np.array(2 ** -0.5, np.float32))], name,
                                    doc)], name, doc)
        return g.node("Mul", [half, g.node("Add", [erf, g.const(f"{name}.one", np.array(1.0, np.float32))], name,
                                           doc)], name, doc), False
    simple = {nn.ReLU: "Relu", nn.Sigmoid: "Sigmoid", nn.Tanh: "Tanh"}
    for cls, op in simple.items():
        if isinstance(layer, cls):
            return g.node(op, [x], name, doc), False
    if isinstance(layer, nn.Flatten):
        ndim = len(x_shape)
        start, end = layer.start_dim % ndim, layer.end_dim % ndim
        if start == 0:
            raise ValueError(f"export: {name} ({doc}) flattens the batch dimension, which a model with a dynamic "
                             "batch cannot")
        if end == ndim - 1 and start == 1:
            return g.node("Flatten", [x], name, doc, axis=1), False
        shape = np.array([0] + list(y_shape[1:]), np.int64)  # 0: the batch, copied from the input
        return g.node("Reshape", [x, g.const(f"{name}.shape", shape)], name, doc), False
    if isinstance(layer, (nn.Dropout, nn.Identity)):
        return x, False
    raise AssertionError(f"{type(layer).__name__} passed _check_exportable")  # unreachable


def _exportable():
    from . import nn, quant

    return (nn.Linear, nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.BatchNorm1d, nn.BatchNorm2d,
            nn.LayerNorm, nn.ReLU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.GELU, nn.SiLU, nn.Softmax, nn.Flatten,
            nn.Dropout, nn.Identity, quant.QuantLinear)


def _check_exportable(layers) -> None:
    """Every layer has an ONNX form (checked before anything runs), else a ValueError naming it."""
    kinds = _exportable()
    for name, layer in layers:
        if type(layer) not in kinds:
            raise ValueError(f"export: layer {name} ({type(layer).__name__}) has no ONNX form here; the layers that "
                             f"export are {', '.join(k.__name__ for k in kinds)}")
        if getattr(layer, "return_indices", False):
            raise ValueError(f"export: layer {name} (MaxPool2d with return_indices=True) returns the indices too, "
                             "which the exported graph does not; export the model without them")
        if getattr(layer, "codebook", False):
            raise ValueError(f"export: layer {name} is int4 in the codebook format, whose scaled codebook values are "
                             "not int8 and so have no MatMulInteger form; quantize with codebook=False to export")


def export(model, example_input, path, *, opset: int = DEFAULT_OPSET, dynamic_batch: bool = True,
           input_name: str = "input", output_name: str = "output", doc_string: str | None = None,
           metadata: dict | None = None) -> Path:
    """Write ``model`` (an ``nn.Sequential``, in eval mode's semantics) to ``path`` as ONNX and
    return the path. ``example_input`` (a batch: array or Tensor) fixes every dimension but the
    batch, which stays symbolic (``batch``) when ``dynamic_batch``; ``metadata`` (str -> str or
    JSON) goes into the model's ``metadata_props`` (``ember export`` records there how pixels
    become inputs). The file is checked (``onnx.checker`` with full shape inference) before it
    is written, atomically."""
    onnx = _onnx()
    from . import nn
    from .autograd import no_grad
    from .checkpoint import atomic_write
    from .compress.prune import is_chain
    from .tensor import Tensor
    from .factories import tensor

    if not isinstance(model, nn.Module):
        raise TypeError(f"export: model must be an ember.nn.Module, got {type(model).__name__}")
    if not isinstance(opset, int) or not 17 <= opset <= onnx.defs.onnx_opset_version():
        raise ValueError(f"export: opset must be an int from 17 (LayerNormalization) to "
                         f"{onnx.defs.onnx_opset_version()} (this onnx), got {opset!r}")
    if input_name == output_name:
        raise ValueError(f"export: input_name and output_name must differ, both are {input_name!r}")
    x = example_input._host() if isinstance(example_input, Tensor) else np.asarray(example_input)
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"export: example_input must be a batch of inputs (N, ...), got shape {x.shape}")
    x = x.astype(np.float32, copy=False)
    if not is_chain(model) and list(model.children()):
        raise ValueError(f"export: {type(model).__name__} computes its own forward, which cannot be read as a chain of "
                         "layers; export an nn.Sequential (nested ones are fine)")
    layers = _layers(model)
    _check_exportable(layers)
    # Shapes: the model run layer by layer on the example, in eval mode; then every module's own
    # training flag back as it was (a submodule may differ from the model).
    restore_modes = nn.saved_modes(model)
    model.eval()
    shapes = [tuple(x.shape)]
    try:
        with no_grad():
            h = tensor(x)
            for _, layer in layers:
                h = layer(h)
                shapes.append(tuple(h.shape))
    finally:
        restore_modes()
    g = _Graph(onnx)
    g.names.update({input_name, output_name})
    current = input_name
    skip = False
    for i, (name, layer) in enumerate(layers):
        if skip:  # a BatchNorm folded into the layer before it
            skip = False
            continue
        nxt = layers[i + 1][1] if i + 1 < len(layers) else None
        current, skip = _convert(g, current, name, layer, shapes[i], shapes[i + 1], nxt, opset)
    if current == input_name:  # nothing but identities
        current = g.node("Identity", [current], "identity", "the model changes nothing")
    # The last node writes the output name.
    if g.nodes and current == g.nodes[-1].output[0]:
        g.nodes[-1].output[0] = output_name
    else:
        g.nodes.append(onnx.helper.make_node("Identity", [current], [output_name], name="output"))
    batch = "batch" if dynamic_batch else shapes[0][0]
    tp = onnx.TensorProto.FLOAT
    graph = onnx.helper.make_graph(
        g.nodes, type(model).__name__,
        [onnx.helper.make_tensor_value_info(input_name, tp, [batch, *shapes[0][1:]])],
        [onnx.helper.make_tensor_value_info(output_name, tp, [batch, *shapes[-1][1:]])],
        initializer=g.initializers, doc_string=doc_string or repr(model))
    import ember

    proto = onnx.helper.make_model(graph, producer_name="ember", producer_version=ember.__version__,
                                   opset_imports=[onnx.helper.make_opsetid("", opset)],
                                   doc_string=f"{type(model).__name__} exported by Ember {ember.__version__}")
    proto.ir_version = min(proto.ir_version, 10)  # what current runtimes read
    import json

    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = str(key), value if isinstance(value, str) else json.dumps(value)
    proto = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)
    onnx.checker.check_model(proto, full_check=True)
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"export: the folder {path.parent} does not exist")
    atomic_write(path, proto.SerializeToString())
    return path
