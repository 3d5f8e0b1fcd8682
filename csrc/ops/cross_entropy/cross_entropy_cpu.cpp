// softmax cross-entropy on the CPU: rows split across threads, each row one
// call of the ISA's row kernel (cross_entropy_rows_impl.h). The forward writes four
// doubles per row and the backward one row of dz per row of z: the kernel is
// bound by reading the logits (once forward, once backward) and writing dz.
#include <algorithm>

#include "core/registry.h"
#include "core/threads.h"
#include "ops/cross_entropy/cross_entropy.h"

namespace ember::cross_entropy {
namespace {

// Below this many logits per thread, waking another costs more than it saves.
constexpr int64_t kMinPerThread = int64_t(1) << 15;

template <class F>
void for_rows(const Problem& p, int nthreads, F&& row) {
  const int64_t nt = std::max<int64_t>(1, std::min<int64_t>({nthreads, p.b, p.b * p.v / kMinPerThread}));
  parallel_run(static_cast<int>(nt), [&](int tid) {
    for (int64_t r = p.b * tid / nt; r < p.b * (tid + 1) / nt; ++r) row(r);
  });
}

bool ignored(const Problem& p, int64_t r) { return p.target && p.target[r] == p.ignore_index; }

}  // namespace

void cross_entropy_fwd(const Problem& p, const RowLosses& out, Isa isa, int nthreads) {
  const RowKernels& k = lookup<RowKernels>("cross_entropy", isa);
  const bool weighted = p.soft || p.eps > 0.0f;
  for_rows(p, nthreads, [&](int64_t r) {
    const float* z = p.z + r * p.v;
    double lse, dist = 0.0, bsum = 0.0;
    k.fwd(z, p.v, p.weight, p.soft ? p.soft + r * p.v : nullptr, p.eps, weighted, &lse, &dist, &bsum);
    out.lse[r] = lse;
    out.nll[r] = out.smooth[r] = 0.0;
    if (ignored(p, r)) return;
    if (p.soft) {
      out.nll[r] = dist;
      return;
    }
    const int64_t t = p.target[r];
    out.nll[r] = (p.weight ? p.weight[t] : 1.0) * (lse - z[t]);
    if (p.eps > 0.0f) out.smooth[r] = dist;
  });
}

void cross_entropy_bwd(const Problem& p, const double* lse, const float* scale, float* dz, Isa isa, int nthreads) {
  const RowKernels& k = lookup<RowKernels>("cross_entropy", isa);
  const double cc = static_cast<double>(p.eps) / p.v;
  double wsum = static_cast<double>(p.v);  // sum_j w_j, for hard targets' a_r
  if (p.weight) {
    wsum = 0.0;
    for (int64_t j = 0; j < p.v; ++j) wsum += p.weight[j];
  }
  for_rows(p, nthreads, [&](int64_t r) {
    float* d = dz + r * p.v;
    const float c = scale[r];
    if (c == 0.0f || ignored(p, r)) {
      std::fill(d, d + p.v, 0.0f);
      return;
    }
    const float* soft = p.soft ? p.soft + r * p.v : nullptr;
    double a;
    if (soft) {  // a_r = sum_j w_j q_rj
      a = 0.0;
      for (int64_t j = 0; j < p.v; ++j) a += (p.weight ? p.weight[j] : 1.0) * ((1.0 - p.eps) * soft[j] + cc);
    } else {
      a = (1.0 - p.eps) * (p.weight ? p.weight[p.target[r]] : 1.0) + cc * wsum;
    }
    k.bwd(p.z + r * p.v, p.v, static_cast<float>(lse[r]), c, static_cast<float>(a), p.weight, soft,
          soft ? 1.0f - p.eps : 0.0f, static_cast<float>(cc), d);
    if (!soft) {
      const int64_t t = p.target[r];
      d[t] -= c * (1.0f - p.eps) * (p.weight ? p.weight[t] : 1.0f);
    }
  });
}

}  // namespace ember::cross_entropy
