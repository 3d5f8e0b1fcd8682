// The optimizer-step oracles: plain loops in double, one tensor after another.
// No threads, no vectors.
#include <algorithm>
#include <cmath>

#include "ops/optim_step/optim_step.h"

namespace ember::optim_step {

void adam_step_ref(const AdamHyper& h, const AdamTensor* tensors, int64_t count) {
  for (int64_t k = 0; k < count; ++k) {
    const AdamTensor& t = tensors[k];
    const double bc1 = 1.0 - std::pow(static_cast<double>(h.beta1), static_cast<double>(t.step));
    const double bc2 = 1.0 - std::pow(static_cast<double>(h.beta2), static_cast<double>(t.step));
    for (int64_t i = 0; i < t.n; ++i) {
      double g = h.maximize ? -t.g[i] : t.g[i];
      double p = t.p[i];
      if (h.decoupled)
        p *= 1.0 - static_cast<double>(h.lr) * h.weight_decay;
      else
        g += static_cast<double>(h.weight_decay) * p;
      const double m = t.m[i] + (1.0 - h.beta1) * (g - t.m[i]);
      const double v = static_cast<double>(h.beta2) * t.v[i] + (1.0 - h.beta2) * g * g;
      double vv = v;
      if (t.vmax) {
        const double old = t.vmax[i];
        vv = old > v || old != old ? old : v;  // NaN in either propagates, as torch.maximum
        t.vmax[i] = static_cast<float>(vv);
      }
      t.m[i] = static_cast<float>(m);
      t.v[i] = static_cast<float>(v);
      t.p[i] = static_cast<float>(p - h.lr / bc1 * m / (std::sqrt(vv) / std::sqrt(bc2) + h.eps));
    }
  }
}

void sgd_step_ref(const SgdHyper& h, const SgdTensor* tensors, int64_t count) {
  for (int64_t k = 0; k < count; ++k) {
    const SgdTensor& t = tensors[k];
    for (int64_t i = 0; i < t.n; ++i) {
      double d = (h.maximize ? -t.g[i] : t.g[i]) + static_cast<double>(h.weight_decay) * t.p[i];
      if (t.buf) {
        const double b = h.first ? d : static_cast<double>(h.momentum) * t.buf[i] + (1.0 - h.dampening) * d;
        t.buf[i] = static_cast<float>(b);
        d = h.nesterov ? d + static_cast<double>(h.momentum) * b : b;
      }
      t.p[i] = static_cast<float>(t.p[i] - static_cast<double>(h.lr) * d);
    }
  }
}

}  // namespace ember::optim_step
