// conv2d on the CPU: the forward and both backward passes, each choosing an
// algorithm by shape (see conv2d.h) and running on the GEMM driver and
// micro-kernels or the direct kernels of conv2d_direct.h.
//
// The general path is implicit GEMM. Per image and group the forward is
// y_g = w_g @ im2col(x_g): M = O/groups output channels, K = C/groups * KH *
// KW, N = OH * OW output pixels, so the GEMM's C is the NCHW output plane
// block itself. The B operand is a BPacker: when the driver packs a KC x NC
// block it reads the patches straight from x (a run along an output row is a
// clipped, strided stretch of one input row; padding is written as zeros), so
// the im2col matrix is never materialised. The bias is per output channel,
// i.e. per row of C: the rows are filled with it and the GEMM accumulates
// onto them (beta = 1), with the ReLU fused in its epilogue.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include "core/registry.h"
#include "core/scratch.h"
#include "core/threads.h"
#include "ops/conv2d/conv2d.h"
#include "ops/conv2d/conv2d_direct.h"
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
          src += m * g.sw;
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

thread_local Scratch t_rows;

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

thread_local Scratch t_col;

// Runs body(task) for task in [0, tasks) on up to nthreads threads, each
// taking a contiguous range; a std::bad_alloc in any task is rethrown here.
template <class Body>
void for_tasks(int64_t tasks, int nthreads, Body&& body) {
  const int nt = static_cast<int>(std::min<int64_t>(nthreads, tasks));
  std::atomic<bool> out_of_memory{false};
  parallel_run(nt, [&](int tid) {
    try {
      for (int64_t t = tasks * tid / nt; t < tasks * (tid + 1) / nt; ++t) body(t, tid);
    } catch (const std::bad_alloc&) {
      out_of_memory.store(true);
    }
  });
  if (out_of_memory.load()) throw std::bad_alloc();
}

// Sum of n floats in 16 independent lanes (vectorisable without reassociation).
float sum_floats(const float* v, int64_t n) {
  float lanes[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; ++l) lanes[l] += v[i + l];
  for (; i < n; ++i) lanes[i % 16] += v[i];
  float total = 0.0f;
  for (float l : lanes) total += l;
  return total;
}

// ------------------------------------------------------------ one input channel per group

thread_local Scratch t_plane;

// The padded plane every window of g fits in (rows and columns it needs).
DepthwisePlane depthwise_plane(const Geometry& g) {
  return {(g.ow - 1) * g.sw + (g.kw - 1) * g.dw + 1, g.oh, g.ow, g.kh, g.kw, g.sh, g.sw, g.dh, g.dw};
}

int64_t padded_rows(const Geometry& g) { return (g.oh - 1) * g.sh + (g.kh - 1) * g.dh + 1; }

// Whether the paths that copy the image into a zero-padded plane (direct,
// per-tap, Winograd) may: the padded plane must stay within a few times the
// image. A huge padding or dilation goes to implicit GEMM instead, which clips
// each run of pixels to the image and so costs what the image costs. (The
// bindings bound every extent below 2^62, so these products cannot overflow.)
bool padded_plane_ok(const Geometry& g) {
  const double rows = static_cast<double>(padded_rows(g));
  const double cols = static_cast<double>((g.ow - 1) * g.sw + (g.kw - 1) * g.dw + 1);
  return rows * cols <= 4.0 * static_cast<double>(g.h) * static_cast<double>(g.w) + 65536.0;
}

// dst (rows x cols) = the h x w plane src (row stride ld) placed at (top,
// left) in zeros and cropped to rows x cols.
void pad_plane(const float* src, int64_t ld, int64_t h, int64_t w, int64_t top, int64_t left, int64_t rows,
               int64_t cols, float* dst) {
  const int64_t l = std::min(left, cols), copy = std::clamp<int64_t>(cols - left, 0, w);
  for (int64_t r = 0; r < rows; ++r) {
    float* d = dst + r * cols;
    const int64_t hh = r - top;
    if (hh < 0 || hh >= h) {
      std::fill(d, d + cols, 0.0f);
      continue;
    }
    std::fill(d, d + l, 0.0f);
    std::memcpy(d + l, src + hh * ld, sizeof(float) * copy);
    std::fill(d + l + copy, d + cols, 0.0f);
  }
}

void pad_input(const Geometry& g, const DepthwisePlane& pg, const float* xc, float* xp) {
  pad_plane(xc, g.w, g.h, g.w, g.pt, g.pl, padded_rows(g), pg.wp, xp);
}

// ------------------------------------------------------------ few input channels per group

// The direct kernels for 2..15 input channels per group at unit stride (a
// first layer's 3): a GEMM's K would be too short to cover its packing and
// tile overheads.
bool smallc_applies(const Geometry& g) {
  const int64_t cpg = g.c / g.groups;
  return g.sh == 1 && g.sw == 1 && cpg >= 2 && cpg < 16 && padded_plane_ok(g);
}

