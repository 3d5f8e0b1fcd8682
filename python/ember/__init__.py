"""Ember: a lightweight deep-learning engine whose hot paths are its own native kernels.

The CPU kernels live in ``ember._C`` (chosen at import for the CPU's instruction set),
the CUDA kernels in ``ember._cuda`` when it was built. Kernels work on NumPy arrays and
write into arrays the caller can supply; GEMM reads any strided view in place.
"""

from . import _C, autograd, nn, ops
from ._runtime import (
    available_isas,
    get_isa,
    get_num_threads,
    info,
    set_isa,
    set_num_threads,
)
from .autograd import enable_grad, no_grad
from .ops import matmul
from .tensor import (
    Generator,
    Tensor,
    arange,
    cat,
    default_generator,
    empty,
    empty_like,
    eye,
    from_dlpack,
    from_numpy,
    full,
    full_like,
    linspace,
    manual_seed,
    maximum,
    minimum,
    ones,
    ones_like,
    rand,
    rand_like,
    randint,
    randn,
    randn_like,
    stack,
    tensor,
    where,
    zeros,
    zeros_like,
)

__version__ = _C.__version__

__all__ = [
    "Generator",
    "Tensor",
    "arange",
    "cat",
    "default_generator",
    "empty",
    "empty_like",
    "eye",
    "full",
    "full_like",
    "linspace",
    "manual_seed",
    "maximum",
    "minimum",
    "nn",
    "ones",
    "ones_like",
    "rand",
    "rand_like",
    "randint",
    "randn",
    "randn_like",
    "stack",
    "where",
    "zeros",
    "zeros_like",
    "__version__",
    "autograd",
    "enable_grad",
    "from_dlpack",
    "from_numpy",
    "no_grad",
    "tensor",
    "available_isas",
    "get_isa",
    "get_num_threads",
    "info",
    "matmul",
    "ops",
    "set_isa",
    "set_num_threads",
]
