"""Keras's ``Sequential`` over Ember: channels-last images in, Keras's ``compile`` / ``fit`` /
``evaluate`` / ``predict`` defaults, ``summary``.

Images (N, H, W, C) are transposed to Ember's NCHW once, at the model's input; every layer
then runs in NCHW on Ember's kernels. A model that ends in a softmax and is compiled with
``categorical_crossentropy`` or ``sparse_categorical_crossentropy`` (``from_logits=False``)
trains on the logits before that softmax through Ember's fused softmax cross-entropy, as
Keras itself does, so it is as stable and as fast as the native logits path; ``predict``
returns the probabilities.
"""

from __future__ import annotations

import contextlib
import re

import numpy as np

from .. import metrics as metrics_module
from .. import nn, training
from ..autograd import no_grad
from ..checkpoint import load_model  # keras.models.load_model: any Ember checkpoint's model, rebuilt
from ..losses import CategoricalCrossentropy, SparseCategoricalCrossentropy
from ..tensor import Tensor
from ..factories import zeros
from . import optimizers
from .layers import Input, Layer


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z][a-z])", "_", name).lower()


def _keras_shape(shape) -> tuple:
    """An NCHW (or (N, F)) shape as Keras shows it: batch None, channels last."""
    rest = tuple(shape[1:])
    return (None, *rest[1:], rest[0]) if len(rest) == 3 else (None, *rest)


class _OnProbabilities(metrics_module.Metric):
    """A metric of a model whose final softmax the loss took over (the fused, stable path): the
    training loop holds the logits, and the metric sees the probabilities, as in Keras."""

    def __init__(self, inner: metrics_module.Metric):
        self.inner, self.name = inner, inner.name

    def update(self, y_true, y_pred) -> None:
        with no_grad():
            probs = nn.functional.softmax(y_pred if isinstance(y_pred, Tensor) else Tensor(np.asarray(y_pred)), -1)
        self.inner.update(y_true, probs)

    def result(self) -> float:
        return self.inner.result()

    def reset(self) -> None:
        self.inner.reset()

    def state(self) -> dict:
        return self.inner.state()

    def merge_state(self, state: dict) -> None:
        self.inner.merge_state(state)


