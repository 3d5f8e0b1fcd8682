// Softmax cross-entropy on the GPU: plain C++ launchers (no CUDA headers).
//
// Exactly the contract of cross_entropy.h (the CPU kernels' semantics: hard
// or soft targets, class weights, ignore_index, label smoothing, NaN rows),
// with one addition for targets that are neither a class in [0, V) nor
// ignore_index. The CPU binding raises ValueError for those before running;
// on the GPU that check would cost a host synchronisation per call, so
// instead such a row gets NaN in out_lse, out_nll and out_smooth (forward)
// or NaN in its gradient row (backward) -- never a silently wrong number --
// and, when `error` is not null, atomicMin(error, row): the caller sets
// error[0] to any value >= B (e.g. 2**31 - 1) before the call, and a value
// below B afterwards names the first bad row. error may be checked lazily,
// whenever the caller synchronises anyway.
#pragma once

#include <cstdint>

#include "core/cuda_device.h"

namespace ember::cuda {

struct XentProblem {
  int64_t b = 0, v = 0;            // rows, classes
  const float* z = nullptr;        // B x V logits, rows contiguous
  const int64_t* target = nullptr; // B class indices, or null
  const float* soft = nullptr;     // B x V probabilities, or null
  const float* weight = nullptr;   // V class weights, or null
  float eps = 0.0f;                // label smoothing
  int64_t ignore_index = -100;
};

// Per row: lse, and for hard targets nll = w_t (lse - z_t) and smooth = sum_j w_j (lse - z_j)
// (0 when eps == 0); for soft targets the row loss in nll and 0 in smooth. Ignored rows get
// their lse and nll = smooth = 0. One read of the logits.
void cross_entropy_fwd(const XentProblem& p, double* lse, double* nll, double* smooth, int32_t* error,
                       stream_t stream);

// dz = scale_r (a_r softmax(z_r) - b_r) (cross_entropy.h), zero rows where scale is 0 or the
// row is ignored. One read of the logits and one write of dz; dz may be z itself.
void cross_entropy_bwd(const XentProblem& p, const double* lse, const float* scale, float* dz, int32_t* error,
                       stream_t stream);

}  // namespace ember::cuda
