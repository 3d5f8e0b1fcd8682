"""Ember: a lightweight deep-learning engine whose hot paths are its own native kernels.

The CPU kernels live in ``ember._C`` (chosen at import for the CPU's instruction set), the
CUDA kernels in ``ember._cuda`` when it was built; ``ember.backend`` chooses between them by
the arrays' device and ``ember.kernels`` holds one door per native op. Tensors live on the
CPU (NumPy arrays) or, with CuPy, on an NVIDIA GPU (``tensor.to("cuda")``).
"""

from . import (autograd, backend, callbacks, data, datasets, kernels, metrics, models, nn, optim, precision, quant,
               training)
from .checkpoint import load, load_model, save
from .precision import autocast
from ._runtime import (
    available_isas,
    empty_host_cache,
    get_cmake_dir,
    get_include,
    get_isa,
    get_lib,
    get_num_threads,
    host_cache_info,
    info,
    set_host_cache_limit,
    set_isa,
    set_num_threads,
)
from .autograd import enable_grad, inference_mode, no_grad
from .factories import (
    Generator,
    arange,
    default_generator,
    empty,
    empty_like,
    eye,
    from_dlpack,
    from_numpy,
    full,
    full_like,
    get_default_device,
    linspace,
    manual_seed,
    ones,
    ones_like,
    rand,
    rand_like,
    randint,
    randn,
    randn_like,
    set_default_device,
    tensor,
    zeros,
    zeros_like,
)
from .tensor import Tensor, cat, matmul, maximum, minimum, stack, where

__version__ = backend.CPU.kernels.__version__

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
    "get_default_device",
    "set_default_device",
    "full_like",
    "linspace",
    "manual_seed",
    "maximum",
    "minimum",
    "nn",
    "optim",
    "precision",
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
    "autocast",
    "autograd",
    "enable_grad",
    "from_dlpack",
    "from_numpy",
    "inference_mode",
    "no_grad",
    "tensor",
    "available_isas",
    "get_isa",
    "get_num_threads",
    "info",
    "matmul",
    "kernels",
    "backend",
    "quant",
    "training",
    "set_isa",
    "set_num_threads",
    "get_include",
    "get_lib",
    "get_cmake_dir",
    "host_cache_info",
    "empty_host_cache",
    "set_host_cache_limit",
    "callbacks",
    "data",
    "datasets",
    "metrics",
    "models",
    "save",
    "load",
    "load_model",
    "bench",
    "compress",
    "distributed",
    "profile",
]


def __getattr__(name):
    """``ember.bench`` (the benchmark harness and catalogue), ``ember.compress`` (pruning and
    distillation), ``ember.distributed`` (data-parallel training) and ``ember.profile`` (a model's
    time and memory per layer and per form), imported on first use so that ``import ember`` stays
    fast."""
    if name in ("bench", "compress", "distributed"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    if name == "profile":
        from .bench import profile

        return profile
    raise AttributeError(f"module 'ember' has no attribute {name!r}")
