// Elementwise activations on contiguous float32/float64 arrays, split across
// threads. ReLU is memory-bound: plain loops the compiler vectorises, exactly the
// NumPy expressions named below (the tests' references). erf is std::erf's. GELU
// in float64 is the step-by-step expression on std::erf; in float32 it runs on the
// per-ISA vector kernels of gelu_impl.h (their own erf, within a few ulps of the
// expression), every element alike whatever the thread count.
#pragma once

#include <cstdint>

#include "core/cpu_features.h"

namespace ember::eltwise {

// y = np.maximum(x, 0): NaN propagates, -0.0 becomes +0.0.
template <class T>
void relu_fwd(const T* x, T* y, int64_t n, int nthreads);
// dx = np.where(y > 0, g, 0), y the forward's output: zero wherever the unit
// is off, whatever g holds there (as PyTorch's threshold_backward).
template <class T>
void relu_bwd(const T* g, const T* y, T* dx, int64_t n, int nthreads);
// y = erf(x) (std::erf, correctly rounded to within an ulp or two).
template <class T>
void erf(const T* x, T* y, int64_t n, int nthreads);
// y = x * (0.5 * (1 + erf(x / sqrt(2)))), each step rounded to T: GELU with the exact normal CDF
// (PyTorch's approximate='none'), in one pass instead of NumPy's four.
template <class T>
void gelu_fwd(const T* x, T* y, int64_t n, Isa isa, int nthreads);
// dx = g * (cdf + x * pdf), cdf as in gelu_fwd and pdf = exp(-x^2 / 2) / sqrt(2 pi): the
// gradient from the forward's input alone (nothing saved but x).
template <class T>
void gelu_bwd(const T* g, const T* x, T* dx, int64_t n, Isa isa, int nthreads);

// The float32 vector kernels of one ISA (gelu_<isa>.cpp; the registry's "gelu" rows, in
// gelu_registry.cpp) over n elements.
struct GeluKernels {
  void (*fwd)(const float* x, float* y, int64_t n);
  void (*bwd)(const float* g, const float* x, float* dx, int64_t n);
};
extern const GeluKernels gelu_generic;
extern const GeluKernels gelu_avx2;
extern const GeluKernels gelu_avx512;

}  // namespace ember::eltwise
