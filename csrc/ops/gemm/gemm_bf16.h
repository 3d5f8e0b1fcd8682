// bf16 GEMM: the contract.
//
//   C = act(alpha * op(A) @ op(B) + beta * C + bias)
//
// as the fp32 GEMM (gemm.h: strides, transposition folded into them, the
// special cases of beta, K, alpha, M and N, bias and ReLU once after the full
// sum), with op(A) (M x K) and op(B) (K x N) in bf16 -- stored as their uint16
// bit patterns -- and C, bias, alpha and beta in fp32. The product of two bf16
// values is exact in fp32; the products are summed in fp32 (the reference
// sums in double), so a result differs from the exact sum of the bf16 inputs
// by at most fp32 rounding. Subnormal bf16 inputs may be read as zero (AMX and
// vdpbf16ps flush them); NaN and infinities propagate as in fp32.
//
// Paths, by ISA level (the registry's "gemm_bf16" rows):
//   amx          AMX tiles: 32 x 32 blocks of C from 2 x 2 tile products
//   avx512_bf16  vdpbf16ps on the same packed layouts
//   below        op(A) and op(B) widened to fp32, then the fp32 GEMM of that level
#pragma once

#include <cstdint>

#include "core/cpu_features.h"
#include "core/tensor_view.h"

namespace ember::gemm {

// A strided 2-D bf16 matrix: element (i, j) is at data[i * rs + j * cs].
struct MatrixBF16 {
  const uint16_t* data;
  int64_t rows, cols;
  int64_t rs, cs;
};

// A B operand that is never stored whole (a convolution's im2col matrix): the
// packed driver asks it for the tile layout below of `tiles` 16-column tiles
// from column c0, over kt k-tiles, instead of packing B (only b's sizes are
// used). The reference and the widening path do not take it.
struct Bf16BPacker {
  void (*pack)(const void* ctx, int64_t c0, int64_t tiles, int64_t kt, uint16_t* out);
  const void* ctx;
};
// Likewise for A (a convolution's im2col matrix in the weight gradient): `tiles` row tiles of
// 16 rows from row r0, in the A tile layout.
using Bf16APacker = Bf16BPacker;

struct GemmBf16Args {
  MatrixBF16 a;    // op(A), M x K
  MatrixBF16 b;    // op(B), K x N
  MutMatrixF32 c;  // M x N
  float alpha = 1.0f;
  float beta = 0.0f;
  const float* bias = nullptr;      // N contiguous values (one per column), or null
  const float* row_bias = nullptr;  // M contiguous values (one per row: a convolution's), or null
  bool relu = false;
  const Bf16APacker* a_packer = nullptr;
  const Bf16BPacker* b_packer = nullptr;
};

// The oracle (gemm_ref.cpp): plain loops, double accumulation, no threads, no intrinsics.
// Takes row_bias, not the packers.
void gemm_bf16_ref(const GemmBf16Args& g);

// The fast path of `isa` on up to `nthreads` threads.
void gemm_bf16_cpu(const GemmBf16Args& g, Isa isa, int nthreads);

// fp32 -> bf16, rounding to nearest even; a NaN stays a NaN (made quiet, its
// sign kept), infinities stay infinite, subnormals round as any other value.
// And back (exact). The portable loops (one thread), and the registry's
// "convert_bf16" rows of each ISA; the _cpu forms split n between nthreads.
void bf16_from_f32(const float* x, int64_t n, uint16_t* out);
void f32_from_bf16(const uint16_t* x, int64_t n, float* out);
struct Bf16Convert {
  void (*to_bf16)(const float* x, int64_t n, uint16_t* out);
  void (*to_f32)(const uint16_t* x, int64_t n, float* out);
};
extern const Bf16Convert bf16_convert_generic;
extern const Bf16Convert bf16_convert_avx512;
void bf16_from_f32_cpu(const float* x, int64_t n, uint16_t* out, Isa isa, int nthreads);
void f32_from_bf16_cpu(const uint16_t* x, int64_t n, float* out, Isa isa, int nthreads);

// The packed layouts both fast paths read (K padded with zeros to a multiple
// of 32, rows and columns to a multiple of 32):
//   A: tiles of 16 rows x 32 k (row r at r * 32), tile (mt, kt) at
//      (mt * KT + kt) * 512 -- an AMX A tile, rows 64 bytes apart.
//   B: tiles of 16 k-pairs x 16 columns, pairs interleaved (element (k, j) of
//      the tile at (k / 2) * 32 + j * 2 + k % 2), tile (nt, kt) at
//      (nt * KT + kt) * 512 -- an AMX B tile ("VNNI" layout).
constexpr int64_t kBf16Tile = 512;  // uint16 per tile
// Two tiles side by side, as the block kernels read them: tile t's k-tile kt
// starts at p + t * next + kt * kstep, its rows ld elements apart (a packed
// strip: next = KT * 512, kstep = 512, ld = 32; a row-major A read in place:
// next = 16 * lda, kstep = 32, ld = lda).
struct TileStrip {
  const uint16_t* p;
  int64_t next, kstep, ld;
};
struct Bf16Kernels {
  const char* name;  // for ember.info()
  // Packs rows [r0, r0 + 16 * tiles) of op(A) (zeros past its end) into `tiles`
  // row tiles of KT tiles each; likewise columns [c0, c0 + 16 * tiles) of op(B).
  void (*pack_a)(const MatrixBF16& a, int64_t r0, int64_t tiles, int64_t kt, uint16_t* out);
  void (*pack_b)(const MatrixBF16& b, int64_t c0, int64_t tiles, int64_t kt, uint16_t* out);
  // acc (32 x 32, row-major) = (acc if accumulate, else 0) + the product of a
  // 32-row A strip (packed or read in place) and a 32-column B strip over kt
  // k-tiles. B is always packed (kstep 512, ld 32).
  void (*block)(const TileStrip& a, const TileStrip& b, int64_t kt, bool accumulate, float* acc);
  // C[0:rows, 0:cols] = act(alpha * acc + beta * C + bias) (the GEMM's epilogue).
  void (*store)(const GemmBf16Args& g, const float* acc, int64_t i0, int64_t j0, int64_t rows, int64_t cols);
  // Run on each thread before its first and after its last block (AMX's tile
  // configuration and release, the fence after the epilogue's streaming stores); null where
  // nothing is needed.
  void (*thread_begin)();
  void (*thread_end)();
  // A row-major op(A) is read in place (not packed) unless its rows lie a multiple of this many
  // bytes apart (0: any stride). AMX tile loads of rows 4 KB apart fall into one L1 set and
  // thrash; vdpbf16ps's 32-bit broadcasts do not care.
  int64_t a_alias_bytes;
};

// The avx512_bf16 level's functions, which the amx level shares.
void pack_a_bf16_avx512(const MatrixBF16& a, int64_t r0, int64_t tiles, int64_t kt, uint16_t* out);
void pack_b_bf16_avx512(const MatrixBF16& b, int64_t c0, int64_t tiles, int64_t kt, uint16_t* out);
void store_bf16_avx512(const GemmBf16Args& g, const float* acc, int64_t i0, int64_t j0, int64_t rows, int64_t cols);
void finish_stores_avx512();

// Levels without bf16 products: no block kernel, so the driver widens to fp32.
extern const Bf16Kernels bf16_kernels_widened;
extern const Bf16Kernels bf16_kernels_avx512bf16;
extern const Bf16Kernels bf16_kernels_amx;

}  // namespace ember::gemm
