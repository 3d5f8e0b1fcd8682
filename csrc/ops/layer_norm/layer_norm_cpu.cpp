// Layer normalisation on the CPU: plain loops over one row at a time (memory-bound: each row
// is read once from memory and then from L1), rows split across threads.
#include "ops/layer_norm/layer_norm.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/threads.h"

namespace ember::layer_norm {
namespace {

// Rows per thread below which waking another costs more than it saves (in elements).
constexpr int64_t kMinPerThread = int64_t(1) << 14;

int threads_for(int64_t rows, int64_t n, int nthreads) {
  const int64_t by_size = std::max<int64_t>(1, rows * n / kMinPerThread);
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>({nthreads, rows, by_size})));
}

}  // namespace

template <class T>
void layer_norm_fwd(const T* x, const T* weight, const T* bias, int64_t rows, int64_t n, double eps, T* y, T* mean,
                    T* rstd, int nthreads, bool center) {
  const int nt = threads_for(rows, n, nthreads);
  parallel_run(nt, [&](int tid) {
    for (int64_t r = rows * tid / nt; r < rows * (tid + 1) / nt; ++r) {
      const T* xs = x + r * n;
      T* ys = y + r * n;
      double sum = 0;
      for (int64_t j = 0; j < n && center; ++j) sum += xs[j];
      const T m = static_cast<T>(sum / static_cast<double>(n));  // 0 for RMS normalisation
      double sq = 0;
      for (int64_t j = 0; j < n; ++j) {
        const double d = static_cast<double>(xs[j] - m);
        sq += d * d;
      }
      const T rs = T(1) / std::sqrt(static_cast<T>(sq / static_cast<double>(n)) + static_cast<T>(eps));
      for (int64_t j = 0; j < n; ++j) {
        T t = (xs[j] - m) * rs;
        if (weight) t = t * weight[j];
        ys[j] = bias ? t + bias[j] : t;
      }
      if (mean) mean[r] = m;
      rstd[r] = rs;
    }
  });
}

template <class T>
void layer_norm_bwd(const T* dy, const T* x, const T* weight, const T* mean, const T* rstd, int64_t rows, int64_t n,
                    T* dx, T* dweight, T* dbias, int nthreads, bool center) {
  const int nt = threads_for(rows, n, nthreads);
  const bool columns = dweight || dbias;
  std::vector<double> partial(columns ? static_cast<size_t>(2 * nt * n) : 0, 0.0);  // per thread: dweight, dbias
  parallel_run(nt, [&](int tid) {
    double* pw = columns ? partial.data() + 2 * tid * n : nullptr;
    double* pb = columns ? pw + n : nullptr;
    for (int64_t r = rows * tid / nt; r < rows * (tid + 1) / nt; ++r) {
      const T* xs = x + r * n;
      const T* gs = dy + r * n;
      const T m = center ? mean[r] : T(0), rs = rstd[r];
      double sg = 0, sgx = 0;
      for (int64_t j = 0; j < n; ++j) {
        const T xhat = (xs[j] - m) * rs;
        const T g = weight ? gs[j] * weight[j] : gs[j];
        sg += g;
        sgx += static_cast<double>(g) * static_cast<double>(xhat);
        if (columns) {
          pw[j] += static_cast<double>(gs[j]) * static_cast<double>(xhat);
          pb[j] += gs[j];
        }
      }
      const T mg = center ? static_cast<T>(sg / static_cast<double>(n)) : T(0);
      const T mgx = static_cast<T>(sgx / static_cast<double>(n));
      if (dx) {
        T* out = dx + r * n;
        for (int64_t j = 0; j < n; ++j) {
          const T xhat = (xs[j] - m) * rs;
          const T g = weight ? gs[j] * weight[j] : gs[j];
          out[j] = rs * (g - mg - xhat * mgx);
        }
      }
    }
  });
  for (int64_t j = 0; j < n && columns; ++j) {
    double w = 0, b = 0;
    for (int t = 0; t < nt; ++t) {
      w += partial[2 * t * n + j];
      b += partial[(2 * t + 1) * n + j];
    }
    if (dweight) dweight[j] = static_cast<T>(w);
    if (dbias) dbias[j] = static_cast<T>(b);
  }
}

template void layer_norm_fwd<float>(const float*, const float*, const float*, int64_t, int64_t, double, float*,
                                    float*, float*, int, bool);
template void layer_norm_fwd<double>(const double*, const double*, const double*, int64_t, int64_t, double, double*,
                                     double*, double*, int, bool);
template void layer_norm_bwd<float>(const float*, const float*, const float*, const float*, const float*, int64_t,
                                    int64_t, float*, float*, float*, int, bool);
template void layer_norm_bwd<double>(const double*, const double*, const double*, const double*, const double*,
                                     int64_t, int64_t, double*, double*, double*, int, bool);

}  // namespace ember::layer_norm
