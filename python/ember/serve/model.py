"""The model a server answers with: an Ember checkpoint or an ONNX file, loaded and checked before
it serves, with a version that every response carries."""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

_versions = itertools.count(1)
# One input's shape for the data sets ``ember train`` knows (checkpoints it wrote before it recorded it).
_DATASET_SHAPES = {"digits": (1, 8, 8), "cifar10": (3, 32, 32), "mnist": (1, 28, 28), "fashion_mnist": (1, 28, 28),
                   "synthetic": (3, 32, 32)}


@dataclass
class ServedModel:
    """A loaded model: ``predict(batch)`` gives float32 logits (one row per input; a model that
    ends in a softmax runs without it), ``input_shape`` the shape of one input, ``classes`` the
    outputs per input."""

    source: Path
    kind: str  # "ember" or "onnx"
    input_shape: tuple
    classes: int
    version: int
    digest: str  # the first 12 hex digits of the file's SHA-256
    config: dict = field(default_factory=dict)
    _run: object = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:  # one batch at a time per model (its buffers and threads are its own)
            return self._run(batch)

    def describe(self) -> dict:
        return {"source": str(self.source), "kind": self.kind, "version": self.version, "sha256": self.digest,
                "input_shape": list(self.input_shape), "outputs": self.classes,
                "input_normalisation": {k: self.config.get(k) for k in ("scale", "mean", "std") if k in self.config}}


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:12]


def _ember_runner(path: Path):
    import ember

    from .._cli_data import load_model
    from ..compress.distill import logits_forward

    model, config = load_model(path)
    model.eval()
    logits = logits_forward(model)

    def run(batch):
        with ember.no_grad():
            return np.asarray(logits(ember.tensor(batch))._host(), dtype=np.float32)

    shape = config.get("input_shape")
    if shape is None and isinstance(config.get("dataset"), str) and config["dataset"] in _DATASET_SHAPES:
        shape = list(_DATASET_SHAPES[config["dataset"]])
    ok = isinstance(shape, list) and shape and all(isinstance(d, int) and not isinstance(d, bool) and d > 0
                                                   for d in shape)
    return run, config, tuple(shape) if ok else None


def _logits_graph(proto) -> bool:
    """Make the graph give its logits when its output is a Softmax over the classes (axis 1 or
    -1: a served model's outputs are (N, classes)): the Softmax's input becomes the output.
    Returns whether it did."""
    out = proto.graph.output[0]
    node = next((n for n in proto.graph.node if out.name in n.output), None)
    if node is None or node.op_type != "Softmax" or node.domain not in ("", "ai.onnx"):
        return False
    axis = next((a.i for a in node.attribute if a.name == "axis"), -1)  # the default is 1 before opset 13
    if axis not in (1, -1):
        return False
    out.name = node.input[0]  # a Softmax keeps its input's type and shape
    return True


def _onnx_config(path: Path, session) -> dict:
    """The input normalisation (scale, mean, std) that ``ember export`` records in the file's
    metadata as ``ember.input``."""
    recorded = session.get_modelmeta().custom_metadata_map.get("ember.input")
    if recorded is None:
        return {}
    try:
        value = json.loads(recorded)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: its metadata ember.input must be a JSON object of scale, mean and std, got "
                         f"{recorded!r}")
    return {k: value[k] for k in ("scale", "mean", "std") if k in value}


def _onnx_runner(path: Path):
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise ImportError("serving an ONNX file needs onnx (to read its graph) and ONNX Runtime: pip install "
                          "'ember[onnx]' onnxruntime") from None
    try:
        proto = onnx.load(str(path), load_external_data=False)  # the graph: weights stay on disk
        model = str(path)
        if _logits_graph(proto):
            onnx.load_external_data_for_model(proto, str(path.parent))
            model = proto.SerializeToString()
        session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnx's and onnxruntime's own error types for a damaged or unsupported file
        raise ValueError(f"{path} is not a model ONNX Runtime can load ({exc})") from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"{path}: a served ONNX model takes one input and gives one output, this one has "
                         f"{len(inputs)} and {len(outputs)}")
    name, full = inputs[0].name, inputs[0].shape
    if full and isinstance(full[0], int):
        raise ValueError(f"{path}: its input has a fixed batch of {full[0]}; a served model takes batches of any "
                         "size: export it with a symbolic batch dimension (ember.onnx.export(..., "
                         "dynamic_batch=True))")
    dims = full[1:]
    shape = tuple(dims) if all(isinstance(d, int) for d in dims) else None

    def run(batch):
        return session.run(None, {name: batch})[0].astype(np.float32, copy=False)

    return run, _onnx_config(path, session), shape


def load(path, input_shape=None, like: ServedModel | None = None) -> ServedModel:
    """Load and check the model at ``path`` (``.onnx``, in any case: ONNX Runtime; anything else:
    an Ember checkpoint). The shape of one input comes from the file, else ``input_shape``, else
    ``like`` (the model being replaced, whose input shape and output count a replacement must
    keep); an ``input_shape`` that contradicts the file's is an error. The model is run on zeros,
    in batches of two sizes: it must give one finite row of outputs per input."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model at {path}")
    digest = _digest(path)
    onnx_file = path.suffix.lower() == ".onnx"
    run, config, shape = (_onnx_runner if onnx_file else _ember_runner)(path)
    if shape is not None and input_shape and tuple(input_shape) != tuple(shape):
        raise ValueError(f"{path} takes inputs of shape {tuple(shape)}, but the input shape given (--input-shape) "
                         f"is {tuple(input_shape)}; leave it out for a file that records its shape")
    shape = shape or (tuple(input_shape) if input_shape else None) or (like.input_shape if like else None)
    if shape is None:
        raise ValueError(f"{path} does not say what shape its inputs have: pass --input-shape")
    for n in (1, 3):  # two batch sizes: a model that works for one size only cannot serve
        try:
            out = run(np.zeros((n,) + tuple(shape), np.float32))
        except Exception as exc:  # the model's own error, whatever it is, means it cannot serve
            raise ValueError(f"{path}: the model does not run on a batch of {n} input(s) of shape {tuple(shape)}: "
                             f"{exc}") from None
        if out.ndim != 2 or out.shape[0] != n or not np.isfinite(out).all():
            raise ValueError(f"{path}: on a batch of {n}, the model gives outputs of shape {out.shape} (finite: "
                             f"{bool(np.isfinite(out).all())}); a served model gives one finite row per input")
    if like is not None and (tuple(shape) != like.input_shape or out.shape[1] != like.classes):
        raise ValueError(f"{path}: takes {tuple(shape)} and gives {out.shape[1]} outputs, but the model it would "
                         f"replace takes {like.input_shape} and gives {like.classes}; start a new server for it")
    return ServedModel(path, "onnx" if onnx_file else "ember", tuple(int(d) for d in shape),
                       int(out.shape[1]), next(_versions), digest, config, run)
