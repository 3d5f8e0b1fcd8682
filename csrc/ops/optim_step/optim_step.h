// Optimizer steps: one fused pass over a list of parameters (a parameter
// group), their gradients and their state.
//
// Each reads every array once and writes the parameters and state once; no
// temporaries. One call updates every tensor of the list, with the threads
// spread over all their elements together, so a group of many small
// parameters costs one call, not one per parameter. The formulas are
// PyTorch's (torch.optim, single-tensor form), per tensor:
//
// Adam / AdamW (decoupled), step t >= 1:
//   g = maximize ? -grad : grad
//   decoupled: p *= 1 - lr*wd            else: g += wd*p
//   m = m + (1 - b1)(g - m)              (lerp; m = g exactly when b1 = 0)
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

#include "core/cpu_features.h"

namespace ember::optim_step {

// The hyper-parameters shared by every tensor of a call.
struct AdamHyper {
  float lr, beta1, beta2, eps, weight_decay;
  bool decoupled, maximize;
};

// One parameter: n contiguous floats in each array.
struct AdamTensor {
  int64_t n;
  float* p;
  const float* g;
  float* m;
  float* v;
  float* vmax;   // null unless amsgrad
  int64_t step;  // >= 1, this tensor's own count
};

struct SgdHyper {
  float lr, momentum, dampening, weight_decay;
  bool nesterov, maximize, first;
};

struct SgdTensor {
  int64_t n;
  float* p;
  const float* g;
  float* buf;  // null without momentum
};

// The hyper-parameters, checked by every front end and refused by name as PyTorch's optimizers refuse them (and NaN or
// infinity anywhere): lr, eps and weight_decay >= 0, betas in [0, 1); for SGD momentum and
// dampening >= 0, and Nesterov only with momentum and no dampening.
void check_adam_hyper(double lr, double beta1, double beta2, double eps, double weight_decay);
void check_sgd_hyper(double lr, double momentum, double dampening, double weight_decay, bool nesterov);

// The oracles: plain loops, intermediate values in double, no threads.
void adam_step_ref(const AdamHyper& h, const AdamTensor* tensors, int64_t count);
void sgd_step_ref(const SgdHyper& h, const SgdTensor* tensors, int64_t count);

// The fast paths: the same float formulas, the loops of `isa`, the elements of
// all the tensors split across up to `nthreads` threads.
void adam_step(const AdamHyper& h, const AdamTensor* tensors, int64_t count, Isa isa, int nthreads);
void sgd_step(const SgdHyper& h, const SgdTensor* tensors, int64_t count, Isa isa, int nthreads);

// What the fast paths derive once per tensor (its step sets the bias corrections).
// With b1 = 0 the lerp is m = g exactly (in float, m + (g - m) would lose g's low bits
// to m's magnitude): m_is_g says so.
struct AdamConsts {
  float step_size, inv_sqrt_bc2, shrink, wd, one_m_b1, one_m_b2, sign;
  bool m_is_g;
};

// The loops over elements [lo, hi) of one tensor, compiled once per ISA
// (optim_step_loops_<isa>.cpp, from optim_step_loops_impl.h) and chosen
// through the registry ("optim_step"): the updates are compute-bound (a square
// root and a division per element) until the vectors are wide.
struct Loops {
  void (*adam)(const AdamHyper& h, const AdamTensor& t, const AdamConsts& c, int64_t lo, int64_t hi);
  void (*sgd)(const SgdHyper& h, const SgdTensor& t, int64_t lo, int64_t hi);
};
extern const Loops loops_generic;
extern const Loops loops_avx2;
extern const Loops loops_avx512;

}  // namespace ember::optim_step
