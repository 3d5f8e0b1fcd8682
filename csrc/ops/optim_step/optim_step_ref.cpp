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
      // The moments are float32 state: the update reads them as stored (a second moment
      // beyond float32's range is infinite there, and the step is zero, as in PyTorch).
      t.m[i] = static_cast<float>(t.m[i] + (1.0 - h.beta1) * (g - t.m[i]));
      t.v[i] = static_cast<float>(static_cast<double>(h.beta2) * t.v[i] + (1.0 - h.beta2) * g * g);
      const double m = t.m[i];
      double vv = t.v[i];
      if (t.vmax) {
        const double old = t.vmax[i];
        vv = old > vv || old != old ? old : vv;  // NaN in either propagates, as torch.maximum
        t.vmax[i] = static_cast<float>(vv);
      }
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
