// conv2d as implicit GEMM, the path for any geometry.
//
// Per image and group the forward is y_g = w_g @ im2col(x_g): M = O/groups
// output channels, K = C/groups * KH * KW, N = OH * OW output pixels, so the
// GEMM's C is the NCHW output plane block itself. The B operand is a BPacker:
// when the driver packs a KC x NC block it reads the patches straight from x
// (a run along an output row is a clipped, strided stretch of one input row;
// padding is written as zeros), so the im2col matrix is never materialised.
// The bias is per output channel, i.e. per row of C: the rows are filled with
// it and the GEMM accumulates onto them (beta = 1), with the ReLU fused in its
// epilogue.
//
// The input gradient: L2-sized blocks of w^T @ dy are scattered into dx
// (col2im), each task owning its channels of dx. The weight gradient packs
// the transposed im2col matrix block by block the same way.
#include <algorithm>
#include <cstring>
#include <memory>

#include "core/registry.h"
#include "ops/conv2d/conv2d_internal.h"
#include "ops/gemm/gemm.h"
#include "ops/gemm/gemm_ukernel.h"

namespace ember::conv2d {
namespace {

struct Im2col {
  const Geometry* g;
  const float* x;  // the group's first input channel in this image
  gemm::pack_b_t_fn pack_t = nullptr;  // the GEMM's transposing B pack, where the ISA has one
};

// The output pixels [col, col + n) of one im2col row (kernel tap (ky, kx) of
// the channel plane xc) are visited as runs, one per output row they touch,
// with f(j, run, lo, hi, src): pixels j + r of the run for r in [lo, hi) read
// src[(r - lo) * sw], the rest of the run lies in the padding (src is null
// when all of it does). Each run is clipped once, not per pixel.
template <class T, class F>
void for_each_run(const Geometry& g, T* xc, int64_t ky, int64_t kx, int64_t col, int64_t n, F&& f) {
  int64_t i = col / g.ow, jj = col % g.ow;
  for (int64_t j = 0; j < n;) {
    const int64_t run = std::min(g.ow - jj, n - j);  // the rest of output row i
    const int64_t hh = i * g.sh - g.pt + ky * g.dh;
    if (hh < 0 || hh >= g.h) {
      f(j, run, int64_t(0), int64_t(0), static_cast<T*>(nullptr));
    } else {
      const int64_t w0 = jj * g.sw - g.pl + kx * g.dw;  // input column of the run's first pixel
      // Pixels r of the run read input column w0 + r * sw: zeros left of column 0,
      // the valid stretch, zeros right of column W - 1.
      const int64_t lo = std::clamp<int64_t>(w0 < 0 ? (-w0 + g.sw - 1) / g.sw : 0, 0, run);
      const int64_t hi = std::clamp<int64_t>(g.w - w0 > 0 ? (g.w - w0 + g.sw - 1) / g.sw : 0, lo, run);
      f(j, run, lo, hi, lo < hi ? xc + hh * g.w + w0 + lo * g.sw : nullptr);
    }
    j += run;
    jj = 0;
    ++i;
  }
}

// d[j * ds] = im2col row (c, ky, kx) at output pixel col + j, for j < n.
void im2col_row(const Geometry& g, const float* xc, int64_t ky, int64_t kx, int64_t col, int64_t n, float* d,
                int64_t ds) {
  for_each_run(g, xc, ky, kx, col, n, [&](int64_t j, int64_t run, int64_t lo, int64_t hi, const float* src) {
    float* dj = d + j * ds;
    if (ds == 1) {
      std::fill(dj, dj + lo, 0.0f);
      if (g.sw == 1 && hi > lo)
        std::memcpy(dj + lo, src, sizeof(float) * (hi - lo));
      else
        for (int64_t r = lo; r < hi; ++r) dj[r] = src[(r - lo) * g.sw];
      std::fill(dj + hi, dj + run, 0.0f);
    } else {
      for (int64_t r = 0; r < lo; ++r) dj[r * ds] = 0.0f;
      for (int64_t r = lo; r < hi; ++r) dj[r * ds] = src[(r - lo) * g.sw];
      for (int64_t r = hi; r < run; ++r) dj[r * ds] = 0.0f;
    }
  });
}

// The adjoint of im2col_row: adds s[j] into the input pixel that im2col row
// (c, ky, kx) reads at output pixel col + j (padding positions are dropped).
void col2im_row(const Geometry& g, float* dxc, int64_t ky, int64_t kx, int64_t col, int64_t n, const float* s) {
  for_each_run(g, dxc, ky, kx, col, n, [&](int64_t j, int64_t, int64_t lo, int64_t hi, float* d) {
    const float* sj = s + j + lo;
    if (g.sw == 1)
      for (int64_t r = 0; r < hi - lo; ++r) d[r] += sj[r];
    else
      for (int64_t r = 0; r < hi - lo; ++r) d[r * g.sw] += sj[r];
  });
}

// Packs row by row: each im2col row is walked once over all `cols` columns,
// its runs split where they cross from one sliver into the next.
void pack_im2col(const void* vctx, int64_t k0, int64_t kc, int64_t c0, int64_t cols, int nr, float* out) {
  const Im2col& ctx = *static_cast<const Im2col*>(vctx);
  const Geometry& g = *ctx.g;
  const int64_t taps = g.kh * g.kw, sliver = kc * nr, padded = (cols + nr - 1) / nr * nr;
  for (int64_t p = 0; p < kc; ++p) {
    const int64_t k = k0 + p;
    const int64_t c = k / taps, ky = (k % taps) / g.kw, kx = k % g.kw;
    float* row = out + p * nr;
    // Columns [j, j + len) of this row, from src (stride sw) or zeros when src is null.
    auto put = [&](int64_t j, int64_t len, const float* src) {
      while (len > 0) {
        const int64_t s = j / nr, off = j - s * nr, m = std::min<int64_t>(len, nr - off);
        float* d = row + s * sliver + off;
        if (src == nullptr) {
          std::fill(d, d + m, 0.0f);
        } else if (g.sw == 1) {
          std::memcpy(d, src, sizeof(float) * m);
          src += m;
        } else {
          for (int64_t r = 0; r < m; ++r) d[r] = src[r * g.sw];
          if (len > m) src += m * g.sw;  // never past the run's end: a huge stride would overflow the pointer
        }
        j += m;
        len -= m;
      }
    };
    for_each_run(g, ctx.x + c * g.h * g.w, ky, kx, c0, cols,
                 [&](int64_t j, int64_t run, int64_t lo, int64_t hi, const float* src) {
                   put(j, lo, nullptr);
                   put(j + lo, hi - lo, src);
                   put(j + hi, run - hi, nullptr);
                 });
    put(cols, padded - cols, nullptr);
  }
}

// The transposed im2col matrix as the B operand of backward-weight: rows are
// output pixels, columns kernel taps. Sliver column j is im2col row c0 + s + j
// over pixels [k0, k0 + kc). With a transposing pack the sliver's rows are
// built contiguously and transposed in registers; otherwise they are written
// straight into the sliver with stride nr.
void pack_im2col_t(const void* vctx, int64_t k0, int64_t kc, int64_t c0, int64_t cols, int nr, float* out) {
  const Im2col& ctx = *static_cast<const Im2col*>(vctx);
  const Geometry& g = *ctx.g;
  const int64_t taps = g.kh * g.kw;
  float* rows = ctx.pack_t ? t_rows.get(static_cast<size_t>(nr * kc)) : nullptr;
  for (int64_t s = 0; s < cols; s += nr) {
    const int64_t n = std::min<int64_t>(nr, cols - s);
    float* dst = out + s * kc;
    for (int64_t j = 0; j < n; ++j) {
      const int64_t k = c0 + s + j;
      const int64_t c = k / taps, ky = (k % taps) / g.kw, kx = k % g.kw;
      if (rows)
        im2col_row(g, ctx.x + c * g.h * g.w, ky, kx, k0, kc, rows + j * kc, 1);
      else
        im2col_row(g, ctx.x + c * g.h * g.w, ky, kx, k0, kc, dst + j, nr);
    }
    if (rows)
      ctx.pack_t(rows, kc, kc, n, dst);
    else
      for (int64_t p = 0; p < kc; ++p) std::fill(dst + p * nr + n, dst + (p + 1) * nr, 0.0f);
  }
}

}  // namespace

void implicit_gemm_fwd(const Geometry& g, const float* x, const float* w, const float* bias, bool relu, float* y,
                       Isa isa, int nthreads) {
  const int64_t cpg = g.c / g.groups, opg = g.o / g.groups;
  const int64_t K = cpg * g.kh * g.kw, P = g.oh * g.ow;
  const int64_t tasks = g.n * g.groups;
  // The weight is packed for the GEMM once, not once per image.
  const int64_t wsize = gemm::packed_a_size(opg, K, isa);
  std::unique_ptr<float[]> wpacked(new float[static_cast<size_t>(wsize * g.groups)]);
  for (int64_t grp = 0; grp < g.groups; ++grp)
    gemm::pack_a_whole({w + grp * opg * K, opg, K, K, 1}, isa, wpacked.get() + grp * wsize);

  auto one = [&](int64_t t, int threads) {
    const int64_t n = t / g.groups, grp = t % g.groups;
    float* yb = y + (n * g.o + grp * opg) * P;
    if (bias)
      for (int64_t oc = 0; oc < opg; ++oc) std::fill(yb + oc * P, yb + (oc + 1) * P, bias[grp * opg + oc]);
    const Im2col ctx{&g, x + (n * g.c + grp * cpg) * g.h * g.w};
    const gemm::BPacker packer{pack_im2col, &ctx};
    gemm::GemmArgs ga;
    ga.a = {w + grp * opg * K, opg, K, K, 1};
    ga.a_packed = wpacked.get() + grp * wsize;
    ga.b = {nullptr, K, P, 0, 0};
    ga.c = {yb, opg, P, P};
    ga.beta = bias ? 1.0f : 0.0f;
    ga.relu = relu;
    ga.b_packer = &packer;
    gemm::gemm_cpu(ga, isa, threads);
  };

  if (tasks >= nthreads)
    for_tasks(tasks, nthreads, [&](int64_t t, int) { one(t, 1); });
  else
    for (int64_t t = 0; t < tasks; ++t) one(t, nthreads);
}

void implicit_gemm_bwd_data(const Geometry& g, const float* dy, const float* w, float* dx, Isa isa, int nthreads) {
  const int64_t cpg = g.c / g.groups, opg = g.o / g.groups, taps = g.kh * g.kw;
  const int64_t K = cpg * taps, P = g.oh * g.ow, HW = g.h * g.w;
  // A 1x1 kernel with unit stride and no padding maps output pixels onto input
  // pixels one to one: the column matrix is dx itself.
  const bool direct = taps == 1 && g.sh == 1 && g.sw == 1 && g.pt == 0 && g.pl == 0 && g.oh == g.h && g.ow == g.w;
  // Tasks are (image, group, block of input channels); channel blocks only
  // when there are fewer images x groups than threads. Each task owns its
  // channels of dx, so the scatter-adds of different tasks never meet.
  const int64_t units = g.n * g.groups;
  const int64_t chunks = units >= nthreads ? 1 : std::min<int64_t>(cpg, (nthreads + units - 1) / units);
  // Columns per block of the column matrix: a block of about 1 MB mostly stays
  // in L2 between the GEMM that writes it and the col2im that reads it, and
  // is wide enough that the GEMM's packing of w_g^T is spread over many columns.
  const int64_t max_rows = (cpg + chunks - 1) / chunks * taps;
  const int64_t pb = std::min(P, std::max<int64_t>(16, (int64_t(256) << 10) / max_rows / 16 * 16));

  // With whole groups per task, each group's w_g^T is packed for the GEMM once.
  const int64_t wsize = chunks == 1 ? gemm::packed_a_size(K, opg, isa) : 0;
  std::unique_ptr<float[]> wpacked(chunks == 1 ? new float[static_cast<size_t>(wsize * g.groups)] : nullptr);
  for (int64_t grp = 0; wpacked && grp < g.groups; ++grp)
    gemm::pack_a_whole({w + grp * opg * K, K, opg, 1, K}, isa, wpacked.get() + grp * wsize);

  for_tasks(units * chunks, nthreads, [&](int64_t t, int) {
    const int64_t u = t / chunks, ch = t % chunks;
    const int64_t n = u / g.groups, grp = u % g.groups;
    const int64_t c0 = cpg * ch / chunks, c1 = cpg * (ch + 1) / chunks;
    float* dxg = dx + (n * g.c + grp * cpg) * HW;
    const float* dyg = dy + (n * g.o + grp * opg) * P;
    const float* wg = w + grp * opg * K;
    if (opg == 0 || P == 0) {
      std::fill(dxg + c0 * HW, dxg + c1 * HW, 0.0f);
      return;
    }
    gemm::GemmArgs ga;
    ga.a = {wg + c0 * taps, (c1 - c0) * taps, opg, 1, K};  // rows of w_g^T
    if (wpacked) ga.a_packed = wpacked.get() + grp * wsize;
    if (direct) {
      ga.b = {dyg, opg, P, P, 1};
      ga.c = {dxg + c0 * HW, c1 - c0, P, P};
      gemm::gemm_cpu(ga, isa, 1);
      return;
    }
    std::fill(dxg + c0 * HW, dxg + c1 * HW, 0.0f);
    const int64_t rows = (c1 - c0) * taps;
    float* col = t_col.get(static_cast<size_t>(rows * pb));
    for (int64_t p0 = 0; p0 < P; p0 += pb) {
      const int64_t cols = std::min(pb, P - p0);
      ga.b = {dyg + p0, opg, cols, P, 1};
      ga.c = {col, rows, cols, cols};
      gemm::gemm_cpu(ga, isa, 1);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t c = c0 + r / taps, ky = (r % taps) / g.kw, kx = r % g.kw;
        col2im_row(g, dxg + c * HW, ky, kx, p0, cols, col + r * cols);
      }
    }
  });
}

