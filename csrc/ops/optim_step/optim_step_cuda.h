// Multi-tensor optimizer steps on the GPU: plain C++ launchers (no CUDA headers).
//
// One launch updates a whole list of parameters (up to kAdamPerLaunch /
// kSgdPerLaunch tensors; longer lists take one launch per that many): the
// tensors' pointers, sizes and per-tensor step constants travel by value in
// the kernel's parameters, and each block updates one chunk of one tensor.
// The formulas are optim_step.h's (PyTorch's Adam/AdamW/AMSGrad and SGD),
// in float exactly as the CPU fast path computes them.
#pragma once

#include <cstdint>

#include "core/cuda_device.h"

namespace ember::cuda {

struct AdamTensor {
  float* p;
  const float* g;
  float* m;
  float* v;
  float* vmax;  // null unless amsgrad (then for every tensor)
  int64_t n;
  int64_t step;  // >= 1
};
struct AdamHyper {
  float lr, beta1, beta2, eps, weight_decay;
  bool decoupled, maximize, amsgrad;
};

struct SgdTensor {
  float* p;
  const float* g;
  float* buf;  // null without momentum (then for every tensor)
  int64_t n;
};
struct SgdHyper {
  float lr, momentum, dampening, weight_decay;
  bool nesterov, maximize, first, has_momentum;
};

constexpr int kAdamPerLaunch = 48;
constexpr int kSgdPerLaunch = 96;

void adam_step(const AdamTensor* tensors, int count, const AdamHyper& h, stream_t stream);
void sgd_step(const SgdTensor* tensors, int count, const SgdHyper& h, stream_t stream);

}  // namespace ember::cuda
