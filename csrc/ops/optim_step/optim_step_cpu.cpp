// Optimizer steps on the CPU: one pass per parameter, elements split across
// threads, each range run by the active ISA's loops (optim_step_impl.h).
#include <algorithm>
#include <cmath>

#include "core/registry.h"
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
  const AdamConsts c{a.lr / bc1,
                     1.0f / std::sqrt(bc2),
                     1.0f - a.lr * a.weight_decay,
                     a.decoupled ? 0.0f : a.weight_decay,
                     1.0f - a.beta1,
                     1.0f - a.beta2,
                     a.maximize ? -1.0f : 1.0f};
  const StepKernels& k = lookup<StepKernels>("optim_step");
  for_ranges(a.n, nthreads, [&](int64_t lo, int64_t hi) { k.adam(a, c, lo, hi); });
}

void sgd_step(const SgdArgs& a, int nthreads) {
  const StepKernels& k = lookup<StepKernels>("optim_step");
  for_ranges(a.n, nthreads, [&](int64_t lo, int64_t hi) { k.sgd(a, lo, hi); });
}

}  // namespace ember::optim
