#include "ops/eltwise/eltwise.h"

#include <cmath>
#include <type_traits>

#include "core/registry.h"
#include "core/threads.h"

namespace ember::eltwise {
namespace {

// Below this many elements per thread, waking another costs more than it saves.
constexpr int64_t kMinPerThread = int64_t(1) << 15;

}  // namespace

template <class T>
void relu_fwd(const T* x, T* y, int64_t n, int nthreads) {
  parallel_ranges(n, nthreads, kMinPerThread, [&](int64_t lo, int64_t hi) {
    const T* __restrict xs = x;
    T* __restrict ys = y;
    for (int64_t i = lo; i < hi; ++i) {
      const T xi = xs[i];
      ys[i] = !(xi <= T(0)) ? xi : T(0);  // NaN kept; -0.0 becomes +0.0, as in NumPy
    }
  });
}

template <class T>
void relu_bwd(const T* g, const T* y, T* dx, int64_t n, int nthreads) {
  parallel_ranges(n, nthreads, kMinPerThread, [&](int64_t lo, int64_t hi) {
    const T* __restrict gs = g;
    const T* __restrict ys = y;
    T* __restrict out = dx;
    for (int64_t i = lo; i < hi; ++i) {
      const T gi = gs[i], yi = ys[i];  // both loaded, so the select vectorises
      out[i] = !(yi <= T(0)) ? gi : T(0);  // the gradient passes a NaN too, as PyTorch's
    }
  });
}

template <class T>
void erf(const T* x, T* y, int64_t n, int nthreads) {
  parallel_ranges(n, nthreads, int64_t(1) << 12, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) y[i] = std::erf(x[i]);
  });
}

namespace {

// GELU's scalar step-by-step expression over [lo, hi).
template <class T>
void gelu_fwd_scalar(const T* x, T* y, int64_t lo, int64_t hi) {
  const T root2 = static_cast<T>(std::sqrt(2.0));
  for (int64_t i = lo; i < hi; ++i) {
    const T cdf = T(0.5) * (T(1) + std::erf(x[i] / root2));
    y[i] = x[i] * cdf;
  }
}

template <class T>
void gelu_bwd_scalar(const T* g, const T* x, T* dx, int64_t lo, int64_t hi) {
  const T root2 = static_cast<T>(std::sqrt(2.0));
  const T root_2pi = static_cast<T>(std::sqrt(2.0 * M_PI));
  for (int64_t i = lo; i < hi; ++i) {
    const T xi = x[i];
    const T cdf = T(0.5) * (T(1) + std::erf(xi / root2));
    const T pdf = std::exp(T(-0.5) * xi * xi) / root_2pi;
    dx[i] = g[i] * (cdf + xi * pdf);
  }
}

// Elements per thread below which waking another costs more than it saves.
constexpr int64_t kGeluPerThread = int64_t(1) << 12;

}  // namespace

template <class T>
void gelu_fwd(const T* x, T* y, int64_t n, Isa isa, int nthreads) {
  if constexpr (std::is_same_v<T, float>) {
    const GeluKernels& k = lookup<GeluKernels>("gelu", isa);
    parallel_ranges(n, nthreads, kGeluPerThread, [&](int64_t lo, int64_t hi) { k.fwd(x + lo, y + lo, hi - lo); });
  } else {
    parallel_ranges(n, nthreads, kGeluPerThread, [&](int64_t lo, int64_t hi) { gelu_fwd_scalar(x, y, lo, hi); });
  }
}

template <class T>
void gelu_bwd(const T* g, const T* x, T* dx, int64_t n, Isa isa, int nthreads) {
  if constexpr (std::is_same_v<T, float>) {
    const GeluKernels& k = lookup<GeluKernels>("gelu", isa);
    parallel_ranges(n, nthreads, kGeluPerThread,
                    [&](int64_t lo, int64_t hi) { k.bwd(g + lo, x + lo, dx + lo, hi - lo); });
  } else {
    parallel_ranges(n, nthreads, kGeluPerThread,
                    [&](int64_t lo, int64_t hi) { gelu_bwd_scalar(g, x, dx, lo, hi); });
  }
}

template void relu_fwd<float>(const float*, float*, int64_t, int);
template void relu_fwd<double>(const double*, double*, int64_t, int);
template void relu_bwd<float>(const float*, const float*, float*, int64_t, int);
template void relu_bwd<double>(const double*, const double*, double*, int64_t, int);
template void erf<float>(const float*, float*, int64_t, int);
template void erf<double>(const double*, double*, int64_t, int);
template void gelu_fwd<float>(const float*, float*, int64_t, Isa, int);
template void gelu_fwd<double>(const double*, double*, int64_t, Isa, int);
template void gelu_bwd<float>(const float*, const float*, float*, int64_t, Isa, int);
template void gelu_bwd<double>(const double*, const double*, double*, int64_t, Isa, int);

}  // namespace ember::eltwise