void implicit_gemm_bwd_weight(const Geometry& g, const float* x, const float* dy, float* dw, float* db, Isa isa,
                              int nthreads) {
  const int64_t cpg = g.c / g.groups, opg = g.o / g.groups;
  const int64_t K = cpg * g.kh * g.kw, P = g.oh * g.ow, HW = g.h * g.w;
  const gemm::pack_b_t_fn pack_t = lookup<gemm::Ukernel>("gemm", isa).pack_b_t;
  // One image's contribution (O x K, dw's own layout), with `threads` threads inside each GEMM.
  auto image = [&](int64_t n, float* acc, bool first, int threads) {
    for (int64_t grp = 0; grp < g.groups; ++grp) {
      const Im2col ctx{&g, x + (n * g.c + grp * cpg) * HW, pack_t};
      const gemm::BPacker packer{pack_im2col_t, &ctx};
      gemm::GemmArgs ga;
      ga.a = {dy + (n * g.o + grp * opg) * P, opg, P, P, 1};
      ga.b = {nullptr, P, K, 0, 0};
      ga.c = {acc + grp * opg * K, opg, K, K};
      ga.beta = first ? 0.0f : 1.0f;
      ga.b_packer = &packer;
      gemm::gemm_cpu(ga, isa, threads);
    }
  };
  sum_weight_grad(g, dy, dw, db, WeightGradSum{g.o * K, image, {}}, nthreads);
}

}  // namespace ember::conv2d