// The padded planes of one image's group for the few-channel kernels.
struct SmallCPlanes {
  DepthwisePlane pg;
  int64_t plane;
  std::vector<int64_t> off;
  SmallCImage image;

  explicit SmallCPlanes(const Geometry& g)
      : pg(depthwise_plane(g)), plane(padded_rows(g) * pg.wp), off(static_cast<size_t>(g.c / g.groups * g.kh * g.kw)) {
    const int64_t taps = g.kh * g.kw;
    for (size_t k = 0; k < off.size(); ++k) {
      const int64_t c = k / taps, t = k % taps;
      off[k] = c * plane + (t / g.kw) * g.dh * pg.wp + (t % g.kw) * g.dw;
    }
    image = {pg.wp, g.oh, g.ow, static_cast<int64_t>(off.size()), off.data()};
  }

  // Pads the group's channels of image n of x into thread scratch.
  const float* pad(const Geometry& g, const float* x, int64_t n, int64_t grp) const {
    const int64_t cpg = g.c / g.groups;
    float* xp = t_plane.get(static_cast<size_t>(cpg * plane + kSmallCSlack));
    for (int64_t c = 0; c < cpg; ++c) pad_input(g, pg, x + (n * g.c + grp * cpg + c) * g.h * g.w, xp + c * plane);
    std::fill(xp + cpg * plane, xp + cpg * plane + kSmallCSlack, 0.0f);
    return xp;
  }
};

void smallc_fwd(const Geometry& g, const float* x, const float* w, const float* bias, bool relu, float* y, Isa isa,
                int nthreads) {
  const DirectKernels& kern = lookup<DirectKernels>("conv2d_direct", isa);
  const SmallCPlanes planes(g);
  const int64_t opg = g.o / g.groups, K = planes.image.k, P = g.oh * g.ow;
  for_tasks(g.n * g.groups, nthreads, [&](int64_t t, int) {
    const int64_t n = t / g.groups, grp = t % g.groups;
    const float* xp = planes.pad(g, x, n, grp);
    kern.smallc_fwd(planes.image, xp, w + grp * opg * K, bias ? bias + grp * opg : nullptr, relu, opg,
                    y + (n * g.o + grp * opg) * P);
  });
}

void depthwise_fwd(const Geometry& g, const float* x, const float* w, const float* bias, bool relu, float* y,
                   Isa isa, int nthreads) {
  const DirectKernels& kern = lookup<DirectKernels>("conv2d_direct", isa);
  const DepthwisePlane pg = depthwise_plane(g);
  const int64_t opg = g.o / g.groups, taps = g.kh * g.kw, P = g.oh * g.ow;
  for_tasks(g.n * g.c, nthreads, [&](int64_t t, int) {
    const int64_t n = t / g.c, c = t % g.c;
    float* xp = t_plane.get(static_cast<size_t>(padded_rows(g) * pg.wp));
    pad_input(g, pg, x + t * g.h * g.w, xp);
    for (int64_t o = c * opg; o < (c + 1) * opg; ++o)
      kern.fwd(pg, xp, w + o * taps, bias ? bias[o] : 0.0f, relu, y + (n * g.o + o) * P);
  });
}

void depthwise_bwd_data(const Geometry& g, const float* dy, const float* w, float* dx, Isa isa, int nthreads) {
  const DirectKernels& kern = lookup<DirectKernels>("conv2d_direct", isa);
  const int64_t opg = g.o / g.groups, taps = g.kh * g.kw, P = g.oh * g.ow;
  const int64_t span_h = (g.kh - 1) * g.dh, span_w = (g.kw - 1) * g.dw;
  if (opg == 1 && g.sh == 1 && g.sw == 1 && g.pt <= span_h && g.pl <= span_w) {
    // Unit stride: dx is the convolution of dy, padded by the kernel's span
    // less the forward padding, with the kernel flipped -- the forward kernel
    // gathers it with no read-modify-write of dx.
    const DepthwisePlane pg{g.w + span_w, g.h, g.w, g.kh, g.kw, 1, 1, g.dh, g.dw};
    const int64_t rows = g.h + span_h;
    std::vector<float> flipped(static_cast<size_t>(g.o * taps));
    for (int64_t o = 0; o < g.o; ++o)
      for (int64_t i = 0; i < taps; ++i) flipped[o * taps + i] = w[o * taps + taps - 1 - i];
    for_tasks(g.n * g.c, nthreads, [&](int64_t t, int) {
      float* dyp = t_plane.get(static_cast<size_t>(rows * pg.wp));
      pad_plane(dy + t * P, g.ow, g.oh, g.ow, span_h - g.pt, span_w - g.pl, rows, pg.wp, dyp);
      kern.fwd(pg, dyp, flipped.data() + (t % g.c) * taps, 0.0f, false, dx + t * g.h * g.w);
    });
    return;
  }
  // Otherwise every output pixel scatters its taps into a padded dx plane.
  const DepthwisePlane pg = depthwise_plane(g);
  const int64_t hp = padded_rows(g);
  for_tasks(g.n * g.c, nthreads, [&](int64_t t, int) {
    const int64_t n = t / g.c, c = t % g.c;
    float* dxp = t_plane.get(static_cast<size_t>(hp * pg.wp));
    std::fill(dxp, dxp + hp * pg.wp, 0.0f);
    for (int64_t o = c * opg; o < (c + 1) * opg; ++o) kern.bwd_data(pg, dy + (n * g.o + o) * P, w + o * taps, dxp);
    // Input pixel (hh, ww) sits at (hh + pt, ww + pl) of the padded plane;
    // those outside it are read by no window.
    pad_plane(dxp + std::min(g.pt, hp) * pg.wp + std::min(g.pl, pg.wp), pg.wp, std::max<int64_t>(0, hp - g.pt),
              std::max<int64_t>(0, pg.wp - g.pl), 0, 0, g.h, g.w, dx + t * g.h * g.w);
  });
}

