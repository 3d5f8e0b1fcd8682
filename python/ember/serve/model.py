"""The model a server answers with: an Ember checkpoint or an ONNX file, loaded and checked before
it serves, with a version that every response carries."""

from __future__ import annotations

import hashlib
import itertools
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
    """A loaded model: ``predict(batch)`` gives float32 outputs (one row per input), ``input_shape``
    the shape of one input, ``classes`` the outputs per input."""

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

    model, config = load_model(path)
    model.eval()

    def run(batch):
        with ember.no_grad():
            return np.asarray(model(ember.tensor(batch))._host(), dtype=np.float32)

    shape = config.get("input_shape")
    if shape is None and isinstance(config.get("dataset"), str) and config["dataset"] in _DATASET_SHAPES:
        shape = list(_DATASET_SHAPES[config["dataset"]])
    ok = isinstance(shape, list) and shape and all(isinstance(d, int) and not isinstance(d, bool) and d > 0
                                                   for d in shape)
    return run, config, tuple(shape) if ok else None


def _onnx_runner(path: Path):
    try:
        import onnxruntime
    except ImportError:
        raise ImportError("serving an ONNX file needs ONNX Runtime: pip install onnxruntime") from None
    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own error types for a damaged or unsupported file
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

    return run, {}, shape


def load(path, input_shape=None, like: ServedModel | None = None) -> ServedModel:
    """Load and check the model at ``path`` (``.onnx``: ONNX Runtime; anything else: an Ember
    checkpoint). The shape of one input comes from the file, else ``input_shape``, else ``like``
    (the model being replaced, whose input shape and output count a replacement must keep). The
    model is run on zeros, in batches of two sizes: it must give one finite row of outputs per input."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model at {path}")
    digest = _digest(path)
    run, config, shape = (_onnx_runner if path.suffix == ".onnx" else _ember_runner)(path)
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
    return ServedModel(path, "onnx" if path.suffix == ".onnx" else "ember", tuple(int(d) for d in shape),
                       int(out.shape[1]), next(_versions), digest, config, run)
