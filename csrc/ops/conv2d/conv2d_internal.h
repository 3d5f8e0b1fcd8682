// What the conv2d algorithms share, and each algorithm's entry points.
//
// conv2d_cpu.cpp chooses an algorithm by shape and calls one of the entry
// points below; each algorithm's file holds its drivers (padding, blocking,
// threads, the GEMMs it runs), the per-ISA kernels live in *_<isa>.cpp.
// Internal to ops/conv2d: the contract is conv2d.h.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>

#include "core/cpu_features.h"
#include "core/scratch.h"
#include "core/threads.h"
#include "ops/conv2d/conv2d.h"
#include "ops/conv2d/conv2d_direct.h"

namespace ember::conv2d {

// ------------------------------------------------------------ shared helpers (conv2d_common.cpp)

// Per-thread buffers the algorithms share (only one algorithm runs at a time
// on a thread): zero-padded input planes, column / output blocks, and packed
// rows.
extern thread_local Scratch t_plane;
extern thread_local Scratch t_col;
extern thread_local Scratch t_rows;

// Runs body(task, tid) for task in [0, tasks) on up to nthreads threads, each
// taking a contiguous range (an exception as parallel_run's).
template <class Body>
void for_tasks(int64_t tasks, int nthreads, Body&& body) {
  const int nt = static_cast<int>(std::min<int64_t>(nthreads, tasks));
  parallel_run(nt, [&](int tid) {
    for (int64_t t = tasks * tid / nt; t < tasks * (tid + 1) / nt; ++t) body(t, tid);
  });
}

// Sum of n floats in 16 independent lanes (vectorisable without reassociation).
float sum_floats(const float* v, int64_t n);

// Rows of the zero-padded input plane every window of g fits in.
inline int64_t padded_rows(const Geometry& g) { return (g.oh - 1) * g.sh + (g.kh - 1) * g.dh + 1; }

// That padded plane as the direct kernels see it.
inline DepthwisePlane depthwise_plane(const Geometry& g) {
  return {(g.ow - 1) * g.sw + (g.kw - 1) * g.dw + 1, g.oh, g.ow, g.kh, g.kw, g.sh, g.sw, g.dh, g.dw};
}

// dst (rows x cols) = the h x w plane src (row stride ld) placed at (top,
// left) in zeros and cropped to rows x cols.
void pad_plane(const float* src, int64_t ld, int64_t h, int64_t w, int64_t top, int64_t left, int64_t rows,
               int64_t cols, float* dst);

// One input channel plane xc into the padded plane pg (padded_rows(g) x pg.wp).
inline void pad_input(const Geometry& g, const DepthwisePlane& pg, const float* xc, float* xp) {
  pad_plane(xc, g.w, g.h, g.w, g.pt, g.pl, padded_rows(g), pg.wp, xp);
}

// The weight gradient summed image by image, as every algorithm but the
// depthwise one computes it. Images are split into parts (one per thread when
// there are enough images; otherwise one, with the threads inside each
// image), each summed into its own accumulators, which are added up at the
// end; the bias gradient (the sums of dy) rides along.
struct WeightGradSum {
  int64_t size;  // floats in the weight part of an accumulator
  // Adds image n's contribution to acc (overwrites acc when `first`), with
  // `threads` threads inside.
  std::function<void(int64_t n, float* acc, bool first, int threads)> image;
  // dw from the summed accumulator; empty when an accumulator is laid out as
  // dw is (then the first part sums straight into dw and db).
  std::function<void(const float* acc, float* dw)> finish;
};
void sum_weight_grad(const Geometry& g, const float* dy, float* dw, float* db, const WeightGradSum& sum,
                     int nthreads);

// ------------------------------------------------------------ the algorithms
// Each entry point takes the geometry its chooser checked (conv2d_cpu.cpp
// says which); dw and db as in conv2d.h (db may be null).

// Direct kernels (conv2d_direct.cpp): one input channel per group (depthwise,
// any multiplier), or 2..15 at unit stride (few channels, "smallc").
void depthwise_fwd(const Geometry& g, const float* x, const float* w, const float* bias, bool relu, float* y,
                   Isa isa, int nthreads);
void depthwise_bwd_data(const Geometry& g, const float* dy, const float* w, float* dx, Isa isa, int nthreads);
void depthwise_bwd_weight(const Geometry& g, const float* x, const float* dy, float* dw, float* db, Isa isa,
                          int nthreads);
void smallc_fwd(const Geometry& g, const float* x, const float* w, const float* bias, bool relu, float* y, Isa isa,
                int nthreads);
void smallc_bwd_weight(const Geometry& g, const float* x, const float* dy, float* dw, float* db, Isa isa,
                       int nthreads);

// Winograd F(2x2, 3x3) (conv2d_winograd.cpp): 3x3, unit stride and dilation.
void winograd_fwd(const Geometry& g, const float* x, const float* w, const float* bias, bool relu, float* y, Isa isa,
                  int nthreads);
void winograd_bwd_weight(const Geometry& g, const float* x, const float* dy, float* dw, float* db, Isa isa,
                         int nthreads);

// One GEMM per kernel tap over the zero-padded image read in place
// (conv2d_pertap.cpp); the weight gradient at unit stride only.
void pertap_fwd(const Geometry& g, const float* x, const float* w, const float* bias, bool relu, float* y, Isa isa,
                int nthreads);
void pertap_bwd_weight(const Geometry& g, const float* x, const float* dy, float* dw, float* db, Isa isa,
                       int nthreads);

// Implicit GEMM (conv2d_implicit_gemm.cpp): any geometry.
void implicit_gemm_fwd(const Geometry& g, const float* x, const float* w, const float* bias, bool relu, float* y,
                       Isa isa, int nthreads);
void implicit_gemm_bwd_data(const Geometry& g, const float* dy, const float* w, float* dx, Isa isa, int nthreads);
void implicit_gemm_bwd_weight(const Geometry& g, const float* x, const float* dy, float* dw, float* db, Isa isa,
                              int nthreads);

// The bf16 forward's B operand (conv2d_bf16.cpp): columns [c0, c0 + 16 * tiles) of one image's
// im2col matrix (row k = (c, p, q), column = output pixel) in the bf16 GEMM's tile layout over kt
// k-tiles, rows and columns past the end zero. AVX-512 (conv2d_bf16_avx512.cpp); ctx is an
// Im2colBf16.
struct Im2colBf16 {
  const Geometry* g;
  const uint16_t* x;  // the image, already rounded to bf16
  const int64_t* tap;  // per row k = (c, p, q): c * H * W, p * dh and q * dw, three values each
};
void pack_im2col_bf16(const void* ctx, int64_t c0, int64_t tiles, int64_t kt, uint16_t* out);
// The transposed matrix as the weight gradient's A operand: rows [r0, r0 + 16 * tiles) of the
// im2col matrix (taps), 32 pixels per k-tile, in the A tile layout.
void pack_im2col_rows_bf16(const void* ctx, int64_t r0, int64_t tiles, int64_t kt, uint16_t* out);

}  // namespace ember::conv2d
