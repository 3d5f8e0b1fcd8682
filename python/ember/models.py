"""Ready-made classifiers for image data, rebuilt from a small config so a checkpoint can say
what it holds (``ember evaluate`` builds the model from the checkpoint's config)."""

from __future__ import annotations

from . import nn


def _check(input_shape, classes):
    if len(input_shape) != 3 or any(not isinstance(d, int) or d < 1 for d in input_shape):
        raise ValueError(f"input_shape must be (channels, height, width) of ints >= 1, got {tuple(input_shape)}")
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 2:
        raise ValueError(f"classes must be an int >= 2, got {classes!r}")


def cnn(input_shape, classes: int, filters: int = 32, hidden: int = 128, padding: int = 0) -> nn.Sequential:
    """The classic small CNN: Conv2d(C, filters, 3, padding) + ReLU -> MaxPool2d(2) -> Flatten ->
    Linear(hidden) + ReLU -> Linear(classes) (on CIFAR-10: 3 -> 32 channels, 7200 -> 128 -> 10).
    ``padding=1`` keeps the border of small images (such as 8x8 digits)."""
    _check(input_shape, classes)
    c, h, w = input_shape
    if padding not in (0, 1):
        raise ValueError(f"padding must be 0 or 1, got {padding!r}")
    oh, ow = (h - 2 + 2 * padding) // 2, (w - 2 + 2 * padding) // 2
    if oh < 1 or ow < 1:
        raise ValueError(f"cnn needs images of at least {4 - 2 * padding}x{4 - 2 * padding}, got {h}x{w}")
    return nn.Sequential(nn.Conv2d(c, filters, 3, padding=padding), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(filters * oh * ow, hidden), nn.ReLU(), nn.Linear(hidden, classes))


def mlp(input_shape, classes: int, hidden=(256, 128)) -> nn.Sequential:
    """Flatten -> (Linear + ReLU) per hidden width -> Linear(classes)."""
    _check(input_shape, classes)
    width = input_shape[0] * input_shape[1] * input_shape[2]
    layers = [nn.Flatten()]
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, classes))
    return nn.Sequential(*layers)


BUILDERS = {"cnn": cnn, "mlp": mlp}


def build(name: str, input_shape, classes: int, **options) -> nn.Sequential:
    """The model called ``name`` ('cnn' or 'mlp') for images of ``input_shape`` (C, H, W);
    ``options`` go to its builder (such as ``padding=1`` for the cnn)."""
    if name not in BUILDERS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(BUILDERS)}")
    return BUILDERS[name](tuple(int(d) for d in input_shape), int(classes), **options)
