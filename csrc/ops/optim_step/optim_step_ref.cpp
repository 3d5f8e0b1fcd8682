// The optimizer-step oracles: plain loops in double. No threads, no vectors.
#include <algorithm>
#include <cmath>

#include "ops/optim_step/optim_step.h"

namespace ember::optim {

void adam_step_ref(const AdamArgs& a) {
  const double bc1 = 1.0 - std::pow(static_cast<double>(a.beta1), static_cast<double>(a.step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(a.beta2), static_cast<double>(a.step));
  for (int64_t i = 0; i < a.n; ++i) {
    double g = a.maximize ? -a.g[i] : a.g[i];
    double p = a.p[i];
    if (a.decoupled)
      p *= 1.0 - static_cast<double>(a.lr) * a.weight_decay;
    else
      g += static_cast<double>(a.weight_decay) * p;
    const double m = a.m[i] + (1.0 - a.beta1) * (g - a.m[i]);
    const double v = static_cast<double>(a.beta2) * a.v[i] + (1.0 - a.beta2) * g * g;
    double vv = v;
    if (a.vmax) {
      vv = std::max(static_cast<double>(a.vmax[i]), v);
      a.vmax[i] = static_cast<float>(vv);
    }
    a.m[i] = static_cast<float>(m);
    a.v[i] = static_cast<float>(v);
    a.p[i] = static_cast<float>(p - a.lr / bc1 * m / (std::sqrt(vv) / std::sqrt(bc2) + a.eps));
  }
}

void sgd_step_ref(const SgdArgs& a) {
  for (int64_t i = 0; i < a.n; ++i) {
    double d = (a.maximize ? -a.g[i] : a.g[i]) + static_cast<double>(a.weight_decay) * a.p[i];
    if (a.buf) {
      const double b = a.first ? d : static_cast<double>(a.momentum) * a.buf[i] + (1.0 - a.dampening) * d;
      a.buf[i] = static_cast<float>(b);
      d = a.nesterov ? d + static_cast<double>(a.momentum) * b : b;
    }
    a.p[i] = static_cast<float>(a.p[i] - static_cast<double>(a.lr) * d);
  }
}

}  // namespace ember::optim
