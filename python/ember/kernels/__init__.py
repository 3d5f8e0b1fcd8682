"""The doors to Ember's native kernels: one module per op family, mirroring ``csrc/ops/<op>/``.

==================  ==========================================================================
``gemm``            ``gemm`` (C = act(alpha op(A) op(B) + beta C + bias)), ``matmul``
``conv2d``          ``conv2d_fwd``, ``conv2d_bwd_data``, ``conv2d_bwd_weight``
``pool2d``          ``max_pool2d_fwd/_bwd``, ``avg_pool2d_fwd/_bwd``, ``adaptive_avg_pool2d_fwd/_bwd``
``cross_entropy``   ``cross_entropy_fwd/_bwd`` (fused softmax cross-entropy), ``linear_cross_entropy``
``eltwise``         ``relu_fwd``, ``relu_bwd``, ``erf``
``optim_step``      ``adam_step``, ``sgd_step`` (fused, all of a group's parameters in one call)
``qmatmul``         ``qmatmul_int8``, ``qmatmul_int8g``, ``qmatmul_int4``, ``qmatmul_int4cb`` (quantized matmul on packed weights)
==================  ==========================================================================

Each door takes arrays of any device Ember knows (NumPy arrays on the CPU, CuPy arrays on
CUDA), checks them (TypeError/ValueError naming the argument; arrays of two devices are an
error naming both), allocates its outputs on the inputs' device and calls that device's
kernel. Every door has a ``*_ref`` twin running the plain-loop reference the fast kernels are
tested against; it also runs float64, which gradient checks use. Names follow the kernels':
``<op>_fwd`` / ``<op>_bwd``.
"""

from . import conv2d, cross_entropy, eltwise, gemm, optim_step, pool2d, qmatmul

__all__ = ["conv2d", "cross_entropy", "eltwise", "gemm", "optim_step", "pool2d", "qmatmul"]
