// conv2d on the CPU: which algorithm runs for which shape. Nothing but the
// choice is made here; each algorithm lives in its own file
// (conv2d_internal.h lists them), the per-ISA kernels they call in
// conv2d_direct_<isa>.cpp and conv2d_winograd_<isa>.cpp, the GEMMs in
// ops/gemm.
//
// In order of preference (the first that applies runs):
//   forward:          depthwise, Winograd, per-tap GEMMs, few-channel direct,
//                     implicit GEMM;
//   input gradient:   depthwise; at unit stride the forward of dy with the
//                     kernel flipped (Winograd or per-tap); implicit GEMM
//                     (col2im);
//   weight gradient:  depthwise, Winograd, per-tap GEMMs, few-channel direct,
//                     implicit GEMM.
#include <algorithm>
#include <cmath>
#include <memory>

#include "ops/conv2d/conv2d.h"
#include "ops/conv2d/conv2d_internal.h"
#include "ops/gemm/gemm_ukernel.h"

namespace ember::conv2d {
namespace {

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

// One input channel per group, any channel multiplier: a GEMM's K would be KH*KW.
bool depthwise_applies(const Geometry& g) { return g.c / g.groups == 1 && padded_plane_ok(g); }

// 3x3, unit stride and dilation, 16+ channels per group each way.
bool winograd_applies(const Geometry& g) {
  return g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1 && g.c / g.groups >= 16 &&
         g.o / g.groups >= 16 && padded_plane_ok(g);
}

// 16+ input channels per group, and more output channels than the small-M GEMM
// takes (which would stream the image once per tap).
bool pertap_fwd_applies(const Geometry& g) {
  return g.c / g.groups >= 16 && g.o / g.groups > gemm::kSmallM && padded_plane_ok(g);
}

// At unit stride, up to 64 output channels per group: measured on Zen 4, with
// more the implicit GEMM's one packing per image is spread over enough rows to
// win instead.
bool pertap_bwd_weight_applies(const Geometry& g) {
  return g.sh == 1 && g.sw == 1 && g.o / g.groups <= 64 && pertap_fwd_applies(g);
}

// 2..15 input channels per group at unit stride (a first layer's 3).
bool smallc_applies(const Geometry& g) {
  const int64_t cpg = g.c / g.groups;
  return g.sh == 1 && g.sw == 1 && cpg >= 2 && cpg < 16 && padded_plane_ok(g);
}

}  // namespace

void conv2d_fwd(const Geometry& g, const float* x, const float* w, const float* bias, bool relu, float* y, Isa isa,
                int nthreads) {
  const int64_t K = g.c / g.groups * g.kh * g.kw, P = g.oh * g.ow;
  if (g.n == 0 || P == 0 || g.o == 0) return;
  if (K == 0) {  // no input channels: every output is its bias (the GEMM has nothing to sum)
    for (int64_t t = 0; t < g.n * g.o; ++t) {
      const float b = bias ? bias[t % g.o] : 0.0f;
      std::fill(y + t * P, y + (t + 1) * P, relu && !(b > 0.0f) && !std::isnan(b) ? 0.0f : b);
    }
    return;
  }
  if (depthwise_applies(g))
    depthwise_fwd(g, x, w, bias, relu, y, isa, nthreads);
  else if (winograd_applies(g))
    winograd_fwd(g, x, w, bias, relu, y, isa, nthreads);
  else if (pertap_fwd_applies(g))
    pertap_fwd(g, x, w, bias, relu, y, isa, nthreads);
  else if (smallc_applies(g))
    smallc_fwd(g, x, w, bias, relu, y, isa, nthreads);
  else
    implicit_gemm_fwd(g, x, w, bias, relu, y, isa, nthreads);
}

void conv2d_bwd_data(const Geometry& g, const float* dy, const float* w, float* dx, Isa isa, int nthreads) {
  const int64_t cpg = g.c / g.groups, opg = g.o / g.groups, taps = g.kh * g.kw, P = g.oh * g.ow;
  if (g.n == 0 || cpg == 0 || g.h * g.w == 0) return;
  if (opg == 0 || P == 0) {  // no output reached the input: its gradient is zero
    std::fill(dx, dx + g.n * g.c * g.h * g.w, 0.0f);
    return;
  }
  if (depthwise_applies(g)) {
    depthwise_bwd_data(g, dy, w, dx, isa, nthreads);
    return;
  }
  // At unit stride dx is itself a convolution: of dy, padded by the kernel's
  // span less the forward padding, with the kernel flipped and its input and
  // output channels swapped, which runs as a forward.
  const Geometry t{g.n, g.o, g.oh, g.ow, g.c, g.h, g.w, g.kh, g.kw, 1, 1,
                   (g.kh - 1) * g.dh - g.pt, (g.kw - 1) * g.dw - g.pl, g.dh, g.dw, g.groups};
  if (g.sh == 1 && g.sw == 1 && t.pt >= 0 && t.pl >= 0 && P > 0 && (winograd_applies(t) || pertap_fwd_applies(t))) {
    std::unique_ptr<float[]> wt(new float[static_cast<size_t>(g.o * cpg * taps)]);
    for (int64_t grp = 0; grp < g.groups; ++grp)
      for (int64_t o = 0; o < opg; ++o)
        for (int64_t c = 0; c < cpg; ++c)
          for (int64_t k = 0; k < taps; ++k)
            wt[((grp * cpg + c) * opg + o) * taps + k] = w[((grp * opg + o) * cpg + c) * taps + taps - 1 - k];
    if (winograd_applies(t))
      winograd_fwd(t, dy, wt.get(), nullptr, false, dx, isa, nthreads);
    else
      pertap_fwd(t, dy, wt.get(), nullptr, false, dx, isa, nthreads);
    return;
  }
  implicit_gemm_bwd_data(g, dy, w, dx, isa, nthreads);
}

void conv2d_bwd_weight(const Geometry& g, const float* x, const float* dy, float* dw, float* db, Isa isa,
                       int nthreads) {
  const int64_t K = g.c / g.groups * g.kh * g.kw, P = g.oh * g.ow;
  if (g.n == 0 || P == 0 || K == 0 || g.o == 0) {
    std::fill(dw, dw + g.o * K, 0.0f);
    if (db) {  // no input channels leave the bias gradient: the sum of dy over images and pixels
      std::fill(db, db + g.o, 0.0f);
      for (int64_t n = 0; n < g.n; ++n)
        for (int64_t o = 0; o < g.o; ++o) db[o] += sum_floats(dy + (n * g.o + o) * P, P);
    }
    return;
  }
  if (depthwise_applies(g))
    depthwise_bwd_weight(g, x, dy, dw, db, isa, nthreads);
  else if (winograd_applies(g))
    winograd_bwd_weight(g, x, dy, dw, db, isa, nthreads);
  else if (pertap_bwd_weight_applies(g))
    pertap_bwd_weight(g, x, dy, dw, db, isa, nthreads);
  else if (smallc_applies(g))
    smallc_bwd_weight(g, x, dy, dw, db, isa, nthreads);
  else
    implicit_gemm_bwd_weight(g, x, dy, dw, db, isa, nthreads);
}

}  // namespace ember::conv2d