void depthwise_bwd_weight(const Geometry& g, const float* x, const float* dy, float* dw, float* db, Isa isa,
                          int nthreads) {
  const DirectKernels& kern = lookup<DirectKernels>("conv2d_direct", isa);
  const DepthwisePlane pg = depthwise_plane(g);
  const int64_t opg = g.o / g.groups, taps = g.kh * g.kw, P = g.oh * g.ow;
  for_tasks(g.o, nthreads, [&](int64_t o, int) {
    const int64_t c = o / opg;
    std::vector<double> acc(static_cast<size_t>(taps), 0.0);
    std::vector<float> lanes(static_cast<size_t>(taps * kDepthwiseLanes));
    double bsum = 0.0;
    float* xp = t_plane.get(static_cast<size_t>(padded_rows(g) * pg.wp));
    for (int64_t n = 0; n < g.n; ++n) {
      const float* dyp = dy + (n * g.o + o) * P;
      pad_input(g, pg, x + (n * g.c + c) * g.h * g.w, xp);
      kern.bwd_weight(pg, xp, dyp, acc.data(), lanes.data());
      if (db) bsum += sum_floats(dyp, P);
    }
    for (int64_t t = 0; t < taps; ++t) dw[o * taps + t] = static_cast<float>(acc[t]);
    if (db) db[o] = static_cast<float>(bsum);
  });
}

}  // namespace

// The forward with enough input channels per group: one GEMM per kernel tap
// on a zero-padded copy of the image, read in place.
//
// At unit stride, with the input padded into planes of Hq x Wq, output pixel
// (i, j) of tap (ky, kx) reads xp[c, i + ky*dh, j + kx*dw]. Numbering the
// outputs v = i*Wq + j ("virtual" columns: the Wq - OW last of each row are
// discarded), that is xp[c*Hq*Wq + ky*dh*Wq + kx*dw + v]: for a fixed tap,
// B = (C/groups x OH*Wq) is a plain strided matrix over xp -- no im2col, no
// packing. A stride s splits each padded plane into s x s phase planes
// (rows = a mod sh, columns = b mod sw), each read at unit stride by the taps
// of its phase. The taps' GEMMs accumulate into an L2-resident block of the
// virtual output, which is then compacted into y.
bool fwd_shifted_applies(const Geometry& g) {
  return g.c / g.groups >= 16 && g.o / g.groups > gemm::kSmallM && padded_plane_ok(g);
}

