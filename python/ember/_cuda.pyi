"""Typed stub of ember._cuda, the CUDA kernels (present when built with a CUDA compiler).

Arrays are device arrays exposing ``__cuda_array_interface__`` (CuPy arrays, PyTorch CUDA
tensors) on the current device; outputs are allocated by the caller. bf16 data travels as
uint16 arrays of bf16 bit patterns (typestr '<u2', or '<V2'). Every kernel takes a last
argument ``stream`` (an int holding a cudaStream_t, or an object with ``.ptr`` /
``.cuda_stream``; default 0, the legacy default stream), is queued there and returns at once.
Bad arguments raise TypeError/ValueError naming the argument; CUDA errors raise RuntimeError
(MemoryError for out-of-memory) carrying CUDA's message.
"""

from collections.abc import Sequence
from typing import Any, Literal

DeviceArray = Any  # anything with __cuda_array_interface__
Stream = Any  # int (cudaStream_t) or an object with .ptr / .cuda_stream

__version__: str

def device_count() -> int: ...
def runtime_version() -> int: ...
def driver_version() -> int: ...
def device_info(index: int = 0) -> dict[str, Any]: ...

# GEMM: out = act(alpha * op(a) @ op(b) + beta * out + bias). a, b: 2-D or 3-D (batch first), one
# unit stride each; float32, or bf16 (uint16) with float32 or bf16 out. out is required.
def gemm(
    a: DeviceArray,
    b: DeviceArray,
    out: DeviceArray,
    alpha: float = 1.0,
    beta: float = 0.0,
    trans_a: bool = False,
    trans_b: bool = False,
    bias: DeviceArray | None = None,
    relu: bool = False,
    variant: Literal["auto", "simt", "mma", "wgmma"] = "auto",
    stream: Stream = 0,
) -> DeviceArray: ...
def gemm_plan(
    a: DeviceArray,
    b: DeviceArray,
    out: DeviceArray,
    trans_a: bool = False,
    trans_b: bool = False,
    variant: Literal["auto", "simt", "mma", "wgmma"] = "auto",
) -> Literal["simt", "mma", "wgmma", "none"]: ...

# Softmax cross-entropy (per-row values; the caller reduces). target: int64 (B,) or float32 (B, V).
# error: optional int32 (1,) preset to >= B; lowered to the first row whose class index is invalid.
def cross_entropy_fwd(logits: DeviceArray, target: DeviceArray, weight: DeviceArray | None, eps: float,
                      ignore_index: int, out_lse: DeviceArray, out_nll: DeviceArray, out_smooth: DeviceArray,
                      error: DeviceArray | None = None, stream: Stream = 0) -> None: ...
def cross_entropy_bwd(logits: DeviceArray, target: DeviceArray, weight: DeviceArray | None, eps: float,
                      ignore_index: int, lse: DeviceArray, scale: DeviceArray, out: DeviceArray,
                      error: DeviceArray | None = None, stream: Stream = 0) -> None: ...

# Elementwise (float32 or float64, C-contiguous, out may be the input).
def relu_fwd(input: DeviceArray, out: DeviceArray, stream: Stream = 0) -> None: ...
def relu_bwd(grad_output: DeviceArray, output: DeviceArray, out: DeviceArray, stream: Stream = 0) -> None: ...
def erf(input: DeviceArray, out: DeviceArray, stream: Stream = 0) -> None: ...

# Pooling (float32 NCHW, C-contiguous; indices int64).
def max_pool2d_fwd(input: DeviceArray, out: DeviceArray, out_indices: DeviceArray | None, kh: int, kw: int, sh: int,
                   sw: int, ph: int, pw: int, dh: int, dw: int, stream: Stream = 0) -> None: ...
def max_pool2d_bwd(grad_output: DeviceArray, indices: DeviceArray, out: DeviceArray, stream: Stream = 0) -> None: ...
def avg_pool2d_fwd(input: DeviceArray, out: DeviceArray, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int,
                   count_include_pad: bool, stream: Stream = 0) -> None: ...
def avg_pool2d_bwd(grad_output: DeviceArray, out: DeviceArray, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int,
                   count_include_pad: bool, stream: Stream = 0) -> None: ...
def adaptive_avg_pool2d_fwd(input: DeviceArray, out: DeviceArray, stream: Stream = 0) -> None: ...
def adaptive_avg_pool2d_bwd(grad_output: DeviceArray, out: DeviceArray, stream: Stream = 0) -> None: ...

# conv2d (float32 NCHW input, OIHW weight; implicit GEMMs).
def conv2d_fwd(input: DeviceArray, weight: DeviceArray, bias: DeviceArray | None, out: DeviceArray, sh: int, sw: int,
               pt: int, pl: int, dh: int, dw: int, groups: int, relu: bool, stream: Stream = 0) -> None: ...
def conv2d_bwd_data(grad_output: DeviceArray, weight: DeviceArray, out: DeviceArray, sh: int, sw: int, pt: int,
                    pl: int, dh: int, dw: int, groups: int, stream: Stream = 0) -> None: ...
def conv2d_bwd_weight(input: DeviceArray, grad_output: DeviceArray, out: DeviceArray, out_bias: DeviceArray | None,
                      sh: int, sw: int, pt: int, pl: int, dh: int, dw: int, groups: int,
                      scratch: DeviceArray | None = None, stream: Stream = 0) -> None: ...
def conv2d_bwd_weight_scratch_size(input: DeviceArray, grad_output: DeviceArray, out: DeviceArray, sh: int, sw: int,
                                   pt: int, pl: int, dh: int, dw: int, groups: int) -> int: ...

# Optimizer steps over whole lists of float32 C-contiguous arrays, in place (one launch per 48 / 96).
def adam_step(params: Sequence[DeviceArray], grads: Sequence[DeviceArray], exp_avgs: Sequence[DeviceArray],
              exp_avg_sqs: Sequence[DeviceArray], max_exp_avg_sqs: Sequence[DeviceArray] | None, steps: Sequence[int],
              lr: float, beta1: float, beta2: float, eps: float, weight_decay: float, decoupled: bool,
              maximize: bool, stream: Stream = 0) -> None: ...
def sgd_step(params: Sequence[DeviceArray], grads: Sequence[DeviceArray],
             momentum_buffers: Sequence[DeviceArray] | None, lr: float, momentum: float, dampening: float,
             weight_decay: float, nesterov: bool, maximize: bool, first: bool, stream: Stream = 0) -> None: ...
