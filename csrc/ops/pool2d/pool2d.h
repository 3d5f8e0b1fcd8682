// 2-D pooling: the contract.
//
// Every (n, c) plane of a C-contiguous N x C x H x W float32 input is pooled on its own into
// an OH x OW plane of the output. Window (i, j) covers rows i*sh - ph + p*dh (p < kh) and
// columns j*sw - pw + q*dw (q < kw); positions outside the plane are padding.
//
// max:  y = the largest value in the window, padding never chosen. idx (int64) is the flat
//       index h * W + w of that element within its plane: the first maximum on ties, and a
//       NaN wins over any number (the last NaN in window order) — PyTorch's rules.
//       backward: dx = 0, then dx[plane, idx] += dy for every output (windows may overlap).
// avg:  y = sum of the window's valid elements / divisor, where (as in PyTorch, which has no
//       dilation here, dh = dw = 1) the window is first clipped to the padded plane and
//       divisor = its size when count_include_pad, else the number of valid elements.
//       backward: each dy is spread back over its window's valid elements, / divisor.
// adaptive avg: window i spans rows [floor(i*H/OH), ceil((i+1)*H/OH)), likewise columns,
//       the mean of its elements; OH = OW = 1 is global average pooling.
#pragma once

#include <cstdint>

#include "core/cpu_features.h"

namespace ember::pool2d {

struct Geometry {
  int64_t planes;      // N * C
  int64_t h, w;        // input plane
  int64_t oh, ow;      // output plane
  int64_t kh, kw;      // window
  int64_t sh, sw;      // stride (>= 1)
  int64_t ph, pw;      // padding on each side (>= 0)
  int64_t dh, dw;      // dilation (>= 1; 1 for avg)
};

// The taps [t0, t1) of a window along one axis -- tap t at position start + t * dil for
// 0 <= t < k -- that fall inside [0, size), in closed form, so that the work follows the
// clipped window however large k or the padding are. t0 is the first tap at or past
// position 0 even when no tap is valid (then t1 <= t0). Positions stay below 2^63: the
// bindings bound every extent below 2^62.
inline void valid_taps(int64_t start, int64_t dil, int64_t k, int64_t size, int64_t* t0, int64_t* t1) {
  const int64_t first = start >= 0 ? 0 : (-start + dil - 1) / dil;
  const int64_t end = start >= size ? 0 : (size - 1 - start) / dil + 1;
  *t0 = first;
  *t1 = end < k ? end : k;
}

// PyTorch's pooling output size along one axis (floor or ceil mode) for sizes, kernels,
// strides, paddings and dilations already checked (core/window.h); saturates at INT64_MAX.
int64_t output_size(int64_t size, int64_t k, int64_t pad, int64_t stride, int64_t dil, bool ceil_mode);

// The output plane must be what the window geometry gives (floor or ceil mode), else
// std::invalid_argument.
void check_output(const Geometry& g);

// Every pooling window must cover at least one input element (else a maximum or an average over
// the input alone has nothing to take): checked where the output has elements.
void check_windows_reach_input(const Geometry& g);

// Adaptive pooling's windows are found from i * H / OH: the products of each input extent and
// its output extent must fit in 64 bits, else std::invalid_argument.
void check_adaptive(const Geometry& g);

// Every one of the n indices of a max pooling must point into its plane of plane_size elements,
// or the backward would write out of bounds: else std::invalid_argument naming the first bad one.
void check_indices(const int64_t* idx, int64_t n, int64_t plane_size);

// The oracles: plain loops, double accumulation for averages, no threads; T is float or
// double (the float64 path serves gradient checks).
template <class T>
void max_pool2d_fwd_ref(const Geometry& g, const T* x, T* y, int64_t* idx);
template <class T>
void max_pool2d_bwd_ref(const Geometry& g, const T* dy, const int64_t* idx, T* dx);
template <class T>
void avg_pool2d_fwd_ref(const Geometry& g, bool count_include_pad, const T* x, T* y);
template <class T>
void avg_pool2d_bwd_ref(const Geometry& g, bool count_include_pad, const T* dy, T* dx);
// Only planes, h, w, oh and ow of g are used.
template <class T>
void adaptive_avg_pool2d_fwd_ref(const Geometry& g, const T* x, T* y);
template <class T>
void adaptive_avg_pool2d_bwd_ref(const Geometry& g, const T* dy, T* dx);

// The fast paths: the same contracts, threads over planes.
void max_pool2d_fwd(const Geometry& g, const float* x, float* y, int64_t* idx, Isa isa, int nthreads);
void max_pool2d_bwd(const Geometry& g, const float* dy, const int64_t* idx, float* dx, int nthreads);
void avg_pool2d_fwd(const Geometry& g, bool count_include_pad, const float* x, float* y, int nthreads);
void avg_pool2d_bwd(const Geometry& g, bool count_include_pad, const float* dy, float* dx, int nthreads);
void adaptive_avg_pool2d_fwd(const Geometry& g, const float* x, float* y, int nthreads);
void adaptive_avg_pool2d_bwd(const Geometry& g, const float* dy, float* dx, int nthreads);

// The per-ISA part ("pool2d" in the registry): one output row of 2x2, stride-2
// max pooling without padding or dilation, the layer every small CNN has
// (called only when every window lies inside the plane and w < 2^30).
// r0 and r1 are input rows 2i and 2i+1 of a plane of width w; output j takes
// r0[2j], r0[2j+1], r1[2j], r1[2j+1] in that order (first maximum wins, NaN
// wins) and idx[j] (when idx is not null) is its flat index, row0 = 2i * w
// being the flat index of r0[0].
// One set per ISA: pool2d_rows_<isa>.cpp.
struct RowKernels {
  void (*max2x2_row)(const float* r0, const float* r1, int64_t ow, int64_t row0, int64_t w, float* y, int64_t* idx);
};
extern const RowKernels row_kernels_generic;
extern const RowKernels row_kernels_avx2;
extern const RowKernels row_kernels_avx512;

}  // namespace ember::pool2d
