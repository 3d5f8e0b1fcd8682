// The optimizer steps' hyper-parameter checks, shared by every front end (see optim_step.h).
#include <cmath>

#include "core/check.h"
#include "ops/optim_step/optim_step.h"

namespace ember::optim_step {

namespace {

void check_at_least(double v, double lo, const char* name) {
  EMBER_CHECK_VALUE(std::isfinite(v) && v >= lo, name, " must be a finite number >= ", lo, ", got ", v);
}

void check_beta(double v, const char* name) {
  EMBER_CHECK_VALUE(v >= 0.0 && v < 1.0, name, " must be in [0, 1), got ", v);
}

}  // namespace

void check_adam_hyper(double lr, double beta1, double beta2, double eps, double weight_decay) {
  check_at_least(lr, 0.0, "lr");
  check_beta(beta1, "beta1");
  check_beta(beta2, "beta2");
  check_at_least(eps, 0.0, "eps");
  check_at_least(weight_decay, 0.0, "weight_decay");
}

void check_sgd_hyper(double lr, double momentum, double dampening, double weight_decay, bool nesterov) {
  check_at_least(lr, 0.0, "lr");
  check_at_least(momentum, 0.0, "momentum");
  check_at_least(dampening, 0.0, "dampening");
  check_at_least(weight_decay, 0.0, "weight_decay");
  EMBER_CHECK_VALUE(!nesterov || (momentum > 0.0 && dampening == 0.0),
                    "nesterov needs momentum > 0 and dampening 0, got momentum ", momentum, " and dampening ",
                    dampening);
}

}  // namespace ember::optim_step
