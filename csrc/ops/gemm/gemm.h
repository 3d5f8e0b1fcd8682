// fp32 GEMM: the contract.
//
//   C = act(alpha * op(A) @ op(B) + beta * C + bias)
//
//   op(A): M x K, op(B): K x N, C: M x N, bias: N (one value per column) or null,
//   act: identity or ReLU.
//
// Transposition is folded into strides before a kernel sees it: op(A) is a
// strided view (element (i, p) at a.data[i * a.rs + p * a.cs]), so a
// transposed or sliced operand is read in place, never copied by the caller.
// Input strides may be any value, including zero (broadcast) and negative.
// C has unit column stride and row stride c.ld >= N.
//
// Special cases:
//   - beta == 0: C is never read (NaN/Inf already in C do not propagate).
//   - K == 0 or alpha == 0: A and B are not read; C = beta * C, then bias and act.
//   - M == 0 or N == 0: nothing is touched.
//   - The bias and the activation are applied once, after the full sum over K.
// For backward: dA = dC @ op(B)^T and dB = op(A)^T @ dC are two more calls with
// transposed views; nothing is saved.
#pragma once

#include <cstdint>

#include "core/cpu_features.h"
#include "core/tensor_view.h"

namespace ember::gemm {

// A B operand that is never stored whole (the im2col matrix of a convolution):
// the driver asks it for each block it packs. pack() writes op(B)[k0 : k0+kc,
// c0 : c0+cols] as slivers of nr columns: sliver s at out + s * kc, element
// (p, j) at [p * nr + j], columns past the end zero.
struct BPacker {
  void (*pack)(const void* ctx, int64_t k0, int64_t kc, int64_t c0, int64_t cols, int nr, float* out);
  const void* ctx;
};

struct GemmArgs {
  MatrixF32 a;     // op(A), M x K
  MatrixF32 b;     // op(B), K x N (only its sizes are used when b_packer is set)
  MutMatrixF32 c;  // M x N
  float alpha = 1.0f;
  float beta = 0.0f;
  const float* bias = nullptr;  // N contiguous values, or null
  bool relu = false;
  const BPacker* b_packer = nullptr;  // B supplied block by block
  // op(A) already packed by pack_a_whole (for the same isa), or null. `a`
  // must still describe the same matrix: paths that do not pack read it.
  const float* a_packed = nullptr;
  // Read B in place however far apart its rows are (unit column stride
  // only): for a B the caller knows to be cache-resident and only reads once
  // per row of A slivers, packing would cost more than it saves.
  bool b_in_place = false;
};

// An A operand reused across many calls (a convolution's weight, once per
// image) can be packed once: pack_a_whole writes op(A) in the driver's packed
// layout into `out`, which holds packed_a_size(M, K, isa) floats.
int64_t packed_a_size(int64_t M, int64_t K, Isa isa);
void pack_a_whole(const MatrixF32& a, Isa isa, float* out);

// The oracle: plain loops with double accumulation, no threads, no intrinsics.
void gemm_ref(const GemmArgs& g);

// The fast path: packing and cache blocking around the micro-kernels of `isa`,
// on up to `nthreads` threads of the pool.
void gemm_cpu(const GemmArgs& g, Isa isa, int nthreads);

// Register-only FMA loop: runs `iters` iterations and returns the number of
// floating-point operations it performed (the result feeds `sink` so the
// loop cannot be removed). One thread; the caller times it.
using fma_peak_fn = int64_t (*)(int64_t iters, float* sink);
int64_t fma_peak_generic(int64_t iters, float* sink);
int64_t fma_peak_avx2(int64_t iters, float* sink);
int64_t fma_peak_avx512(int64_t iters, float* sink);

}  // namespace ember::gemm
