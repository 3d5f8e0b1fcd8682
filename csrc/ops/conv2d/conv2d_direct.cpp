// The drivers of the direct kernels (conv2d_direct.h), where a GEMM would
// spend its time packing: depthwise convolutions (one input channel per
// group), and few input channels per group at unit stride (a first layer's 3,
// K = 27: a GEMM's K too short to cover its packing and tile overheads).
//
// Each pads the planes it needs into per-thread scratch, big enough that every
// window lies inside, and hands them to the ISA's kernels; threads over
// (image, channel) planes, or over output channels for the depthwise weight
// gradient, which sums every image of a channel in one thread (in double).
#include <algorithm>
#include <vector>

#include "core/registry.h"
#include "ops/conv2d/conv2d_internal.h"

namespace ember::conv2d {
namespace {

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

}  // namespace

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

void smallc_bwd_weight(const Geometry& g, const float* x, const float* dy, float* dw, float* db, Isa isa,
                       int nthreads) {
  const DirectKernels& kern = lookup<DirectKernels>("conv2d_direct", isa);
  const SmallCPlanes planes(g);
  const int64_t opg = g.o / g.groups, K = planes.image.k, P = g.oh * g.ow, wsize = g.o * K;
  // The dot products of the direct kernel, summed in dw's own layout.
  WeightGradSum sum{wsize, [&](int64_t n, float* acc, bool first, int) {
                      if (first) std::fill(acc, acc + wsize, 0.0f);
                      for (int64_t grp = 0; grp < g.groups; ++grp)
                        kern.smallc_bwd_weight(planes.image, planes.pad(g, x, n, grp), dy + (n * g.o + grp * opg) * P,
                                               opg, acc + grp * opg * K);
                    },
                    {}};
  sum_weight_grad(g, dy, dw, db, sum, nthreads);
}

}  // namespace ember::conv2d
