// Elementwise activations on the GPU: plain C++ launchers (no CUDA headers),
// the same results as eltwise.h's CPU loops. All arrays contiguous with n
// elements; out may be an input itself. Launched on `stream`, asynchronous.
#pragma once

#include <cstdint>

#include "core/cuda_device.h"

namespace ember::cuda {

// y = x > 0 ? x : 0, NaN kept, -0.0 -> +0.0 (as NumPy's maximum(x, 0)).
template <class T>
void relu_fwd(const T* x, T* y, int64_t n, stream_t stream);
// dx = y > 0 ? g : 0, y being relu's output.
template <class T>
void relu_bwd(const T* g, const T* y, T* dx, int64_t n, stream_t stream);
// y = erf(x) (CUDA's erff / erf, within 2 ulp of the exact value; GELU uses it).
template <class T>
void erf(const T* x, T* y, int64_t n, stream_t stream);

}  // namespace ember::cuda
