// conv2d as one GEMM per kernel tap over a zero-padded copy of the image,
// read in place: no im2col matrix, and B is never packed.
//
// Forward: at unit stride, with the input padded into planes of Hq x Wq,
// output pixel (i, j) of tap (ky, kx) reads xp[c, i + ky*dh, j + kx*dw].
// Numbering the outputs v = i*Wq + j ("virtual" columns: the Wq - OW last of
// each row are discarded), that is xp[c*Hq*Wq + ky*dh*Wq + kx*dw + v]: for a
// fixed tap, B = (C/groups x OH*Wq) is a plain strided matrix over xp. A
// stride s splits each padded plane into s x s phase planes (rows = a mod sh,
// columns = b mod sw), each read at unit stride by the taps of its phase. The
// taps' GEMMs accumulate into an L2-resident block of the virtual output,
// which is then compacted into y.
//
// Weight gradient, at unit stride: per image and kernel tap,
// dw_t (O/groups x C/groups) += dy_v @ xshift_t^T, where dy_v is dy with each
// row padded to Wp with zeros (the virtual columns of the forward) and
// xshift_t the zero-padded image read in place at the tap's offset. The
// partial sums are laid out tap-major, [group][tap][o][c], and reordered into
// dw at the end.
#include <algorithm>
#include <cstring>
#include <memory>

#include "ops/conv2d/conv2d_internal.h"
#include "ops/gemm/gemm.h"

namespace ember::conv2d {

void pertap_fwd(const Geometry& g, const float* x, const float* w, const float* bias, bool relu, float* y, Isa isa,
                int nthreads) {
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

void pertap_bwd_weight(const Geometry& g, const float* x, const float* dy, float* dw, float* db, Isa isa,
                       int nthreads) {
  const int64_t cpg = g.c / g.groups, opg = g.o / g.groups, taps = g.kh * g.kw;
  const int64_t K = cpg * taps, P = g.oh * g.ow, HW = g.h * g.w;
  const DepthwisePlane pg = depthwise_plane(g);
  const int64_t plane = padded_rows(g) * pg.wp, V = g.oh * pg.wp, slack = (g.kw - 1) * g.dw;
  const int64_t apsize = gemm::packed_a_size(opg, V, isa);
  auto image = [&](int64_t n, float* acc, bool first, int threads) {
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
  };
  // dw[o][c][tap] from the accumulator's [group][tap][o][c].
  auto finish = [&](const float* acc, float* out) {
    for (int64_t i = 0; i < g.o * K; ++i) {
      const int64_t o = i / K, c = (i % K) / taps, t = i % taps;
      out[i] = acc[((o / opg * taps + t) * opg + o % opg) * cpg + c];
    }
  };
  sum_weight_grad(g, dy, dw, db, WeightGradSum{g.o * K, image, finish}, nthreads);
}

}  // namespace ember::conv2d