class Sequential(nn.Module):
    """``Sequential([layer, ...])`` or ``.add(layer)``; Keras layers (``ember.keras.layers``) and
    Ember modules mix freely. The input shape comes from the first layer's ``input_shape`` (or
    an ``Input``), else from the first data the model sees."""

    data_format = "channels_last"  # what its inputs are: (N, H, W, C) images

    def __init__(self, layers=None, name=None):
        super().__init__()
        object.__setattr__(self, "name", name or "sequential")
        object.__setattr__(self, "input_shape", None)
        object.__setattr__(self, "_shapes", None)
        object.__setattr__(self, "_pending", None)
        object.__setattr__(self, "_fold_softmax", False)
        object.__setattr__(self, "_logits_mode", False)
        for layer in layers or ():
            self.add(layer)

    # ------------------------------------------------------------------ structure
    def get_config(self) -> dict:
        return {"name": self.name, "input_shape": None if self.input_shape is None else list(self.input_shape)}

    @classmethod
    def from_children(cls, config, children):
        """The model a checkpoint describes: its layers (named as saved), built for its input
        shape."""
        model = cls(name=config.get("name"))
        for name, layer in children.items():
            setattr(model, name, layer)
        if config.get("input_shape") is not None:
            model.build((None, *config["input_shape"]))
        return model

    @property
    def layers(self) -> list:
        return list(self._modules.values())

    def add(self, layer) -> None:
        if not isinstance(layer, nn.Module):
            raise TypeError(f"Sequential.add takes a layer, got {type(layer).__name__}")
        shape = getattr(layer, "input_shape", None)
        if isinstance(layer, Input):
            if self._modules:
                raise ValueError("Input must be the first layer")
            object.__setattr__(self, "input_shape", shape)
            return
        base = getattr(layer, "name", None) or _snake(type(layer).__name__)
        name, i = base, 0
        while name in self._modules:
            i += 1
            name = f"{base}_{i}"
        before = self.input_shape
        layer.train(self.training)  # a layer added to a model in evaluation mode evaluates too
        setattr(self, name, layer)
        if shape is not None and len(self._modules) == 1:
            object.__setattr__(self, "input_shape", shape)
        if self.input_shape is not None:
            try:
                self.build((None, *self.input_shape))
            except Exception:  # a layer that does not fit is not kept (as in Keras): the model still works
                del self._modules[name]
                object.__setattr__(self, "input_shape", before)
                if before is not None and self._modules:
                    self.build((None, *before))
                raise

    def build(self, input_shape) -> None:
        """Create every layer's weights for inputs of ``input_shape`` (batch first, channels
        last for images) by running one zero sample through the model."""
        shape = tuple(input_shape)[1:]
        object.__setattr__(self, "input_shape", shape)
        shapes = []
        restore_modes = nn.saved_modes(self)
        self.eval()
        try:
            with no_grad():
                x = self._to_nchw(zeros(1, *shape))
                for layer in self.layers:
                    x = layer(x)
                    shapes.append(tuple(x.shape))
        finally:
            restore_modes()
            for layer in self.layers:  # what the build made inside a layer takes the layer's own mode
                for m in layer.modules():
                    object.__setattr__(m, "training", layer.training)
        object.__setattr__(self, "_shapes", shapes)
        if self._pending is not None:
            self._finish_compile()

    @property
    def built(self) -> bool:
        return self._shapes is not None

    def _build_from(self, x) -> None:
        if not self.built:
            data = x.dataset.tensors[0] if hasattr(x, "dataset") and hasattr(x.dataset, "tensors") else x
            self.build((None, *np.shape(data)[1:]))

    @staticmethod
    def _to_nchw(x):
        return x.permute(0, 3, 1, 2) if x.ndim == 4 else x

    def forward(self, x):
        if not isinstance(x, Tensor):
            x = Tensor(np.asarray(x, np.float32))
        elif x.dtype != np.float32:  # Keras's rule: inputs are cast to the layers' float32
            x = x.float()
        images = x.ndim == 4
        x = self._to_nchw(x)
        layers = self.layers
        for layer in layers[:-1]:
            x = layer(x)
        last = layers[-1]
        out = last.logits(x) if self._logits_mode and self._fold_softmax else last(x)
        # Images came in channels last: image outputs go back out channels last, as Keras's.
        return out.permute(0, 2, 3, 1) if images and out.ndim == 4 else out

    def summary(self, print_fn=print) -> None:
        """Layers, output shapes (channels last, as Keras shows them) and parameter counts."""
        if not self.built:
            raise ValueError("summary: the model is not built yet: give the first layer input_shape=, or call "
                             "build(input_shape) or fit first")
        rows = [(f"{name} ({type(layer).__name__})", str(_keras_shape(shape)),
                 sum(p.numel() for p in layer.parameters()))
                for (name, layer), shape in zip(self._modules.items(), self._shapes)]
        widths = (max(28, *(len(r[0]) + 2 for r in rows)), max(22, *(len(r[1]) + 2 for r in rows)), 12)
        line = "".join(h.ljust(w) for h, w in zip(("Layer (type)", "Output Shape", "Param #"), widths))
        print_fn(f'Model: "{self.name}"')
        print_fn("_" * sum(widths))
        print_fn(line)
        print_fn("=" * sum(widths))
        for r in rows:
            print_fn(r[0].ljust(widths[0]) + r[1].ljust(widths[1]) + f"{r[2]:,}")
        total = sum(p.numel() for p in self.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        print_fn("=" * sum(widths))
        print_fn(f"Total params: {total:,}\nTrainable params: {trainable:,}\nNon-trainable params: {total - trainable:,}")
        print_fn("_" * sum(widths))

    # ------------------------------------------------------------------ training
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, learning_rate=None) -> None:
        """Keras's ``compile``: ``optimizer`` a name (with ``learning_rate``) or an optimizer
        object (``ember.keras.optimizers``, or an ``ember.optim`` one over this model's
        parameters), ``loss`` a name or a loss object, ``metrics`` names or objects."""
        if loss is None:
            raise ValueError("compile: loss is required, e.g. loss='categorical_crossentropy'")
        object.__setattr__(self, "_pending", (optimizers.get(optimizer, learning_rate), loss, metrics))
        if self.built:
            self._finish_compile()

    def _finish_compile(self) -> None:
        optimizer, loss, metrics = self._pending
        loss = training._make_loss(loss)
        last = self.layers[-1] if self._modules else None
        ends_in_softmax = isinstance(last, Layer) and last.activation_name == "softmax"
        fold = (ends_in_softmax and isinstance(loss, (CategoricalCrossentropy, SparseCategoricalCrossentropy))
                and not loss.from_logits)
        if fold:  # the loss reads the logits before the softmax: the fused, stable path
            loss = (CategoricalCrossentropy(True, loss.label_smoothing, loss.reduction)
                    if isinstance(loss, CategoricalCrossentropy)
                    else SparseCategoricalCrossentropy(True, loss.ignore_index, loss.reduction))
        object.__setattr__(self, "_fold_softmax", fold)
        if isinstance(optimizer, optimizers.Optimizer):
            optimizer = optimizer.build(self.parameters())
        training.compile(self, optimizer, loss, metrics)
        if fold:  # the training loop holds logits; the metrics see probabilities
            self._compiled.metrics = [_OnProbabilities(m) for m in self._compiled.metrics]

    @contextlib.contextmanager
    def _logits(self, on: bool):
        before = self._logits_mode
        object.__setattr__(self, "_logits_mode", on)
        try:
            yield
        finally:
            object.__setattr__(self, "_logits_mode", before)

    def _ready(self, x, what):
        self._build_from(x)
        if self._pending is None:
            raise RuntimeError(f"{what}: call model.compile(optimizer=..., loss=..., metrics=...) first")

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, class_weight=None, initial_epoch=0, steps_per_epoch=None, **kwargs):
        """Keras's ``fit`` (batch size 32 by default); see ``ember.training.fit`` for the rest."""
        self._ready(x, "fit")
        with self._logits(True):
            return training.fit(self, x, y, batch_size=batch_size or 32, epochs=epochs, verbose=verbose,
                                callbacks=callbacks, validation_split=validation_split,
                                validation_data=validation_data, shuffle=shuffle, class_weight=class_weight,
                                initial_epoch=initial_epoch, steps_per_epoch=steps_per_epoch, **kwargs)

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", return_dict=False, **kwargs):
        """Keras's ``evaluate``: the loss, or ``[loss, *metrics]`` when there are metrics (a
        dict with ``return_dict=True``)."""
        self._ready(x, "evaluate")
        with self._logits(True):
            logs = training.evaluate(self, x, y, batch_size=batch_size or 32, verbose=verbose, return_dict=True,
                                     **kwargs)
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size=None, verbose="auto", **kwargs) -> np.ndarray:
        """Keras's ``predict``: the model's outputs (probabilities after a softmax) as an array
        (no progress bar is shown, whatever ``verbose`` says)."""
        self._build_from(x)
        with self._logits(False):
            return training.predict(self, x, batch_size or 32, verbose=verbose, **kwargs)


nn.register(Sequential, name="keras.Sequential")
