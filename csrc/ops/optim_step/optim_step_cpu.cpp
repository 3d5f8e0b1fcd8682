// Optimizer steps on the CPU: the elements of all the call's tensors, taken
// end to end, are split into one contiguous range per thread; each thread
// runs the active ISA's loops (optim_step_loops_impl.h) over the pieces of
// the tensors its range covers. Every element is read and written once.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/registry.h"
#include "core/threads.h"
#include "ops/optim_step/optim_step.h"

namespace ember::optim_step {
namespace {

// Below this many elements per thread, waking another costs more than it saves.
constexpr int64_t kMinPerThread = int64_t(1) << 15;

// Runs piece(k, lo, hi) over elements [lo, hi) of tensor k for every tensor,
// the tensors' elements split across threads as one range.
template <class Tensor, class F>
void for_pieces(const Tensor* tensors, int64_t count, int nthreads, F&& piece) {
  std::vector<int64_t> start(static_cast<size_t>(count) + 1, 0);  // tensor k holds [start[k], start[k + 1])
  for (int64_t k = 0; k < count; ++k) start[k + 1] = start[k] + tensors[k].n;
  parallel_ranges(start[count], nthreads, kMinPerThread, [&](int64_t lo, int64_t hi) {
    int64_t k = std::upper_bound(start.begin(), start.end(), lo) - start.begin() - 1;
    for (; k < count && start[k] < hi; ++k) {
      const int64_t a = std::max(lo, start[k]), b = std::min(hi, start[k + 1]);
      if (a < b) piece(k, a - start[k], b - start[k]);
    }
  });
}

}  // namespace

void adam_step(const AdamHyper& h, const AdamTensor* tensors, int64_t count, Isa isa, int nthreads) {
  std::vector<AdamConsts> consts(static_cast<size_t>(count));
  for (int64_t k = 0; k < count; ++k) {
    const double t = static_cast<double>(tensors[k].step);
    const float bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(h.beta1), t));
    const float bc2 = static_cast<float>(1.0 - std::pow(static_cast<double>(h.beta2), t));
    consts[k] = {h.lr / bc1,
                 1.0f / std::sqrt(bc2),
                 1.0f - h.lr * h.weight_decay,
                 h.decoupled ? 0.0f : h.weight_decay,
                 1.0f - h.beta1,
                 1.0f - h.beta2,
                 h.maximize ? -1.0f : 1.0f,
                 h.beta1 == 0.0f};
  }
  const Loops& loops = lookup<Loops>("optim_step", isa);
  for_pieces(tensors, count, nthreads,
             [&](int64_t k, int64_t lo, int64_t hi) { loops.adam(h, tensors[k], consts[k], lo, hi); });
}

void sgd_step(const SgdHyper& h, const SgdTensor* tensors, int64_t count, Isa isa, int nthreads) {
  const Loops& loops = lookup<Loops>("optim_step", isa);
  for_pieces(tensors, count, nthreads, [&](int64_t k, int64_t lo, int64_t hi) { loops.sgd(h, tensors[k], lo, hi); });
}

}  // namespace ember::optim_step