void conv2d_fwd_shifted(const Geometry& g, const float* x, const float* w, const float* bias, bool relu, float* y,
                        Isa isa, int nthreads) {
  const int64_t cpg = g.c / g.groups, opg = g.o / g.groups, taps = g.kh * g.kw, K = cpg * taps;
  const int64_t P = g.oh * g.ow;
  const int64_t hq = g.oh + (g.kh - 1) * g.dh / g.sh, wq = g.ow + (g.kw - 1) * g.dw / g.sw;
  const int64_t phase = hq * wq, chan = g.sh * g.sw * phase, V = g.oh * wq;
  const int64_t slack = (g.kw - 1) * g.dw / g.sw;  // the last tap's virtual columns run past the planes
  // Each tap's weight (opg x cpg, a strided view of w) packed once per call.
  const int64_t wsize = gemm::packed_a_size(opg, cpg, isa);
  std::unique_ptr<float[]> wpacked(new float[static_cast<size_t>(wsize * taps * g.groups)]);
  for (int64_t grp = 0; grp < g.groups; ++grp)
    for (int64_t t = 0; t < taps; ++t)
      gemm::pack_a_whole({w + grp * opg * K + t, opg, cpg, K, taps}, isa, wpacked.get() + (grp * taps + t) * wsize);

  const int64_t tasks = g.n * g.groups;
  const int inner = tasks >= nthreads ? 1 : nthreads;
  for_tasks(tasks, inner == 1 ? nthreads : 1, [&](int64_t task, int) {
    const int64_t n = task / g.groups, grp = task % g.groups;
    float* xp = t_plane.get(static_cast<size_t>(cpg * chan + slack));
    // With no virtual columns to drop (a 1x1 kernel, no padding) the GEMMs
    // write y itself.
    float* yb = y + (n * g.o + grp * opg) * P;
    float* cv = wq == g.ow ? yb : t_col.get(static_cast<size_t>(opg * V));
    for (int64_t c = 0; c < cpg; ++c) {
      const float* xc = x + (n * g.c + grp * cpg + c) * g.h * g.w;
      if (g.sh == 1 && g.sw == 1) {
        pad_plane(xc, g.w, g.h, g.w, g.pt, g.pl, hq, wq, xp + c * chan);
        continue;
      }
      // Phase plane (a, b) holds padded rows a, a + sh, ... and columns b, b + sw, ...
      for (int64_t a = 0; a < g.sh; ++a)
        for (int64_t b = 0; b < g.sw; ++b)
          for (int64_t u = 0; u < hq; ++u) {
            float* d = xp + c * chan + (a * g.sw + b) * phase + u * wq;
            const int64_t r = u * g.sh + a - g.pt;
            if (r < 0 || r >= g.h) {
              std::fill(d, d + wq, 0.0f);
              continue;
            }
            for (int64_t v = 0; v < wq; ++v) {
              const int64_t col = v * g.sw + b - g.pl;
              d[v] = col >= 0 && col < g.w ? xc[r * g.w + col] : 0.0f;
            }
          }
    }
    std::fill(xp + cpg * chan, xp + cpg * chan + slack, 0.0f);
    if (bias)
      for (int64_t o = 0; o < opg; ++o) std::fill(cv + o * V, cv + (o + 1) * V, bias[grp * opg + o]);
    for (int64_t t = 0; t < taps; ++t) {
      const int64_t ry = (t / g.kw) * g.dh, rx = (t % g.kw) * g.dw;  // the tap's offset in padded pixels
      gemm::GemmArgs ga;
      ga.a = {w + grp * opg * K + t, opg, cpg, K, taps};
      ga.a_packed = wpacked.get() + (grp * taps + t) * wsize;
      ga.b = {xp + (ry % g.sh * g.sw + rx % g.sw) * phase + ry / g.sh * wq + rx / g.sw, cpg, V, chan, 1};
      ga.b_in_place = true;
      ga.c = {cv, opg, V, V};
      ga.beta = (t > 0 || bias) ? 1.0f : 0.0f;
      ga.relu = relu && t == taps - 1;
      gemm::gemm_cpu(ga, isa, inner);
    }
    if (cv != yb)
      for (int64_t o = 0; o < opg; ++o)
        for (int64_t i = 0; i < g.oh; ++i)
          std::memcpy(yb + o * P + i * g.ow, cv + o * V + i * wq, sizeof(float) * g.ow);
  });
}

// ------------------------------------------------------------ Winograd F(2x2, 3x3)
//
// For 3x3 kernels at unit stride and dilation with enough channels per group,
// each 2x2 block of output ("tile") is computed from a 4x4 block of input in
// the Winograd domain: U = G w G^T (per output/input channel pair, once per
// call), V = B^T d B (per input channel and tile), M = sum_c U_c . V_c, which
// for each of the 16 positions xi of the 4x4 domain is a GEMM
// M_xi (O/groups x tiles) = U_xi (O/groups x C/groups) @ V_xi (C/groups x tiles),
// and y = A^T M A. The GEMMs do 16 multiply-adds per tile and channel pair
// where the direct convolution does 36: 2.25x fewer. The transforms are
// additions and halvings, so small-integer inputs still give exact results;
// otherwise the rounding error is a small multiple of the direct sum's.
//
//   G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
//   A^T = [1 1 1 0; 0 1 -1 -1]
bool winograd_applies(const Geometry& g) {
  return g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1 && g.c / g.groups >= 16 &&
         g.o / g.groups >= 16 && padded_plane_ok(g);
}

thread_local Scratch t_wino_v;
thread_local Scratch t_wino_m;

