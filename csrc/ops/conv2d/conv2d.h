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

// The oracles: plain loops, double accumulation, no threads, no blocking; T is float or
// double (the float64 path serves gradient checks).
template <class T>
void conv2d_fwd_ref(const Geometry& g, const T* x, const T* w, const T* bias, bool relu, T* y);
template <class T>
void conv2d_bwd_data_ref(const Geometry& g, const T* dy, const T* w, T* dx);
template <class T>
void conv2d_bwd_weight_ref(const Geometry& g, const T* x, const T* dy, T* dw, T* db);

// The fast paths, chosen by shape in conv2d_cpu.cpp, one file per algorithm:
//  - 3x3, unit stride and dilation, 16+ channels per group each way: Winograd
//    F(2x2, 3x3) for the forward and the input gradient, F(3x3, 2x2) for the
//    weight gradient, each 16 GEMMs over transformed tiles (conv2d_winograd.cpp);
//  - 16+ input channels per group: one GEMM per kernel tap over a zero-padded
//    copy of the image read in place (strides split it into phase planes)
//    (conv2d_pertap.cpp);
//  - 2..15 input channels per group at unit stride, or one (depthwise): the
//    direct kernels of conv2d_direct.h (conv2d_direct.cpp);
//  - otherwise implicit GEMM, the im2col matrix (or its transpose) packed
//    block by block straight from x (conv2d_implicit_gemm.cpp).
// The input gradient at unit stride is the forward of dy with the kernel
// flipped and its channels swapped; at other strides, L2-sized blocks of
// w^T @ dy are scattered into dx (col2im). None builds the im2col matrix.
// Threads over images, groups and tile blocks (inside the GEMMs when there
// are too few of those); the weight gradient sums per-thread partials, so its
// summation order depends on the thread count.
void conv2d_fwd(const Geometry& g, const float* x, const float* w, const float* bias, bool relu, float* y, Isa isa,
                int nthreads);
void conv2d_bwd_data(const Geometry& g, const float* dy, const float* w, float* dx, Isa isa, int nthreads);
// The forward with bf16 products (the bf16 precision policy; groups == 1): x and w
// rounded to bf16, each product summed in float32 (conv2d_bf16.cpp).
void conv2d_fwd_bf16(const Geometry& g, const float* x, const float* w, const float* bias, bool relu, float* y,
                     Isa isa, int nthreads);
// The input gradient with bf16 products, as the bf16 forward of dy with the kernel flipped
// and its channels swapped: unit stride, groups == 1 and padding at most the kernel's reach
// only -- returns false (writing nothing) otherwise.
bool conv2d_bwd_data_bf16(const Geometry& g, const float* dy, const float* w, float* dx, Isa isa, int nthreads);
// The weight gradient with bf16 products (x and dy rounded to bf16, sums in float32; groups == 1);
// the bias gradient (db, or null) is summed from the float32 dy.
void conv2d_bwd_weight_bf16(const Geometry& g, const float* x, const float* dy, float* dw, float* db, Isa isa,
                            int nthreads);
void conv2d_bwd_weight(const Geometry& g, const float* x, const float* dy, float* dw, float* db, Isa isa,
                       int nthreads);

}  // namespace ember::conv2d
