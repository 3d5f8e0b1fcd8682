"""Mixed precision: one policy says in which dtype each kind of work runs.

========================================  ==========  ==========================================
work                                      ``fp32``    ``bf16``
========================================  ==========  ==========================================
parameters (master weights), gradients,   float32     float32
optimizer step
``Linear`` / ``F.linear`` inputs,         float32     bfloat16 (products exact, summed in
forward and backward: attention's                     float32 -- AMX tiles or ``vdpbf16ps``;
projections and ``GPT.forward``'s                     there a subnormal bf16 input, below
output head included                                  about 1.2e-38, counts as zero)
their outputs                             float32     float32
``conv2d`` forward and both gradients     float32     bfloat16 products summed in float32, where
                                                      that pays: ``groups=1`` and 64 or more
                                                      products per output (C x KH x KW; the input
                                                      gradient also at unit stride only); the
                                                      bias gradient from float32 values
the other matrix products: tensor ``@``,  float32     float32
``matmul``, ``bmm``, attention's scores
and weighted values
(``scaled_dot_product_attention``),
``GPT.generate``'s native decoder
softmax, cross-entropy and other losses,  float32     float32
reductions, normalisation statistics
elementwise ops, pooling                  float32     float32
========================================  ==========  ==========================================

As in PyTorch's CPU autocast and Keras's ``mixed_bfloat16`` policy, only matrix products run
in low precision; everything whose error would accumulate (sums, softmax, statistics, the weight
update) stays in float32, so no loss scaling is needed for bf16 (its range is float32's). Unlike
PyTorch's CPU autocast, which also casts ``matmul`` and ``bmm``, only ``Linear`` (with the
fused ``F.linear_cross_entropy``, ``GPT.compute_loss``'s head) and ``conv2d`` follow the policy.
TF32 is never used: no policy here asks for it.

On the ``avx512_bf16`` and ``amx`` instruction sets the bf16 products treat subnormal bf16
inputs (magnitudes below 2^-126) as zero, as ``vdpbf16ps``, the AMX tiles and oneDNN's bf16
matmuls (PyTorch's on such CPUs) do; the other instruction sets multiply widened inputs on the
float32 GEMM and keep them.

``with ember.autocast("bf16"):`` (or ``@ember.autocast("bf16")`` on a function) sets the policy
for the code inside, per thread and per asyncio task; ``fit(precision="bf16")`` and
``ember train --precision bf16`` run a whole training that way, and checkpoints record the
policy they were written under (``ember.precision``): resuming from one goes on under it unless
told otherwise.
"""

from __future__ import annotations

import dataclasses

from ._decorate import Setting, decorate


@dataclasses.dataclass(frozen=True)
class Policy:
    """Where each kind of work runs (dtype names as NumPy spells them). Only what Ember
    implements is accepted: ``compute_dtype`` 'float32' or 'bfloat16', everything else float32
    and no TF32 (a ValueError names the field otherwise), so a policy never claims, in a
    checkpoint or a benchmark record, work it did not do."""

    name: str
    param_dtype: str = "float32"  # parameters, their gradients and the optimizer's state
    compute_dtype: str = "float32"  # inputs of matrix products (Linear)
    accumulate_dtype: str = "float32"  # the sums of those products, and their outputs
    reduce_dtype: str = "float32"  # softmax, losses, reductions, normalisation statistics
    allow_tf32: bool = False

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Policy: name must be a non-empty str, got {self.name!r}")
        if not isinstance(self.compute_dtype, str) or self.compute_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"Policy: compute_dtype must be 'float32' or 'bfloat16' (the products Ember runs), "
                             f"got {self.compute_dtype!r}")
        for field in ("param_dtype", "accumulate_dtype", "reduce_dtype"):
            if not isinstance(getattr(self, field), str) or getattr(self, field) != "float32":
                raise ValueError(f"Policy: {field} must be 'float32' (Ember keeps that work in float32 under every "
                                 f"policy), got {getattr(self, field)!r}")
        if self.allow_tf32 is not False:
            raise ValueError(f"Policy: allow_tf32 must be False (Ember has no TF32 path), got {self.allow_tf32!r}")

    @property
    def low_precision_matmul(self) -> bool:
        return self.compute_dtype == "bfloat16"

    def describe(self) -> dict:
        """The policy as a JSON-ready dict (what checkpoints and benchmark records hold)."""
        return dataclasses.asdict(self)

    def same_work(self, other: Policy) -> bool:
        """Whether ``other`` runs every kind of work in the same dtype as this one (names aside)."""
        return dataclasses.replace(other, name=self.name) == self


FP32 = Policy("fp32")
BF16 = Policy("bf16", compute_dtype="bfloat16")
_POLICIES = {"fp32": FP32, "float32": FP32, "bf16": BF16, "bfloat16": BF16}

_current = Setting("ember_precision", FP32)


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


def from_record(record: dict) -> Policy:
    """The policy a checkpoint's ``ember.precision`` record (``Policy.describe()``) describes,
    checked as every Policy is: ``fp32`` or ``bf16`` themselves when it describes them."""
    fields = {f.name for f in dataclasses.fields(Policy)}
    if not isinstance(record, dict) or "name" not in record or not set(record) <= fields:
        raise ValueError(f"ember.precision must be a JSON object with a name and fields among {sorted(fields)}, got "
                         f"{record!r}")
    policy = Policy(**record)
    return next((known for known in (FP32, BF16) if known == policy), policy)


def current() -> Policy:
    """The policy in force here (fp32 unless an ``autocast`` says otherwise)."""
    return _current.get()


class autocast:  # noqa: N801 -- named as PyTorch's and used like a function
    """``with ember.autocast("bf16"):`` runs the matrix products inside in bf16 (see the table in
    ``ember.precision``); as a decorator, ``@ember.autocast("bf16")`` does so for every call of the
    function. ``enabled=False`` runs the block in fp32, so a region can be opted out. Nested
    blocks restore the outer policy on exit; a decorated generator keeps its policy (and the
    blocks open inside it) to its own steps."""

    def __init__(self, dtype="bf16", enabled: bool = True):
        if not isinstance(enabled, bool):
            raise TypeError(f"autocast: enabled must be True or False, got {enabled!r}")
        self.policy = get(dtype) if enabled else FP32

    # What to restore lives in the context (each thread and asyncio task has its own), not on the
    # object, so one autocast object may be entered by several threads or tasks at once.
    def __enter__(self) -> Policy:
        _current.enter(self, self.policy)
        return self.policy

    def __exit__(self, *exc) -> None:
        _current.exit(self)

    def __call__(self, fn):
        return decorate(fn, lambda: autocast(self.policy))

    def __repr__(self) -> str:
        return f"autocast({self.policy.name!r})"
