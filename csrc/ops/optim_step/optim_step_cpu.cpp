// Optimizer steps on the CPU: one pass per parameter, elements split across
// threads. Bound by memory (Adam reads four arrays and writes three), so the
// loops are plain float code the compiler vectorises; no per-ISA variants.
#include <algorithm>
#include <cmath>

#include "core/threads.h"
#include "ops/optim_step/optim_step.h"

namespace ember::optim {
namespace {

// Below this many elements per thread, waking another costs more than it saves.
constexpr int64_t kMinPerThread = int64_t(1) << 15;

template <class F>
void for_ranges(int64_t n, int nthreads, F&& body) {
  const int64_t nt = std::max<int64_t>(1, std::min<int64_t>(nthreads, n / kMinPerThread));
  parallel_run(static_cast<int>(nt), [&](int tid) { body(n * tid / nt, n * (tid + 1) / nt); });
}

}  // namespace

void adam_step(const AdamArgs& a, int nthreads) {
  const float bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(a.beta1), static_cast<double>(a.step)));
  const float bc2 = static_cast<float>(1.0 - std::pow(static_cast<double>(a.beta2), static_cast<double>(a.step)));
  const float step_size = a.lr / bc1, inv_sqrt_bc2 = 1.0f / std::sqrt(bc2);
  const float shrink = 1.0f - a.lr * a.weight_decay, wd = a.decoupled ? 0.0f : a.weight_decay;
  const float one_m_b1 = 1.0f - a.beta1, one_m_b2 = 1.0f - a.beta2, sign = a.maximize ? -1.0f : 1.0f;
  for_ranges(a.n, nthreads, [&](int64_t lo, int64_t hi) {
    float* __restrict p = a.p;
    const float* __restrict g = a.g;
    float* __restrict m = a.m;
    float* __restrict v = a.v;
    for (int64_t i = lo; i < hi; ++i) {
      float pi = a.decoupled ? p[i] * shrink : p[i];
      const float gi = sign * g[i] + wd * pi;
      const float mi = m[i] + one_m_b1 * (gi - m[i]);
      const float vi = a.beta2 * v[i] + one_m_b2 * gi * gi;
      m[i] = mi;
      v[i] = vi;
      float vv = vi;
      if (a.vmax) {
        vv = a.vmax[i] > vi ? a.vmax[i] : vi;
        a.vmax[i] = vv;
      }
      p[i] = pi - step_size * mi / (std::sqrt(vv) * inv_sqrt_bc2 + a.eps);
    }
  });
}

void sgd_step(const SgdArgs& a, int nthreads) {
  const float sign = a.maximize ? -1.0f : 1.0f, keep = 1.0f - a.dampening;
  for_ranges(a.n, nthreads, [&](int64_t lo, int64_t hi) {
    float* __restrict p = a.p;
    const float* __restrict g = a.g;
    for (int64_t i = lo; i < hi; ++i) {
      float d = sign * g[i] + a.weight_decay * p[i];
      if (a.buf) {
        const float b = a.first ? d : a.momentum * a.buf[i] + keep * d;
        a.buf[i] = b;
        d = a.nesterov ? d + a.momentum * b : b;
      }
      p[i] -= a.lr * d;
    }
  });
}

}  // namespace ember::optim
