// The softmax cross-entropy oracle: per row, two plain passes in double (max,
// then sums), std::exp and std::log, over float32 or float64 data. Deliberately no online rescaling, no
// vectors, no threads: the fast paths are tested against it.
#include <cmath>
#include <limits>

#include "ops/cross_entropy/cross_entropy.h"

namespace ember::cross_entropy {
namespace {

template <class T>
double row_lse(const T* z, int64_t v) {
  double m = -std::numeric_limits<double>::infinity();
  bool nan = false;
  for (int64_t j = 0; j < v; ++j) {
    nan |= std::isnan(z[j]);
    m = std::max(m, static_cast<double>(z[j]));
  }
  if (nan) return std::numeric_limits<double>::quiet_NaN();
  if (std::isinf(m) && m < 0) return m;  // every class masked
  double s = 0.0;
  for (int64_t j = 0; j < v; ++j) s += std::exp(static_cast<double>(z[j]) - m);
  return m + std::log(s);
}

// b_j of the contract for row r.
template <class T>
double target_weight(const ProblemT<T>& p, int64_t r, int64_t j) {
  const double w = p.weight ? p.weight[j] : 1.0;
  if (p.soft) return w * ((1.0 - p.eps) * p.soft[r * p.v + j] + static_cast<double>(p.eps) / p.v);
  return w;
}

template <class T>
bool ignored(const ProblemT<T>& p, int64_t r) { return p.target && p.target[r] == p.ignore_index; }

}  // namespace

template <class T>
void cross_entropy_fwd_ref(const ProblemT<T>& p, const RowLosses& out) {
  for (int64_t r = 0; r < p.b; ++r) {
    const T* z = p.z + r * p.v;
    const double lse = row_lse(z, p.v);
    out.lse[r] = lse;
    out.nll[r] = out.smooth[r] = 0.0;
    if (ignored(p, r)) continue;
    if (p.soft) {
      double loss = 0.0;
      for (int64_t j = 0; j < p.v; ++j) {
        const double b = target_weight(p, r, j);
        if (b != 0.0) loss += b * (lse - z[j]);  // a zero target never multiplies an infinite distance
      }
      out.nll[r] = loss;
      continue;
    }
    const int64_t t = p.target[r];
    out.nll[r] = (p.weight ? p.weight[t] : 1.0) * (lse - z[t]);
    if (p.eps > 0.0f) {
      double smooth = 0.0;
      for (int64_t j = 0; j < p.v; ++j) smooth += target_weight(p, r, j) * (lse - z[j]);
      out.smooth[r] = smooth;
    }
  }
}

template <class T>
void cross_entropy_bwd_ref(const ProblemT<T>& p, const double* lse, const T* scale, T* dz) {
  for (int64_t r = 0; r < p.b; ++r) {
    const T* z = p.z + r * p.v;
    T* d = dz + r * p.v;
    const double c = scale[r];
    if (c == 0.0 || ignored(p, r)) {
      for (int64_t j = 0; j < p.v; ++j) d[j] = T(0);
      continue;
    }
    double a = 0.0;
    for (int64_t j = 0; j < p.v; ++j) a += p.soft ? target_weight(p, r, j) : (p.weight ? p.weight[j] : 1.0);
    int64_t t = -1;
    if (!p.soft) {  // a = (1 - eps) w_t + (eps / V) sum_j w_j
      t = p.target[r];
      a = (1.0 - p.eps) * (p.weight ? p.weight[t] : 1.0) + static_cast<double>(p.eps) / p.v * a;
    }
    for (int64_t j = 0; j < p.v; ++j) {
      double b = p.soft ? target_weight(p, r, j) : static_cast<double>(p.eps) / p.v * (p.weight ? p.weight[j] : 1.0);
      if (j == t) b += (1.0 - p.eps) * (p.weight ? p.weight[t] : 1.0);
      d[j] = static_cast<T>(c * (a * std::exp(static_cast<double>(z[j]) - lse[r]) - b));
    }
  }
}

template void cross_entropy_fwd_ref<float>(const ProblemT<float>&, const RowLosses&);
template void cross_entropy_fwd_ref<double>(const ProblemT<double>&, const RowLosses&);
template void cross_entropy_bwd_ref<float>(const ProblemT<float>&, const double*, const float*, float*);
template void cross_entropy_bwd_ref<double>(const ProblemT<double>&, const double*, const double*, double*);

}  // namespace ember::cross_entropy
