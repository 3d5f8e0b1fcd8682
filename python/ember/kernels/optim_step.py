"""Fused optimizer steps: every parameter of a group updated in one native call (one kernel
launch on a GPU), in place over the parameters and their state. float32, C-contiguous;
PyTorch's update formulas (see ``csrc/ops/optim_step/optim_step.h``)."""

from __future__ import annotations

from .. import _check
from . import _common

_F32 = (_common.FLOAT32,)


def _sequence(value, name):
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{name} must be a list or tuple with one entry per parameter, got {type(value).__name__}")
    return value


def _tensors(dev, name, arrays, params, contiguous=False):
    _sequence(arrays, name)
    if len(arrays) != len(params):
        raise ValueError(f"{name} has {len(arrays)} entries for {len(params)} parameters")
    return [_common.array(a, f"{name}[{i}]", dev, _F32, contiguous=contiguous) for i, a in enumerate(arrays)]


def adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, *, lr, beta1, beta2, eps,
              weight_decay=0.0, decoupled=False, maximize=False, reference=False):
    """Adam (``decoupled=True``: AdamW; ``max_exp_avg_sqs`` not None: AMSGrad) over lists of
    arrays, one entry per parameter; ``steps`` holds each parameter's step number (>= 1, this
    step included)."""
    if not _sequence(params, "params"):
        return
    dev = _common.device(param=params[0])
    params = _tensors(dev, "params", params, params)
    args = [params, _tensors(dev, "grads", grads, params, contiguous=True), _tensors(dev, "exp_avgs", exp_avgs, params),
            _tensors(dev, "exp_avg_sqs", exp_avg_sqs, params)]
    vmax = None if max_exp_avg_sqs is None else _tensors(dev, "max_exp_avg_sqs", max_exp_avg_sqs, params)
    if len(_sequence(steps, "steps")) != len(params):
        raise ValueError(f"steps has {len(steps)} entries for {len(params)} parameters")
    k = _common.native(dev, "adam_step_ref" if reference else "adam_step")
    k(*args, vmax, [_check.integer(s, f"steps[{i}]") for i, s in enumerate(steps)], _check.real(lr, "lr"),
      _check.real(beta1, "beta1"), _check.real(beta2, "beta2"), _check.real(eps, "eps"),
      _check.real(weight_decay, "weight_decay"), bool(decoupled), bool(maximize), **dev.launch())


def sgd_step(params, grads, momentum_buffers, *, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
             maximize=False, first=False, reference=False):
    """SGD with momentum, dampening, Nesterov and weight decay over lists of arrays;
    ``momentum_buffers`` is None without momentum, and ``first`` says they are uninitialised
    (the step fills them, as PyTorch's first step does)."""
    if not _sequence(params, "params"):
        return
    dev = _common.device(param=params[0])
    params = _tensors(dev, "params", params, params)
    grads = _tensors(dev, "grads", grads, params, contiguous=True)
    bufs = None if momentum_buffers is None else _tensors(dev, "momentum_buffers", momentum_buffers, params)
    k = _common.native(dev, "sgd_step_ref" if reference else "sgd_step")
    k(params, grads, bufs, _check.real(lr, "lr"), _check.real(momentum, "momentum"),
      _check.real(dampening, "dampening"), _check.real(weight_decay, "weight_decay"), bool(nesterov),
      bool(maximize), bool(first), **dev.launch())
