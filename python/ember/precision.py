"""Mixed precision: one policy says in which dtype each kind of work runs.

========================================  ==========  ==========================================
work                                      ``fp32``    ``bf16``
========================================  ==========  ==========================================
parameters (master weights), gradients,   float32     float32
optimizer step
``Linear`` / ``F.linear`` inputs,         float32     bfloat16 (products exact, summed in
forward and backward                                  float32 -- AMX tiles or ``vdpbf16ps``)
their outputs                             float32     float32
``conv2d`` forward and both gradients     float32     bfloat16 products summed in float32, where
                                                      that pays: ``groups=1`` and 64 or more
                                                      products per output (C x KH x KW; the input
                                                      gradient also at unit stride only); the
                                                      bias gradient from float32 values
softmax, cross-entropy and other losses,  float32     float32
reductions, normalisation statistics
elementwise ops, pooling                  float32     float32
========================================  ==========  ==========================================

As in PyTorch's CPU autocast and Keras's ``mixed_bfloat16`` policy, only the matrix products run
in low precision; everything whose error would accumulate (sums, softmax, statistics, the weight
update) stays in float32, so no loss scaling is needed for bf16 (its range is float32's). TF32
is never used: no policy here asks for it.

``with ember.autocast("bf16"):`` (or ``@ember.autocast("bf16")`` on a function) sets the policy
for the code inside, per thread and per asyncio task; ``fit(precision="bf16")`` and
``ember train --precision bf16`` run a whole training that way, and checkpoints record the
policy they were written under (``ember.precision``).
"""

from __future__ import annotations

import contextvars
import dataclasses

from ._decorate import decorate


@dataclasses.dataclass(frozen=True)
class Policy:
    """Where each kind of work runs (dtype names as NumPy spells them)."""

    name: str
    param_dtype: str = "float32"  # parameters, their gradients and the optimizer's state
    compute_dtype: str = "float32"  # inputs of matrix products (Linear)
    accumulate_dtype: str = "float32"  # the sums of those products, and their outputs
    reduce_dtype: str = "float32"  # softmax, losses, reductions, normalisation statistics
    allow_tf32: bool = False

    @property
    def low_precision_matmul(self) -> bool:
        return self.compute_dtype == "bfloat16"

    def describe(self) -> dict:
        """The policy as a JSON-ready dict (what checkpoints and benchmark records hold)."""
        return dataclasses.asdict(self)


FP32 = Policy("fp32")
BF16 = Policy("bf16", compute_dtype="bfloat16")
_POLICIES = {"fp32": FP32, "float32": FP32, "bf16": BF16, "bfloat16": BF16}

_current = contextvars.ContextVar("ember_precision", default=FP32)
_outer = contextvars.ContextVar("ember_precision_outer", default=())  # what each open autocast replaced


def get(policy) -> Policy:
    """The policy ``policy`` names ('fp32' / 'float32', 'bf16' / 'bfloat16'), or a Policy itself."""
    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, str) and policy.lower() in _POLICIES:
        return _POLICIES[policy.lower()]
    if isinstance(policy, str) and policy.lower() in ("fp16", "float16", "half"):
        raise ValueError("precision 'fp16' (with dynamic loss scaling) is for NVIDIA GPUs and not in this version of "
                         "Ember; use 'bf16', which needs no loss scaling")
    raise ValueError(f"precision must be one of 'fp32', 'bf16' (or a Policy), got {policy!r}")


def current() -> Policy:
    """The policy in force here (fp32 unless an ``autocast`` says otherwise)."""
    return _current.get()


class autocast:  # noqa: N801 -- named as PyTorch's and used like a function
    """``with ember.autocast("bf16"):`` runs the matrix products inside in bf16 (see the table in
    ``ember.precision``); as a decorator, ``@ember.autocast("bf16")`` does so for every call of the
    function. ``enabled=False`` runs the block in fp32, so a region can be opted out. Nested
    blocks restore the outer policy on exit."""

    def __init__(self, dtype="bf16", enabled: bool = True):
        if not isinstance(enabled, bool):
            raise TypeError(f"autocast: enabled must be True or False, got {enabled!r}")
        self.policy = get(dtype) if enabled else FP32

    # The policies to restore live in the context (each thread and asyncio task has its own), not
    # on the object, so one autocast object may be entered by several threads or tasks at once.
    def __enter__(self) -> Policy:
        _outer.set(_outer.get() + (_current.get(),))
        _current.set(self.policy)
        return self.policy

    def __exit__(self, *exc) -> None:
        stack = _outer.get()
        _current.set(stack[-1])
        _outer.set(stack[:-1])

    def __call__(self, fn):
        return decorate(fn, lambda: autocast(self.policy))

    def __repr__(self) -> str:
        return f"autocast({self.policy.name!r})"
