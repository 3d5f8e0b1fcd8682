// Optimizer steps: one fused pass over a parameter, its gradient and its state.
//
// Each reads every array once and writes the parameter and state once; no
// temporaries. The formulas are PyTorch's (torch.optim, single-tensor form):
//
// Adam / AdamW (decoupled), step t >= 1:
//   g = maximize ? -grad : grad
//   decoupled: p *= 1 - lr*wd            else: g += wd*p
//   m = m + (1 - b1)(g - m)              (lerp)
//   v = b2 v + (1 - b2) g^2
//   amsgrad: vmax = max(vmax, v), v' = vmax, else v' = v
//   p -= (lr / (1 - b1^t)) * m / (sqrt(v') / sqrt(1 - b2^t) + eps)
//
// SGD:
//   d = (maximize ? -grad : grad) + wd*p
//   momentum: buf = first ? d : momentum*buf + (1 - dampening)*d
//             d = nesterov ? d + momentum*buf : buf
//   p -= lr*d
#pragma once

#include <cstdint>

namespace ember::optim {

struct AdamArgs {
  int64_t n;
  float* p;
  const float* g;
  float* m;
  float* v;
  float* vmax;  // null unless amsgrad
  float lr, beta1, beta2, eps, weight_decay;
  int64_t step;
  bool decoupled, maximize;
};

struct SgdArgs {
  int64_t n;
  float* p;
  const float* g;
  float* buf;  // null without momentum
  float lr, momentum, dampening, weight_decay;
  bool nesterov, maximize, first;
};

// The oracles: plain loops, intermediate values in double, no threads.
void adam_step_ref(const AdamArgs& a);
void sgd_step_ref(const SgdArgs& a);

// The fast paths: the same float formulas, elements split across threads.
void adam_step(const AdamArgs& a, int nthreads);
void sgd_step(const SgdArgs& a, int nthreads);

// What the fast paths derive once per call from AdamArgs.
struct AdamConsts {
  float step_size, inv_sqrt_bc2, shrink, wd, one_m_b1, one_m_b2, sign;
};

// The loops over elements [lo, hi), compiled once per ISA (optim_step_kernels*.cpp) and
// chosen through the registry ("optim_step"): the updates are compute-bound (a square root
// and a division per element) until the vectors are wide.
struct StepKernels {
  void (*adam)(const AdamArgs& a, const AdamConsts& c, int64_t lo, int64_t hi);
  void (*sgd)(const SgdArgs& a, int64_t lo, int64_t hi);
};
extern const StepKernels step_kernels_generic;
extern const StepKernels step_kernels_avx2;
extern const StepKernels step_kernels_avx512;

}  // namespace ember::optim