void winograd_fwd(const Geometry& g, const float* x, const float* w, const float* bias, bool relu, float* y, Isa isa,
                  int nthreads) {
  const int64_t cpg = g.c / g.groups, opg = g.o / g.groups, P = g.oh * g.ow;
  const int64_t th = (g.oh + 1) / 2, tw = (g.ow + 1) / 2;
  const DirectKernels& kern = lookup<DirectKernels>("conv2d_direct", isa);
  // Padded input rows cover every tile's 4x4 block.
  const int64_t wp = 2 * tw + 2;
  // Tiles per block: whole rows of tiles, with V and M near 512 KB each.
  const int64_t rows_per_block = std::clamp<int64_t>((int64_t(8) << 10) / std::max(cpg, opg) / tw, 1, th);
  const int64_t blocks = (th + rows_per_block - 1) / rows_per_block, tb_max = rows_per_block * tw;

  // U_xi per group, packed as the GEMM's A.
  const int64_t usize = gemm::packed_a_size(opg, cpg, isa);
  std::unique_ptr<float[]> upacked(new float[static_cast<size_t>(16 * usize * g.groups)]);
  std::vector<float> u(static_cast<size_t>(16 * g.o * cpg));  // [group][xi][o][c]
  {
    for (int64_t grp = 0; grp < g.groups; ++grp) {
      for (int64_t o = 0; o < opg; ++o)
        for (int64_t c = 0; c < cpg; ++c) {
          const float* k = w + ((grp * opg + o) * cpg + c) * 9;
          float t[4][3];  // G k
          for (int q = 0; q < 3; ++q) {
            t[0][q] = k[q];
            t[1][q] = 0.5f * (k[q] + k[3 + q] + k[6 + q]);
            t[2][q] = 0.5f * (k[q] - k[3 + q] + k[6 + q]);
            t[3][q] = k[6 + q];
          }
          for (int r = 0; r < 4; ++r) {  // (G k) G^T
            const float v[4] = {t[r][0], 0.5f * (t[r][0] + t[r][1] + t[r][2]), 0.5f * (t[r][0] - t[r][1] + t[r][2]),
                                t[r][2]};
            for (int s = 0; s < 4; ++s) u[(((grp * 16 + r * 4 + s) * opg + o) * cpg + c)] = v[s];
          }
        }
      for (int xi = 0; xi < 16; ++xi)
        gemm::pack_a_whole({u.data() + (grp * 16 + xi) * opg * cpg, opg, cpg, cpg, 1}, isa,
                           upacked.get() + (grp * 16 + xi) * usize);
    }
  }

  for_tasks(g.n * g.groups * blocks, nthreads, [&](int64_t task, int) {
    const int64_t b = task % blocks, ng = task / blocks, n = ng / g.groups, grp = ng % g.groups;
    const int64_t ti0 = b * rows_per_block, ti1 = std::min(th, ti0 + rows_per_block), tb = (ti1 - ti0) * tw;
    // The input rows this block reads, padded: padded rows 2*ti0 .. 2*ti1 + 1.
    const int64_t nti = ti1 - ti0, rows = 2 * nti + 2;
    float* xp = t_plane.get(static_cast<size_t>(cpg * rows * wp + kWinogradSlack));
    for (int64_t c = 0; c < cpg; ++c)
      pad_plane(x + (n * g.c + grp * cpg + c) * g.h * g.w, g.w, g.h, g.w, g.pt - 2 * ti0, g.pl, rows, wp,
                xp + c * rows * wp);
    std::fill(xp + cpg * rows * wp, xp + cpg * rows * wp + kWinogradSlack, 0.0f);
    float* v = t_wino_v.get(static_cast<size_t>(16 * cpg * tb_max));
    kern.wino_input(xp, cpg, wp, nti, tw, v);
    // M_xi = U_xi @ V_xi (m has room for the output transform's last partial vector).
    float* m = t_wino_m.get(static_cast<size_t>(16 * opg * tb_max + 16));
    for (int xi = 0; xi < 16; ++xi) {
      gemm::GemmArgs ga;
      ga.a = {u.data() + (grp * 16 + xi) * opg * cpg, opg, cpg, cpg, 1};
      ga.a_packed = upacked.get() + (grp * 16 + xi) * usize;
      ga.b = {v + xi * cpg * tb, cpg, tb, tb, 1};
      ga.b_in_place = true;
      ga.c = {m + xi * opg * tb, opg, tb, tb};
      gemm::gemm_cpu(ga, isa, 1);
    }
    kern.wino_output(m, opg, nti, tw, bias ? bias + grp * opg : nullptr, relu, 2 * ti0, g.oh, g.ow, P,
                     y + (n * g.o + grp * opg) * P);
  });
}

