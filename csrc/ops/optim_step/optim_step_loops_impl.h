// The optimizer-step loops, included only by optim_step_loops_<isa>.cpp, each
// compiling them with its own ISA's flags. Everything is in an anonymous
// namespace so that no translation unit's copy can be merged into another's.
// Each flag gets its own instantiation, so the loops hold no branches and
// vectorise.
#pragma once

#include <cmath>
#include <cstdint>

#include "ops/optim_step/optim_step.h"

namespace ember::optim_step {
namespace {

template <bool Decoupled, bool Amsgrad>
void adam_loop(const AdamHyper& h, const AdamTensor& t, const AdamConsts& c, int64_t lo, int64_t hi) {
  float* __restrict p = t.p;
  const float* __restrict g = t.g;
  float* __restrict m = t.m;
  float* __restrict v = t.v;
  float* __restrict vmax = t.vmax;
  const float beta2 = h.beta2, eps = h.eps;
  for (int64_t i = lo; i < hi; ++i) {
    const float pi = Decoupled ? p[i] * c.shrink : p[i];
    const float gi = c.sign * g[i] + c.wd * pi;
    const float mi = c.m_is_g ? gi : m[i] + c.one_m_b1 * (gi - m[i]);
    const float vi = beta2 * v[i] + c.one_m_b2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    float vv = vi;
    if (Amsgrad) {
      vv = vmax[i] > vi || vmax[i] != vmax[i] ? vmax[i] : vi;  // NaN in either propagates
      vmax[i] = vv;
    }
    p[i] = pi - c.step_size * mi / (std::sqrt(vv) * c.inv_sqrt_bc2 + eps);
  }
}

void adam_range(const AdamHyper& h, const AdamTensor& t, const AdamConsts& c, int64_t lo, int64_t hi) {
  if (h.decoupled)
    t.vmax ? adam_loop<true, true>(h, t, c, lo, hi) : adam_loop<true, false>(h, t, c, lo, hi);
  else
    t.vmax ? adam_loop<false, true>(h, t, c, lo, hi) : adam_loop<false, false>(h, t, c, lo, hi);
}

template <bool Momentum>
void sgd_loop(const SgdHyper& h, const SgdTensor& t, int64_t lo, int64_t hi) {
  float* __restrict p = t.p;
  const float* __restrict g = t.g;
  float* __restrict buf = t.buf;
  const float sign = h.maximize ? -1.0f : 1.0f, keep = 1.0f - h.dampening;
  const float wd = h.weight_decay, lr = h.lr, mom = h.momentum;
  for (int64_t i = lo; i < hi; ++i) {
    float d = sign * g[i] + wd * p[i];
    if (Momentum) {
      const float b = h.first ? d : mom * buf[i] + keep * d;
      buf[i] = b;
      d = h.nesterov ? d + mom * b : b;
    }
    p[i] -= lr * d;
  }
}

void sgd_range(const SgdHyper& h, const SgdTensor& t, int64_t lo, int64_t hi) {
  t.buf ? sgd_loop<true>(h, t, lo, hi) : sgd_loop<false>(h, t, lo, hi);
}

}  // namespace
}  // namespace ember::optim_step
