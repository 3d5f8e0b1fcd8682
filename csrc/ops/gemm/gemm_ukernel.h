// GEMM micro-kernels: the only GEMM code that differs per ISA.
//
// A micro-kernel computes one MR x NR tile of C from a sliver of A (MR x k)
// and a sliver of B (k x NR), keeping the tile in registers for the whole k
// loop, then applies the epilogue once:
//
//   C[0:m, 0:n] = alpha * sum_p A[i, p] * B[p, j]  (+ beta * C, unless beta == 0)
//                 (+ bias[j])  (then ReLU)
//
// m <= MR and n <= NR give edge tiles; the kernel masks them itself, so a
// ragged edge costs one narrower tile, not a slow path.
//
// Two entry points differ in how A is laid out:
//   packed  - A sliver packed by the driver: element (i, p) at a[p * MR + i],
//             rows m..MR-1 zero-filled. Compile-time strides; all MR rows are
//             computed and only m are stored.
//   strided - A read in place: element (i, p) at a[i * rs_a + p * cs_a]; a
//             table with one instantiation per row count, strided[m - 1],
//             which neither reads nor computes rows past m.
// B row p starts at b + p * rs_b with unit column stride: either a packed
// panel (rs_b = NR) or the caller's matrix itself (rs_b = its row stride).
// Either way columns >= n are never read, whichever entry point is used.
#pragma once

#include <array>
#include <cstdint>

namespace ember::gemm {

struct Epilogue {
  float alpha;
  float beta;          // 0: C is not read
  const float* bias;   // bias for the tile's first column, or null
  bool relu;
};

using ukernel_fn = void (*)(int64_t k, const float* a, int64_t rs_a, int64_t cs_a, const float* b,
                            int64_t rs_b, float* c, int64_t ldc, int m, int n, const Epilogue& ep);

// The small-M kernel (M <= kSmallM rows of A, B with unit column stride):
//
//   acc[i * n + j] += sum_{p < k} A[i, p] * B[p, j]     for i < m, j < n
//
// It walks B one row at a time — each row segment is a contiguous stream —
// and keeps the m x n accumulator block in L1 (the driver sizes n so it fits).
// Every element of B is used at most m times, so this is bound by reading B
// once; packing B would only add a second pass over it.
constexpr int kSmallM = 8;
// The most rows any micro-kernel tile has.
constexpr int kMaxTileRows = 16;
using smallm_fn = void (*)(int64_t k, const float* a, int64_t rs_a, int64_t cs_a, const float* b, int64_t rs_b,
                           int64_t n, float* acc);

// The small-M kernel for a transposed B (Bt = op(B)^T row-major, row j at
// bt + j * ld_bt with unit stride along K; A with unit stride along K):
//
//   acc[i * n + j] = sum_{p < k} A[i, p] * Bt[j, p]     for i < m, j < n
//
// The x @ W^T of a Linear layer at inference. Dot products vectorised along
// K: a few rows of Bt stream side by side, each read once.
using smallm_dot_fn = void (*)(int64_t k, const float* a, int64_t rs_a, const float* bt, int64_t ld_bt, int64_t n,
                               float* acc);

// Packs a block of B whose columns are contiguous along K (a transposed
// operand): element (p, j) of the block at src[p + j * ld], p < kc, j < cols,
// into NR-column slivers (sliver s at out + s * kc, element (p, j) at
// [p * NR + j], zero-padded to NR columns). Optional: null falls back to the
// portable packing.
using pack_b_t_fn = void (*)(const float* src, int64_t ld, int64_t kc, int64_t cols, float* out);

// Packs a block of A whose rows are contiguous along K: element (i, p) at
// src[i * ld + p], i < rows, p < kc, into MR-row slivers (sliver s at
// out + s * kc, element (i, p) at [p * MR + i], zero-padded to MR rows).
// Optional: null falls back to the portable packing.
using pack_a_n_fn = void (*)(const float* src, int64_t ld, int64_t rows, int64_t kc, float* out);

// A column strip no wider than narrow_nr over `rows` rows of in-place A, in
// one call (tiles may be taller than mr). Optional: null leaves the driver to
// call the strided entry tile by tile.
using panel_fn = void (*)(int64_t rows, int64_t k, const float* a, int64_t rs_a, int64_t cs_a, const float* b,
                          int64_t rs_b, float* c, int64_t ldc, int n, const Epilogue& ep);

// One ISA's micro-kernels and the blocking sizes tuned for them.
struct Ukernel {
  const char* name;  // e.g. "avx512_12x32"
  int mr, nr;        // register tile
  int kc;            // K block: an MR x KC sliver of A stays in L1
  int nc;            // N block: a KC x NC panel of B stays in L2 (multiple of nr)
  int mc;            // M block: an MC x KC block of packed A stays in L3 (multiple of mr)
  int narrow_nr;     // strips at most this wide go to narrow_panel (when it is set)
  ukernel_fn packed;
  std::array<ukernel_fn, kMaxTileRows> strided;  // [m - 1]: every m up to the tallest tile
  std::array<smallm_fn, kSmallM> smallm;         // [m - 1]
  std::array<smallm_dot_fn, kSmallM> smallm_dot; // [m - 1]
  pack_b_t_fn pack_b_t;
  pack_a_n_fn pack_a_n;
  panel_fn narrow_panel;
};

extern const Ukernel ukernel_generic;
extern const Ukernel ukernel_avx2;
extern const Ukernel ukernel_avx512;

}  // namespace ember::gemm
