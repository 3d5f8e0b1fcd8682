// Elementwise activations on contiguous float32/float64 arrays, split across
// threads. Memory-bound (ReLU) or libm-bound (erf), so plain loops the compiler
// vectorises where it can; no per-ISA variants. The results are exactly those
// of the NumPy expressions named below, which are the tests' references.
#pragma once

#include <cstdint>

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
void gelu_fwd(const T* x, T* y, int64_t n, int nthreads);
// dx = g * (cdf + x * pdf), cdf as in gelu_fwd and pdf = exp(-x^2 / 2) / sqrt(2 pi): the
// gradient from the forward's input alone (nothing saved but x).
template <class T>
void gelu_bwd(const T* g, const T* x, T* dx, int64_t n, int nthreads);

}  // namespace ember::eltwise
