// softmax cross-entropy: the contract.
//
// Logits z (B x V, float32, rows contiguous) against, per row r, either a
// class index t_r (hard targets) or a probability row t_r (soft targets,
// B x V). With label smoothing eps the target distribution is
// q = (1 - eps) * target + eps / V, and with class weights w (V, or all ones)
// the row losses are PyTorch's:
//
//   lse_r    = log sum_j exp(z_rj)
//   hard:    nll_r    = w_t (lse_r - z_rt)             (t = t_r)
//            smooth_r = sum_j w_j (lse_r - z_rj)
//            loss_r   = (1 - eps) nll_r + (eps / V) smooth_r
//   soft:    loss_r   = sum_j w_j q_rj (lse_r - z_rj)
//
// Rows whose hard target equals ignore_index contribute nothing. The
// reductions (mean divides by the sum of the targets' weights for hard
// targets, by B for soft ones) are done by the caller from these per-row
// values. A NaN anywhere in a row gives that row NaN values.
//
// Forward reads each row once (per-lane online max, sum of exponentials and
// weighted distances, combined at the row's end) and writes, per row, lse_r
// and the sums above in double: nothing of size B x V is ever written.
//
// Backward, with the caller's per-row scale c_r (0 for ignored rows):
//
//   dz_rj = c_r (a_r p_rj - b_rj),   p_rj = exp(z_rj - lse_r),
//   b_rj  = w_j q_rj,                a_r = sum_j b_rj
//
// (for hard targets a_r = (1 - eps) w_t + (eps / V) sum_j w_j). It reads each
// row of z once and writes each row of dz once; dz may be z itself.
#pragma once

#include <cstdint>

#include "core/cpu_features.h"

namespace ember::cross_entropy {

// T is float for every path; the references also take double (what gradient checks use).
template <class T>
struct ProblemT {
  int64_t b, v;                  // rows, classes
  const T* z;                    // B x V logits
  const int64_t* target;         // B class indices (hard targets), or null
  const T* soft;                 // B x V probabilities (soft targets), or null
  const T* weight;               // V class weights, or null
  float eps;                     // label smoothing, in [0, 1]
  int64_t ignore_index;          // hard targets only
};
using Problem = ProblemT<float>;

// Per-row results of the forward: lse, and for hard targets nll and smooth
// (smooth only when eps > 0, else 0), for soft targets the row loss in nll.
struct RowLosses {
  double* lse;
  double* nll;
  double* smooth;
};

// The oracles: plain loops, double accumulation, no threads, no blocking.
template <class T>
void cross_entropy_fwd_ref(const ProblemT<T>& p, const RowLosses& out);
template <class T>
void cross_entropy_bwd_ref(const ProblemT<T>& p, const double* lse, const T* scale, T* dz);

// The fast paths: rows split across threads, the row kernels of `isa`.
void cross_entropy_fwd(const Problem& p, const RowLosses& out, Isa isa, int nthreads);
void cross_entropy_bwd(const Problem& p, const double* lse, const float* scale, float* dz, Isa isa, int nthreads);

// Row kernels (cross_entropy_rows_impl.h, compiled per ISA by cross_entropy_rows_<isa>.cpp).
struct RowKernels {
  // Over one row: lse = log sum_j exp(z_j); if `weighted`, dist = sum_j b_j (lse - z_j)
  // and bsum = sum_j b_j with b_j = w_j * (soft ? (1 - eps) soft_j + eps / v : 1)
  // (w_j = 1 without weights). A NaN in z gives NaN results.
  void (*fwd)(const float* z, int64_t v, const float* w, const float* soft, float eps, bool weighted, double* lse,
              double* dist, double* bsum);
  // dz_j = c (a exp(z_j - lse) - w_j (ct * soft_j + cc)), soft_j = 0 without soft targets.
  void (*bwd)(const float* z, int64_t v, float lse, float c, float a, const float* w, const float* soft, float ct,
              float cc, float* dz);
};

extern const RowKernels row_kernels_generic;
extern const RowKernels row_kernels_avx2;
extern const RowKernels row_kernels_avx512;

}  // namespace ember::cross_entropy
