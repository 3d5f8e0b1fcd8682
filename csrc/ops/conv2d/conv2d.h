// conv2d: the contract.
//
// Layouts are PyTorch's: input x is N x C x H x W, weight w is O x (C/groups) x KH x KW,
// output y is N x O x OH x OW, all C-contiguous float32.
//
//   y[n, o, i, j] = act(bias[o] + sum_{c in group(o), p, q}
//                       w[o, c - g0, p, q] * x[n, c, i*sh - pt + p*dh, j*sw - pl + q*dw])
//
// where group(o) is the block of C/groups input channels of o's group (g0 its first),
// input positions outside the image are zero (padding), pt/pl are the top/left padding and
// act is identity or ReLU. Padding may be asymmetric ('same' with an even kernel pads one
// more at the bottom/right): the bottom/right padding is implied by OH and OW.
//
// Backward, each usable alone:
//   backward-data:   dx[n, c, h, w] = sum over (o, i, j, p, q) that read x[n, c, h, w] of
//                    w[o, c - g0, p, q] * dy[n, o, i, j]
//   backward-weight: dw[o, c', p, q] = sum_{n, i, j} dy[n, o, i, j] * x[n, g0 + c', ...]
//                    db[o] = sum_{n, i, j} dy[n, o, i, j]
// Nothing is saved between forward and backward: backward-data needs only w and dy,
// backward-weight only x and dy. (A fused ReLU's mask is the caller's: dy must already be
// zero where y was clamped.)
#pragma once

#include <cstdint>

#include "core/cpu_features.h"

namespace ember::conv2d {

struct Geometry {
  int64_t n, c, h, w;     // input
  int64_t o, oh, ow;      // output channels and size
  int64_t kh, kw;         // kernel
  int64_t sh, sw;         // stride (>= 1)
  int64_t pt, pl;         // top and left padding (>= 0)
  int64_t dh, dw;         // dilation (>= 1)
  int64_t groups;         // divides c and o
};

// The oracles: plain loops, double accumulation, no threads, no blocking.
void conv2d_fwd_ref(const Geometry& g, const float* x, const float* w, const float* bias, bool relu, float* y);
void conv2d_bwd_data_ref(const Geometry& g, const float* dy, const float* w, float* dx);
void conv2d_bwd_weight_ref(const Geometry& g, const float* x, const float* dy, float* dw, float* db);

// The fast forward: implicit GEMM. For each image and group, y (O/groups x
// OH*OW) = w (O/groups x C/groups*KH*KW) @ im2col(x), where the GEMM driver
// packs the im2col matrix block by block straight from x; it never exists
// whole. Threads over images and groups (or inside the GEMM when there are
// fewer of those than threads).
void conv2d_fwd(const Geometry& g, const float* x, const float* w, const float* bias, bool relu, float* y, Isa isa,
                int nthreads);

// The fast backward-data: per image and group, column blocks of
// w_g^T @ dy_g (C/groups*KH*KW x a few hundred pixels, L2-sized) are computed
// by the GEMM and scattered straight into dx (col2im); the column matrix never
// exists whole. A 1x1 kernel with unit stride and no padding needs no scatter:
// dx_g = w_g^T @ dy_g. Threads over images and groups, and over input channel
// blocks when there are fewer of those than threads.
void conv2d_bwd_data(const Geometry& g, const float* dy, const float* w, float* dx, Isa isa, int nthreads);

// The fast backward-weight: per image and group, dw_g += dy_g @ im2col(x_g)^T,
// the transposed im2col matrix packed block by block from x by the GEMM
// driver; db is the row sums of dy. Threads split the images, each summing
// into its own partial dw that are added at the end (so the summation order,
// not the result's accuracy, depends on the thread count); with fewer images
// than threads the threads work inside each GEMM instead.
void conv2d_bwd_weight(const Geometry& g, const float* x, const float* dy, float* dw, float* db, Isa isa,
                       int nthreads);

}  // namespace ember::conv2d
