// The optimizer-step loops, included only by optim_step_kernels*.cpp, each
// compiling them with its own ISA's flags. Everything is in an anonymous
// namespace so that no translation unit's copy can be merged into another's.
// Each flag gets its own instantiation, so the loops hold no branches and
// vectorise.
#pragma once

#include <cmath>
#include <cstdint>

#include "ops/optim_step/optim_step.h"

namespace ember::optim {
namespace {

template <bool Decoupled, bool Amsgrad>
void adam_loop(const AdamArgs& a, const AdamConsts& c, int64_t lo, int64_t hi) {
  float* __restrict p = a.p;
  const float* __restrict g = a.g;
  float* __restrict m = a.m;
  float* __restrict v = a.v;
  float* __restrict vmax = a.vmax;
  const float beta2 = a.beta2, eps = a.eps;
  for (int64_t i = lo; i < hi; ++i) {
    const float pi = Decoupled ? p[i] * c.shrink : p[i];
    const float gi = c.sign * g[i] + c.wd * pi;
    const float mi = m[i] + c.one_m_b1 * (gi - m[i]);
    const float vi = beta2 * v[i] + c.one_m_b2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    float vv = vi;
    if (Amsgrad) {
      vv = vmax[i] > vi ? vmax[i] : vi;
      vmax[i] = vv;
    }
    p[i] = pi - c.step_size * mi / (std::sqrt(vv) * c.inv_sqrt_bc2 + eps);
  }
}

void adam_range(const AdamArgs& a, const AdamConsts& c, int64_t lo, int64_t hi) {
  if (a.decoupled)
    a.vmax ? adam_loop<true, true>(a, c, lo, hi) : adam_loop<true, false>(a, c, lo, hi);
  else
    a.vmax ? adam_loop<false, true>(a, c, lo, hi) : adam_loop<false, false>(a, c, lo, hi);
}

template <bool Momentum>
void sgd_loop(const SgdArgs& a, int64_t lo, int64_t hi) {
  float* __restrict p = a.p;
  const float* __restrict g = a.g;
  float* __restrict buf = a.buf;
  const float sign = a.maximize ? -1.0f : 1.0f, keep = 1.0f - a.dampening;
  const float wd = a.weight_decay, lr = a.lr, mom = a.momentum;
  for (int64_t i = lo; i < hi; ++i) {
    float d = sign * g[i] + wd * p[i];
    if (Momentum) {
      const float b = a.first ? d : mom * buf[i] + keep * d;
      buf[i] = b;
      d = a.nesterov ? d + mom * b : b;
    }
    p[i] -= lr * d;
  }
}

void sgd_range(const SgdArgs& a, int64_t lo, int64_t hi) {
  a.buf ? sgd_loop<true>(a, lo, hi) : sgd_loop<false>(a, lo, hi);
}

}  // namespace
}  // namespace ember::optim
