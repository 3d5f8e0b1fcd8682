// conv2d forward on the CPU: implicit GEMM on the GEMM driver and micro-kernels.
//
// Per image and group the product is y_g = w_g @ im2col(x_g): M = O/groups
// output channels, K = C/groups * KH * KW, N = OH * OW output pixels, so the
// GEMM's C is the NCHW output plane block itself. The B operand is a BPacker:
// when the driver packs a KC x NC block it reads the patches straight from x
// (a run along an output row is a clipped, strided stretch of one input row:
// copied whole when the stride is 1; padding is written as zeros), so the
// im2col matrix is never materialised. The bias is per output channel, i.e. per row of C: the rows
// are filled with it and the GEMM accumulates onto them (beta = 1), with the
// ReLU fused in its epilogue.
#include <algorithm>
#include <cstring>

#include "core/threads.h"
#include "ops/conv2d/conv2d.h"
#include "ops/gemm/gemm.h"

namespace ember::conv2d {
namespace {

struct Im2col {
  const Geometry* g;
  const float* x;  // the group's first input channel in this image
};

// One im2col row (kernel tap (c, ky, kx)) over output pixels [col, col + n).
void im2col_row(const Geometry& g, const float* xc, int64_t ky, int64_t kx, int64_t col, int64_t n, float* d) {
  int64_t i = col / g.ow, jj = col % g.ow;
  for (int64_t j = 0; j < n;) {
    const int64_t run = std::min(g.ow - jj, n - j);  // the rest of output row i
    const int64_t hh = i * g.sh - g.pt + ky * g.dh;
    if (hh < 0 || hh >= g.h) {
      std::fill(d + j, d + j + run, 0.0f);
    } else {
      const float* xr = xc + hh * g.w;
      const int64_t w0 = jj * g.sw - g.pl + kx * g.dw;  // input column of the run's first pixel
      // Pixels r of the run read input column w0 + r * sw: zeros left of column 0,
      // the valid stretch, zeros right of column W - 1.
      const int64_t lo = std::clamp<int64_t>(w0 < 0 ? (-w0 + g.sw - 1) / g.sw : 0, 0, run);
      const int64_t hi = std::clamp<int64_t>(g.w - w0 > 0 ? (g.w - w0 + g.sw - 1) / g.sw : 0, lo, run);
      std::fill(d + j, d + j + lo, 0.0f);
      if (g.sw == 1) {
        std::memcpy(d + j + lo, xr + w0 + lo, sizeof(float) * (hi - lo));
      } else {
        const float* src = xr + w0;
        for (int64_t r = lo; r < hi; ++r) d[j + r] = src[r * g.sw];
      }
      std::fill(d + j + hi, d + j + run, 0.0f);
    }
    j += run;
    jj = 0;
    ++i;
  }
}

void pack_im2col(const void* vctx, int64_t k0, int64_t kc, int64_t c0, int64_t cols, int nr, float* out) {
  const Im2col& ctx = *static_cast<const Im2col*>(vctx);
  const Geometry& g = *ctx.g;
  const int64_t taps = g.kh * g.kw;
  for (int64_t s = 0; s < cols; s += nr) {
    const int64_t n = std::min<int64_t>(nr, cols - s);
    float* dst = out + s * kc;
    for (int64_t p = 0; p < kc; ++p) {
      const int64_t k = k0 + p;
      const int64_t c = k / taps, ky = (k % taps) / g.kw, kx = k % g.kw;
      float* d = dst + p * nr;
      im2col_row(g, ctx.x + c * g.h * g.w, ky, kx, c0 + s, n, d);
      std::fill(d + n, d + nr, 0.0f);
    }
  }
}

}  // namespace

void conv2d_fwd(const Geometry& g, const float* x, const float* w, const float* bias, bool relu, float* y, Isa isa,
                int nthreads) {
  const int64_t cpg = g.c / g.groups, opg = g.o / g.groups;
  const int64_t K = cpg * g.kh * g.kw, P = g.oh * g.ow;
  const int64_t tasks = g.n * g.groups;
  if (tasks == 0 || P == 0 || opg == 0) return;

  auto one = [&](int64_t t, int threads) {
    const int64_t n = t / g.groups, grp = t % g.groups;
    float* yb = y + (n * g.o + grp * opg) * P;
    if (bias)
      for (int64_t oc = 0; oc < opg; ++oc) std::fill(yb + oc * P, yb + (oc + 1) * P, bias[grp * opg + oc]);
    const Im2col ctx{&g, x + (n * g.c + grp * cpg) * g.h * g.w};
    const gemm::BPacker packer{pack_im2col, &ctx};
    gemm::GemmArgs ga;
    ga.a = {w + grp * opg * K, opg, K, K, 1};
    ga.b = {nullptr, K, P, 0, 0};
    ga.c = {yb, opg, P, P};
    ga.beta = bias ? 1.0f : 0.0f;
    ga.relu = relu;
    ga.b_packer = &packer;
    gemm::gemm_cpu(ga, isa, threads);
  };

  if (tasks >= nthreads) {
    parallel_run(nthreads, [&](int tid) {
      for (int64_t t = tasks * tid / nthreads; t < tasks * (tid + 1) / nthreads; ++t) one(t, 1);
    });
  } else {
    for (int64_t t = 0; t < tasks; ++t) one(t, nthreads);
  }
}

}  // namespace ember::conv2d
