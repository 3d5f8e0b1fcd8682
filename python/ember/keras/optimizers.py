"""Keras's optimizer objects: made without parameters, as in Keras, and bound to the model's
when it is compiled (and built). Their arguments are Keras's names and defaults."""

from __future__ import annotations

from .. import optim


class Optimizer:
    """An optimizer to be; ``build(params)`` makes the ``ember.optim`` optimizer."""

    def __init__(self, learning_rate: float, **options):
        if not learning_rate > 0:
            raise ValueError(f"{type(self).__name__}: learning_rate must be > 0, got {learning_rate!r}")
        self.learning_rate, self.options = float(learning_rate), options

    def __repr__(self) -> str:
        options = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}(learning_rate={self.learning_rate!r}{options})"


class Adam(Optimizer):
    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False):
        super().__init__(learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, amsgrad=amsgrad)

    def build(self, params):
        o = self.options
        return optim.Adam(params, lr=self.learning_rate, betas=(o["beta_1"], o["beta_2"]), eps=o["epsilon"],
                          amsgrad=o["amsgrad"])


class AdamW(Optimizer):
    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        super().__init__(learning_rate, weight_decay=weight_decay, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon)

    def build(self, params):
        o = self.options
        return optim.AdamW(params, lr=self.learning_rate, betas=(o["beta_1"], o["beta_2"]), eps=o["epsilon"],
                           weight_decay=o["weight_decay"])


class SGD(Optimizer):
    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False):
        super().__init__(learning_rate, momentum=momentum, nesterov=nesterov)

    def build(self, params):
        return optim.SGD(params, lr=self.learning_rate, **self.options)


class RMSprop(Optimizer):
    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False):
        super().__init__(learning_rate, rho=rho, momentum=momentum, epsilon=epsilon, centered=centered)

    def build(self, params):
        o = self.options
        return optim.RMSprop(params, lr=self.learning_rate, alpha=o["rho"], eps=o["epsilon"], momentum=o["momentum"],
                             centered=o["centered"])


_NAMES = {"adam": Adam, "adamw": AdamW, "sgd": SGD, "rmsprop": RMSprop}


def get(identifier, learning_rate=None) -> Optimizer | optim.Optimizer:
    """A Keras optimizer from a name (with ``learning_rate``), or the object itself."""
    if isinstance(identifier, str):
        cls = _NAMES.get(identifier.lower())
        if cls is None:
            raise ValueError(f"unknown optimizer {identifier!r}; use one of {sorted(_NAMES)} or an optimizer object")
        return cls() if learning_rate is None else cls(learning_rate=learning_rate)
    if learning_rate is not None:
        raise ValueError("learning_rate= applies to an optimizer given by name; set it on the optimizer object")
    if isinstance(identifier, (Optimizer, optim.Optimizer)):
        return identifier
    raise TypeError(f"optimizer must be a name or an optimizer object, got {type(identifier).__name__}")
