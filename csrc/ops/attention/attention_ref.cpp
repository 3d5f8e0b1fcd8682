// The attention oracles: for each query, its whole row of scores, softmax and sums in double,
// no threads, no blocking, nothing reused from the forward (the backward recomputes every
// probability from q and k, and D_i = sum_j P_ij dP_ij rather than reading out).
#include <cmath>
#include <limits>
#include <vector>

#include "ops/attention/attention.h"

namespace ember::attention {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

template <class T>
double dot(const T* a, const T* b, int64_t n) {
  double s = 0;
  for (int64_t t = 0; t < n; ++t) s += static_cast<double>(a[t]) * static_cast<double>(b[t]);
  return s;
}

// Row i of head h of image b: the probabilities in pr (before dropout) and each entry's dropout
// factor in z (0, or 1 / (1 - p)); returns the row's log-sum-exp (-inf when no key is seen).
template <class T>
double row(const Problem& p, const T* q, const T* k, int64_t b, int64_t h, int64_t i, std::vector<double>& pr,
           std::vector<double>& z) {
  const int64_t g = h / (p.heads / p.kv_heads);
  const T* qi = q + ((b * p.heads + h) * p.tq + i) * p.d;
  double m = kNegInf;
  for (int64_t j = 0; j < p.tk; ++j) {
    double s = kNegInf;
    if (!(p.causal && j > i)) {
      s = p.scale * dot(qi, k + ((b * p.kv_heads + g) * p.tk + j) * p.d, p.d);
      if (p.mask)
        s += p.mask[b * p.mask_strides[0] + h * p.mask_strides[1] + i * p.mask_strides[2] + j * p.mask_strides[3]];
    }
    pr[j] = s;
    if (s > m || std::isnan(s)) m = std::isnan(m) ? m : s;
  }
  if (m == kNegInf) {
    std::fill(pr.begin(), pr.end(), 0.0);
    std::fill(z.begin(), z.end(), 0.0);
    return kNegInf;
  }
  double l = 0;
  for (int64_t j = 0; j < p.tk; ++j) l += pr[j] = std::exp(pr[j] - m);
  const double keep = 1.0 / (1.0 - static_cast<double>(p.dropout_p));
  for (int64_t j = 0; j < p.tk; ++j) {
    pr[j] /= l;
    z[j] = p.dropout_p > 0 && !dropout_keep(p, b, h, i, j) ? 0.0 : (p.dropout_p > 0 ? keep : 1.0);
  }
  return m + std::log(l);
}

}  // namespace

template <class T>
void attention_fwd_ref(const Problem& p, const T* q, const T* k, const T* v, T* out, T* lse) {
  std::vector<double> pr(p.tk), z(p.tk);
  for (int64_t b = 0; b < p.batch; ++b)
    for (int64_t h = 0; h < p.heads; ++h) {
      const int64_t g = h / (p.heads / p.kv_heads);
      const T* vg = v + (b * p.kv_heads + g) * p.tk * p.dv;
      for (int64_t i = 0; i < p.tq; ++i) {
        const int64_t r = (b * p.heads + h) * p.tq + i;
        lse[r] = static_cast<T>(row(p, q, k, b, h, i, pr, z));
        for (int64_t c = 0; c < p.dv; ++c) {
          double acc = 0;
          for (int64_t j = 0; j < p.tk; ++j) acc += pr[j] * z[j] * static_cast<double>(vg[j * p.dv + c]);
          out[r * p.dv + c] = static_cast<T>(acc);
        }
      }
    }
}

template <class T>
void attention_bwd_ref(const Problem& p, const T* q, const T* k, const T* v, const T* dout, T* dq, T* dk, T* dv) {
  std::vector<double> pr(p.tk), z(p.tk), dp(p.tk);
  std::vector<double> dk_acc(static_cast<size_t>(p.batch * p.kv_heads * p.tk * p.d), 0.0);
  std::vector<double> dv_acc(static_cast<size_t>(p.batch * p.kv_heads * p.tk * p.dv), 0.0);
  for (int64_t b = 0; b < p.batch; ++b)
    for (int64_t h = 0; h < p.heads; ++h) {
      const int64_t kv = b * p.kv_heads + h / (p.heads / p.kv_heads);
      const T* kg = k + kv * p.tk * p.d;
      const T* vg = v + kv * p.tk * p.dv;
      for (int64_t i = 0; i < p.tq; ++i) {
        const int64_t r = (b * p.heads + h) * p.tq + i;
        const T* doi = dout + r * p.dv;
        const T* qi = q + r * p.d;
        row(p, q, k, b, h, i, pr, z);
        double di = 0;  // D_i = sum_j P_ij z_ij dP_ij
        for (int64_t j = 0; j < p.tk; ++j) {
          dp[j] = dot(doi, vg + j * p.dv, p.dv);
          di += pr[j] * z[j] * dp[j];
          for (int64_t c = 0; c < p.dv; ++c) dv_acc[(kv * p.tk + j) * p.dv + c] += pr[j] * z[j] * doi[c];
        }
        std::vector<double> dqi(static_cast<size_t>(p.d), 0.0);
        for (int64_t j = 0; j < p.tk; ++j) {
          const double ds = pr[j] * (z[j] * dp[j] - di) * p.scale;
          if (ds == 0) continue;
          for (int64_t c = 0; c < p.d; ++c) {
            dqi[c] += ds * static_cast<double>(kg[j * p.d + c]);
            dk_acc[(kv * p.tk + j) * p.d + c] += ds * static_cast<double>(qi[c]);
          }
        }
        for (int64_t c = 0; c < p.d; ++c) dq[r * p.d + c] = static_cast<T>(dqi[c]);
      }
    }
  for (size_t t = 0; t < dk_acc.size(); ++t) dk[t] = static_cast<T>(dk_acc[t]);
  for (size_t t = 0; t < dv_acc.size(); ++t) dv[t] = static_cast<T>(dv_acc[t]);
}

template void attention_fwd_ref<float>(const Problem&, const float*, const float*, const float*, float*, float*);
template void attention_fwd_ref<double>(const Problem&, const double*, const double*, const double*, double*,
                                        double*);
template void attention_bwd_ref<float>(const Problem&, const float*, const float*, const float*, const float*,
                                       float*, float*, float*);
template void attention_bwd_ref<double>(const Problem&, const double*, const double*, const double*,
                                        const double*, double*, double*, double*);

}  // namespace ember::attention
