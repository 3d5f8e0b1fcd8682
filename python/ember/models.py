"""Ready-made classifiers for image data (``ember train --model``), each described as a list of
layer specs that ``build`` makes into an ``nn.Sequential``; every argument is checked (types
included) before any layer is made.
"""

from __future__ import annotations

from . import nn


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check(input_shape, classes):
    if (not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3
            or not all(_is_int(d) and d >= 1 for d in input_shape)):
        raise ValueError(f"input_shape must be (channels, height, width) of ints >= 1, got {input_shape!r}")
    if not _is_int(classes) or classes < 2:
        raise ValueError(f"classes must be an int >= 2, got {classes!r}")


def _positive(name, value):
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


def _cnn_specs(input_shape, classes, filters=32, hidden=128, padding=0):
    c, h, w = input_shape
    _positive("filters", filters)
    _positive("hidden", hidden)
    if not _is_int(padding) or padding not in (0, 1):
        raise ValueError(f"padding must be 0 or 1, got {padding!r}")
    oh, ow = (h - 2 + 2 * padding) // 2, (w - 2 + 2 * padding) // 2
    if oh < 1 or ow < 1:
        raise ValueError(f"cnn needs images of at least {4 - 2 * padding}x{4 - 2 * padding}, got {h}x{w}")
    return [("conv3x3", c, filters, padding), ("relu",), ("maxpool2",), ("flatten",),
            ("linear", filters * oh * ow, hidden), ("relu",), ("linear", hidden, classes)]


def _mlp_specs(input_shape, classes, hidden=(256, 128)):
    if not isinstance(hidden, (tuple, list)):
        raise ValueError(f"hidden must be a list of layer widths, got {hidden!r}")
    width = input_shape[0] * input_shape[1] * input_shape[2]
    specs = [("flatten",)]
    for h in hidden:
        specs += [("linear", width, _positive("hidden widths", h)), ("relu",)]
        width = h
    return specs + [("linear", width, classes)]


_SPECS = {"cnn": _cnn_specs, "mlp": _mlp_specs}
BUILDERS = tuple(_SPECS)


def _specs(name, input_shape, classes, options):
    if name not in _SPECS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(_SPECS)}")
    input_shape = tuple(input_shape) if isinstance(input_shape, list) else input_shape
    _check(input_shape, classes)
    if not isinstance(options, dict):
        raise ValueError(f"options must be a dict, got {options!r}")
    try:
        return _SPECS[name](input_shape, classes, **options)
    except TypeError:  # an option the builder does not take
        import inspect

        known = [p for p in inspect.signature(_SPECS[name]).parameters][2:]
        raise ValueError(f"unknown options for {name}: {sorted(set(options) - set(known))} "
                         f"(it takes {known})") from None


def _layer(spec):
    kind = spec[0]
    if kind == "conv3x3":
        return nn.Conv2d(spec[1], spec[2], 3, padding=spec[3])
    if kind == "linear":
        return nn.Linear(spec[1], spec[2])
    return {"relu": nn.ReLU, "maxpool2": lambda: nn.MaxPool2d(2), "flatten": nn.Flatten}[kind]()


def cnn(input_shape, classes: int, filters: int = 32, hidden: int = 128, padding: int = 0) -> nn.Sequential:
    """The classic small CNN: Conv2d(C, filters, 3, padding) + ReLU -> MaxPool2d(2) -> Flatten ->
    Linear(hidden) + ReLU -> Linear(classes) (on CIFAR-10: 3 -> 32 channels, 7200 -> 128 -> 10).
    ``padding=1`` keeps the border of small images (such as 8x8 digits)."""
    return build("cnn", input_shape, classes, filters=filters, hidden=hidden, padding=padding)


def mlp(input_shape, classes: int, hidden=(256, 128)) -> nn.Sequential:
    """Flatten -> (Linear + ReLU) per hidden width -> Linear(classes)."""
    return build("mlp", input_shape, classes, hidden=hidden)


def build(name: str, input_shape, classes: int, **options) -> nn.Sequential:
    """The model called ``name`` ('cnn' or 'mlp') for images of ``input_shape`` (C, H, W, ints);
    ``options`` go to its builder (such as ``padding=1`` for the cnn). Every argument is
    checked (types included: ``"10"`` is not a class count) before any layer is made."""
    return nn.Sequential(*(_layer(s) for s in _specs(name, input_shape, classes, options)))


def gpt(vocab_size: int, block_size: int = 256, n_layer: int = 6, n_head: int = 6, d_model: int = 384,
        dropout: float = 0.0):
    """A small GPT language model (``ember.gpt.GPT``): token and position embeddings, ``n_layer``
    pre-norm causal Transformer blocks of ``n_head`` heads and width ``d_model``, an output head
    tied to the token embedding. Train it with ``compile(optimizer="adamw", loss="model")`` and
    ``fit(x, y)`` on (batch, length) token ids and their next tokens (the loss runs through the
    fused linear + cross-entropy head); sample with ``generate``."""
    from .gpt import GPT

    return GPT(vocab_size, block_size, n_layer, n_head, d_model, dropout)