void conv2d_fwd(const Geometry& g, const float* x, const float* w, const float* bias, bool relu, float* y, Isa isa,
                int nthreads) {
  const int64_t cpg = g.c / g.groups, opg = g.o / g.groups;
  const int64_t K = cpg * g.kh * g.kw, P = g.oh * g.ow;
  const int64_t tasks = g.n * g.groups;
  if (tasks == 0 || P == 0 || opg == 0) return;
  if (K == 0) {  // no input channels: every output is its bias (the GEMM has nothing to sum)
    for (int64_t t = 0; t < g.n * g.o; ++t) {
      const float b = bias ? bias[t % g.o] : 0.0f;
      std::fill(y + t * P, y + (t + 1) * P, relu && !(b > 0.0f) && !std::isnan(b) ? 0.0f : b);
    }
    return;
  }
  if (cpg == 1 && padded_plane_ok(g)) {
    depthwise_fwd(g, x, w, bias, relu, y, isa, nthreads);
    return;
  }
  if (winograd_applies(g)) {
    winograd_fwd(g, x, w, bias, relu, y, isa, nthreads);
    return;
  }
  if (fwd_shifted_applies(g)) {
    conv2d_fwd_shifted(g, x, w, bias, relu, y, isa, nthreads);
    return;
  }
  if (smallc_applies(g)) {
    smallc_fwd(g, x, w, bias, relu, y, isa, nthreads);
    return;
  }

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

void conv2d_bwd_data(const Geometry& g, const float* dy, const float* w, float* dx, Isa isa, int nthreads) {
  const int64_t cpg = g.c / g.groups, opg = g.o / g.groups, taps = g.kh * g.kw;
  const int64_t K = cpg * taps, P = g.oh * g.ow, HW = g.h * g.w;
  if (g.n == 0 || cpg == 0 || HW == 0) return;
  if (cpg == 1 && opg > 0 && P > 0 && padded_plane_ok(g)) {
    depthwise_bwd_data(g, dy, w, dx, isa, nthreads);
    return;
  }
  // At unit stride dx is itself a convolution: of dy, padded by the kernel's
  // span less the forward padding, with the kernel flipped and its input and
  // output channels swapped. That runs as the shifted-input forward.
  const Geometry t{g.n, g.o, g.oh, g.ow, g.c, g.h, g.w, g.kh, g.kw, 1, 1,
                   (g.kh - 1) * g.dh - g.pt, (g.kw - 1) * g.dw - g.pl, g.dh, g.dw, g.groups};
  if (g.sh == 1 && g.sw == 1 && t.pt >= 0 && t.pl >= 0 && P > 0 && (winograd_applies(t) || fwd_shifted_applies(t))) {
    std::unique_ptr<float[]> wt(new float[static_cast<size_t>(g.o * K)]);
    for (int64_t grp = 0; grp < g.groups; ++grp)
      for (int64_t o = 0; o < opg; ++o)
        for (int64_t c = 0; c < cpg; ++c)
          for (int64_t k = 0; k < taps; ++k)
            wt[((grp * cpg + c) * opg + o) * taps + k] = w[((grp * opg + o) * cpg + c) * taps + taps - 1 - k];
    if (winograd_applies(t))
      winograd_fwd(t, dy, wt.get(), nullptr, false, dx, isa, nthreads);
    else
      conv2d_fwd_shifted(t, dy, wt.get(), nullptr, false, dx, isa, nthreads);
    return;
  }
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

void conv2d_bwd_weight(const Geometry& g, const float* x, const float* dy, float* dw, float* db, Isa isa,
                       int nthreads) {
  const int64_t cpg = g.c / g.groups, opg = g.o / g.groups, taps = g.kh * g.kw;
  const int64_t K = cpg * taps, P = g.oh * g.ow, HW = g.h * g.w;
  const int64_t wsize = g.o * K;
  if (g.n == 0 || P == 0 || K == 0) {
    std::fill(dw, dw + wsize, 0.0f);
    if (db) {  // no input channels leave the bias gradient: the sum of dy over images and pixels
      std::fill(db, db + g.o, 0.0f);
      for (int64_t n = 0; n < g.n; ++n)
        for (int64_t o = 0; o < g.o; ++o) db[o] += sum_floats(dy + (n * g.o + o) * P, P);
    }
    return;
  }
  if (cpg == 1 && padded_plane_ok(g)) {
    depthwise_bwd_weight(g, x, dy, dw, db, isa, nthreads);
    return;
  }
  const gemm::pack_b_t_fn pack_t = lookup<gemm::Ukernel>("gemm", isa).pack_b_t;
  // accb[o] (+)= the sum of image n's dy plane o.
  auto bias_sums = [&](int64_t n, float* accb, bool first) {
    for (int64_t o = 0; o < g.o; ++o) {
      const float s = sum_floats(dy + (n * g.o + o) * P, P);
      accb[o] = first ? s : accb[o] + s;
    }
  };
  // One image's contribution, accumulated onto acc (O x K) and accb (O) unless
  // `first`, with `threads` threads inside each GEMM.
  auto image = [&](int64_t n, float* acc, float* accb, bool first, int threads) {
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
    if (accb) bias_sums(n, accb, first);
  };
  // The shifted-input form at unit stride: per image and kernel tap,
  // dw_t (O/groups x C/groups) += dy_v @ xshift_t^T, where dy_v is dy with each
  // row padded to Wp with zeros (the virtual columns of conv2d_fwd_shifted)
  // and xshift_t the zero-padded image read in place at the tap's offset. The
  // partial sums are then laid out tap-major, [group][tap][o][c]. Measured on
  // Zen 4 it wins up to 64 output channels per group; with more, the im2col
  // form's one packing per image is spread over enough rows to win instead.
  const bool shifted = g.sh == 1 && g.sw == 1 && fwd_shifted_applies(g) && opg <= 64;
  const DepthwisePlane pg = depthwise_plane(g);
  const int64_t plane = padded_rows(g) * pg.wp, V = g.oh * pg.wp, slack = (g.kw - 1) * g.dw;
  const int64_t apsize = gemm::packed_a_size(opg, V, isa);
  auto image_shifted = [&](int64_t n, float* acc, float* accb, bool first, int threads) {
    float* xp = t_plane.get(static_cast<size_t>(cpg * plane + slack));
    float* dyv = t_col.get(static_cast<size_t>(opg * V));
    float* dyp = t_rows.get(static_cast<size_t>(apsize));
    for (int64_t grp = 0; grp < g.groups; ++grp) {
      for (int64_t c = 0; c < cpg; ++c) pad_input(g, pg, x + (n * g.c + grp * cpg + c) * HW, xp + c * plane);
      std::fill(xp + cpg * plane, xp + cpg * plane + slack, 0.0f);
      pad_plane(dy + (n * g.o + grp * opg) * P, g.ow, opg * g.oh, g.ow, 0, 0, opg * g.oh, pg.wp, dyv);
      gemm::pack_a_whole({dyv, opg, V, V, 1}, isa, dyp);
      for (int64_t t = 0; t < taps; ++t) {
        gemm::GemmArgs ga;
        ga.a = {dyv, opg, V, V, 1};
        ga.a_packed = dyp;
        ga.b = {xp + (t / g.kw) * g.dh * pg.wp + (t % g.kw) * g.dw, V, cpg, 1, plane};
        ga.c = {acc + (grp * taps + t) * opg * cpg, opg, cpg, cpg};
        ga.beta = first ? 0.0f : 1.0f;
        gemm::gemm_cpu(ga, isa, threads);
      }
    }
    if (accb) bias_sums(n, accb, first);
  };

  // Few input channels at unit stride: the direct kernel's dot products.
  const bool smallc = smallc_applies(g);
  std::unique_ptr<SmallCPlanes> planes(smallc ? new SmallCPlanes(g) : nullptr);
  const DirectKernels& kern = lookup<DirectKernels>("conv2d_direct", isa);
  auto image_smallc = [&](int64_t n, float* acc, float* accb, bool first, int) {
    if (first) std::fill(acc, acc + wsize, 0.0f);
    for (int64_t grp = 0; grp < g.groups; ++grp)
      kern.smallc_bwd_weight(planes->image, planes->pad(g, x, n, grp), dy + (n * g.o + grp * opg) * P, opg,
                             acc + grp * opg * K);
    if (accb) bias_sums(n, accb, first);
  };

  // Winograd F(3x3, 2x2): per image, group and block of 2x2 output tiles,
  // M_xi (O/groups x C/groups) += (G dy G^T)_xi @ (B^T x B)_xi^T over the
  // tiles, the 16 sums laid out [group][xi][o][c]; dw = A^T M A at the end,
  // A^T = [1 1 1 0; 0 1 -1 0; 0 1 1 -1]. 2.25x fewer multiply-adds than the
  // direct sums.
  const bool wino = winograd_applies(g);
  const int64_t th = (g.oh + 1) / 2, tw = (g.ow + 1) / 2, wpw = 2 * tw + 2;
  const int64_t wrows = std::clamp<int64_t>((int64_t(8) << 10) / std::max(cpg, opg) / tw, 1, th);
  auto image_wino = [&](int64_t n, float* acc, float* accb, bool first, int threads) {
    for (int64_t grp = 0; grp < g.groups; ++grp)
      for (int64_t ti0 = 0; ti0 < th; ti0 += wrows) {
        const int64_t nti = std::min(wrows, th - ti0), rows = 2 * nti + 2, tb = nti * tw;
        float* xp = t_plane.get(static_cast<size_t>(cpg * rows * wpw + kWinogradSlack));
        for (int64_t c = 0; c < cpg; ++c)
          pad_plane(x + (n * g.c + grp * cpg + c) * HW, g.w, g.h, g.w, g.pt - 2 * ti0, g.pl, rows, wpw,
                    xp + c * rows * wpw);
        std::fill(xp + cpg * rows * wpw, xp + cpg * rows * wpw + kWinogradSlack, 0.0f);
        float* v = t_wino_v.get(static_cast<size_t>(16 * cpg * tb));
        kern.wino_input(xp, cpg, wpw, nti, tw, v);
        float* dt = t_wino_m.get(static_cast<size_t>(16 * opg * tb));
        kern.wino_dy(dy + (n * g.o + grp * opg) * P, opg, nti, tw, 2 * ti0, g.oh, g.ow, P, dt);
        for (int xi = 0; xi < 16; ++xi) {
          gemm::GemmArgs ga;
          ga.a = {dt + xi * opg * tb, opg, tb, tb, 1};
          ga.b = {v + xi * cpg * tb, tb, cpg, 1, tb};
          ga.c = {acc + (grp * 16 + xi) * opg * cpg, opg, cpg, cpg};
          ga.beta = (first && ti0 == 0) ? 0.0f : 1.0f;
          gemm::gemm_cpu(ga, isa, threads);
        }
      }
    if (accb) bias_sums(n, accb, first);
  };

  // Images are split into `parts` (one per thread when there are enough
  // images; otherwise one, with the threads inside each GEMM), each summed
  // into its own accumulators -- part 0 straight into dw and db when the
  // layout is theirs -- which are added up at the end.
  const int parts = g.n >= nthreads ? nthreads : 1;
  const int inner = parts == 1 ? nthreads : 1;
  const bool direct0 = !shifted && !wino;
  const int64_t asize = wino ? 16 * g.o * cpg : wsize;  // the accumulators' weight part
  const int64_t stride = asize + g.o;
  const int own = parts - (direct0 ? 1 : 0);
  std::unique_ptr<float[]> partial(own > 0 ? new float[static_cast<size_t>(stride * own)] : nullptr);
  auto acc_of = [&](int64_t p) {
    return direct0 ? (p == 0 ? dw : partial.get() + (p - 1) * stride) : partial.get() + p * stride;
  };
  for_tasks(parts, parts, [&](int64_t p, int) {
    float* acc = acc_of(p);
    float* accb = db == nullptr ? nullptr : (direct0 && p == 0) ? db : acc + asize;
    const int64_t n0 = g.n * p / parts, n1 = g.n * (p + 1) / parts;
    for (int64_t n = n0; n < n1; ++n) {
      if (wino)
        image_wino(n, acc, accb, n == n0, inner);
      else if (shifted)
        image_shifted(n, acc, accb, n == n0, inner);
      else if (smallc)
        image_smallc(n, acc, accb, n == n0, inner);
      else
        image(n, acc, accb, n == n0, inner);
    }
  });
  if (own == 0) return;
  if (wino) {
    // Sum the parts into part 0, then dw = A^T M A and db.
    float* m = partial.get();
    const int64_t total = db ? stride : asize;
    for_tasks(nthreads, nthreads, [&](int64_t tid, int) {
      for (int64_t i = total * tid / nthreads; i < total * (tid + 1) / nthreads; ++i)
        for (int q = 1; q < own; ++q) m[i] += m[q * stride + i];
    });
    for (int64_t grp = 0; grp < g.groups; ++grp)
      for (int64_t o = 0; o < opg; ++o)
        for (int64_t c = 0; c < cpg; ++c) {
          float mm[4][4], u[3][4];
          for (int xi = 0; xi < 16; ++xi) mm[xi / 4][xi % 4] = m[((grp * 16 + xi) * opg + o) * cpg + c];
          for (int q = 0; q < 4; ++q) {  // A^T M
            u[0][q] = mm[0][q] + mm[1][q] + mm[2][q];
            u[1][q] = mm[1][q] - mm[2][q];
            u[2][q] = mm[1][q] + mm[2][q] - mm[3][q];
          }
          float* d = dw + ((grp * opg + o) * cpg + c) * 9;
          for (int r = 0; r < 3; ++r) {  // (A^T M) A
            d[r * 3 + 0] = u[r][0] + u[r][1] + u[r][2];
            d[r * 3 + 1] = u[r][1] - u[r][2];
            d[r * 3 + 2] = u[r][1] + u[r][2] - u[r][3];
          }
        }
    if (db) std::copy(m + asize, m + asize + g.o, db);
    return;
  }
  // dw's index i = (o, c, tap) -> the accumulators' index.
  auto source = [&](int64_t i) {
    if (!shifted || i >= wsize) return i;
    const int64_t o = i / K, c = (i % K) / taps, t = i % taps;
    return ((o / opg * taps + t) * opg + o % opg) * cpg + c;
  };
  const int64_t total = db ? stride : wsize;
  for_tasks(nthreads, nthreads, [&](int64_t tid, int) {
    for (int64_t i = total * tid / nthreads; i < total * (tid + 1) / nthreads; ++i) {
      const int64_t j = source(i);
      float s = direct0 ? (i < wsize ? dw[i] : db[i - wsize]) : 0.0f;
      for (int q = 0; q < own; ++q) s += partial[q * stride + j];
      (i < wsize ? dw[i] : db[i - wsize]) = s;
    }
  });
}

}  // namespace ember::conv2d
