// 2-D pooling forward and backward on the GPU.
//
// Forwards: one thread per output element (consecutive threads take
// consecutive outputs of a row, so the writes coalesce and the window reads
// of neighbours overlap in L1), the window walked exactly as pool2d_ref.cpp
// walks it (same tie, NaN and padding rules). Bytes: the input once (plus
// window overlap, served from cache) and the output (and indices) once.
//
// Max backward: planes of up to 12288 elements are handled one block per
// plane in shared memory: zero the plane, add each dy at its index with a
// shared-memory atomic, write the plane out once (dy and indices read once,
// dx written once). Larger planes: dx is zeroed, then dy scattered with
// global atomics.
//
// Average backwards: a gather, one thread per input element summing the
// outputs whose windows cover it, in a fixed order: deterministic, dx written
// once, no atomics.
#include "core/cuda_launch.cuh"
#include "ops/pool2d/pool2d_cuda.h"

namespace ember::cuda {
namespace {

using pool2d::Geometry;

// The geometry in the index type the kernels compute with: int32 whenever every flat index
// fits (integer division is several times cheaper than in 64 bits), else int64.
template <class I>
struct Geo {
  I planes, h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw;
};
template <class I>
Geo<I> geo(const Geometry& g) {
  return {static_cast<I>(g.planes), static_cast<I>(g.h), static_cast<I>(g.w), static_cast<I>(g.oh),
          static_cast<I>(g.ow), static_cast<I>(g.kh), static_cast<I>(g.kw), static_cast<I>(g.sh),
          static_cast<I>(g.sw), static_cast<I>(g.ph), static_cast<I>(g.pw), static_cast<I>(g.dh),
          static_cast<I>(g.dw)};
}
bool fits32(const Geometry& g) {
  const int64_t lim = int64_t(1) << 30;
  return g.planes * g.h * g.w < lim && g.planes * g.oh * g.ow < lim && g.oh * g.sh + g.kh * g.dh + g.ph < lim &&
         g.ow * g.sw + g.kw * g.dw + g.pw < lim && g.h + 2 * g.ph < lim && g.w + 2 * g.pw < lim;
}

constexpr int kThreads = 256;

unsigned grid_for(int64_t n) {
  const int64_t cap = static_cast<int64_t>(sm_count()) * 32;
  const int64_t want = ceil_div(n, kThreads);
  return static_cast<unsigned>(want < 1 ? 1 : (want < cap ? want : cap));
}

#define EMBER_GRID_STRIDE(i, n)                                                   \
  for (I i = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<I>(gridDim.x) * blockDim.x)

template <class I>
__global__ void max_pool2d_fwd_kernel(Geo<I> g, const float* __restrict__ x, float* __restrict__ y,
                                      int64_t* __restrict__ idx) {
  const I total = g.planes * g.oh * g.ow;
  EMBER_GRID_STRIDE(o, total) {
    const I j = o % g.ow, t = o / g.ow, i = t % g.oh, pl = t / g.oh;
    const float* xp = x + pl * g.h * g.w;
    const I h0 = i * g.sh - g.ph, w0 = j * g.sw - g.pw;
    // The first position of the window inside the plane (the reference's starting index).
    const I first_h = h0 < 0 ? h0 + ((-h0 + g.dh - 1) / g.dh) * g.dh : h0;
    const I first_w = w0 < 0 ? w0 + ((-w0 + g.dw - 1) / g.dw) * g.dw : w0;
    float best = -__int_as_float(0x7f800000);
    I best_idx = first_h * g.w + first_w;
    for (I p = 0; p < g.kh; ++p) {
      const I h = h0 + p * g.dh;
      if (h < 0 || h >= g.h) continue;
      for (I q = 0; q < g.kw; ++q) {
        const I w = w0 + q * g.dw;
        if (w < 0 || w >= g.w) continue;
        const float v = xp[h * g.w + w];
        if (v > best || v != v) {  // first maximum wins; a NaN wins (the last one)
          best = v;
          best_idx = h * g.w + w;
        }
      }
    }
    y[o] = best;
    if (idx) idx[o] = best_idx;
  }
}

// One block per plane (grid-stride over planes), the plane accumulated in shared memory.
template <class I>
__global__ void max_pool2d_bwd_smem_kernel(Geo<I> g, const float* __restrict__ dy, const int64_t* __restrict__ idx,
                                           float* __restrict__ dx) {
  extern __shared__ float plane[];
  const I hw = g.h * g.w, ohw = g.oh * g.ow;
  for (I pl = blockIdx.x; pl < g.planes; pl += gridDim.x) {
    for (I e = threadIdx.x; e < hw; e += blockDim.x) plane[e] = 0.0f;
    __syncthreads();
    const float* d = dy + pl * ohw;
    const int64_t* ix = idx + pl * ohw;
    for (I e = threadIdx.x; e < ohw; e += blockDim.x) {
      const int64_t k = ix[e];
      if (k >= 0 && k < hw) atomicAdd(&plane[k], d[e]);
    }
    __syncthreads();
    float* out = dx + pl * hw;
    for (I e = threadIdx.x; e < hw; e += blockDim.x) out[e] = plane[e];
    __syncthreads();  // the plane is reused for the next one
  }
}

template <class I>
__global__ void max_pool2d_bwd_scatter_kernel(Geo<I> g, const float* __restrict__ dy,
                                              const int64_t* __restrict__ idx, float* dx) {
  const I hw = g.h * g.w, ohw = g.oh * g.ow, total = g.planes * ohw;
  EMBER_GRID_STRIDE(o, total) {
    const int64_t k = idx[o];
    if (k >= 0 && k < hw) atomicAdd(&dx[(o / ohw) * hw + k], dy[o]);
  }
}

template <class I>
struct AvgWindow {
  I h0, h1, w0, w1;
  float divisor;
};

template <class I>
__device__ __forceinline__ AvgWindow<I> avg_window(const Geo<I>& g, bool count_include_pad, I i, I j) {
  I h0 = i * g.sh - g.ph, w0 = j * g.sw - g.pw;
  I h1 = min(h0 + g.kh, g.h + g.ph), w1 = min(w0 + g.kw, g.w + g.pw);
  const I padded = (h1 - h0) * (w1 - w0);
  h0 = max(h0, I(0));
  w0 = max(w0, I(0));
  h1 = min(h1, g.h);
  w1 = min(w1, g.w);
  const I valid = (h1 - h0) * (w1 - w0);
  return {h0, h1, w0, w1, static_cast<float>(count_include_pad ? padded : valid)};
}

template <class I>
__global__ void avg_pool2d_fwd_kernel(Geo<I> g, bool count_include_pad, const float* __restrict__ x,
                                      float* __restrict__ y) {
  const I total = g.planes * g.oh * g.ow;
  EMBER_GRID_STRIDE(o, total) {
    const I j = o % g.ow, t = o / g.ow, i = t % g.oh, pl = t / g.oh;
    const float* xp = x + pl * g.h * g.w;
    const AvgWindow win = avg_window(g, count_include_pad, i, j);
    float sum = 0.0f;
    for (I h = win.h0; h < win.h1; ++h)
      for (I w = win.w0; w < win.w1; ++w) sum += xp[h * g.w + w];
    y[o] = sum / win.divisor;
  }
}

// floor(a / b) for b > 0 and any sign of a.
template <class I>
__device__ __forceinline__ I floordiv(I a, I b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

template <class I>
__global__ void avg_pool2d_bwd_kernel(Geo<I> g, bool count_include_pad, const float* __restrict__ dy,
                                      float* __restrict__ dx) {
  const I total = g.planes * g.h * g.w;
  EMBER_GRID_STRIDE(e, total) {
    const I w = e % g.w, t = e / g.w, h = t % g.h, pl = t / g.h;
    // Output rows i with i*sh - ph <= h < i*sh - ph + kh, likewise columns.
    const I i0 = max(I(0), floordiv<I>(h + g.ph - g.kh, g.sh) + 1), i1 = min(g.oh - 1, (h + g.ph) / g.sh);
    const I j0 = max(I(0), floordiv<I>(w + g.pw - g.kw, g.sw) + 1), j1 = min(g.ow - 1, (w + g.pw) / g.sw);
    const float* d = dy + pl * g.oh * g.ow;
    float sum = 0.0f;
    for (I i = i0; i <= i1; ++i)
      for (I j = j0; j <= j1; ++j) sum += d[i * g.ow + j] / avg_window(g, count_include_pad, i, j).divisor;
    dx[e] = sum;
  }
}

template <class I>
__device__ __forceinline__ I adaptive_start(I i, I in, I out) { return i * in / out; }
template <class I>
__device__ __forceinline__ I adaptive_end(I i, I in, I out) {
  return ((i + 1) * in + out - 1) / out;
}

template <class I>
__global__ void adaptive_avg_pool2d_fwd_kernel(Geo<I> g, const float* __restrict__ x, float* __restrict__ y) {
  const I total = g.planes * g.oh * g.ow;
  EMBER_GRID_STRIDE(o, total) {
    const I j = o % g.ow, t = o / g.ow, i = t % g.oh, pl = t / g.oh;
    const float* xp = x + pl * g.h * g.w;
    const I h0 = adaptive_start(i, g.h, g.oh), h1 = adaptive_end(i, g.h, g.oh);
    const I w0 = adaptive_start(j, g.w, g.ow), w1 = adaptive_end(j, g.w, g.ow);
    float sum = 0.0f;
    for (I h = h0; h < h1; ++h)
      for (I w = w0; w < w1; ++w) sum += xp[h * g.w + w];
    y[o] = sum / static_cast<float>((h1 - h0) * (w1 - w0));
  }
}

template <class I>
__global__ void adaptive_avg_pool2d_bwd_kernel(Geo<I> g, const float* __restrict__ dy, float* __restrict__ dx) {
  const I total = g.planes * g.h * g.w;
  EMBER_GRID_STRIDE(e, total) {
    const I w = e % g.w, t = e / g.w, h = t % g.h, pl = t / g.h;
    // Windows i with start(i) <= h < end(i): i in [floor(h*OH/H), ceil((h+1)*OH/H) - 1], checked.
    const I i0 = h * g.oh / g.h, i1 = min(g.oh - 1, ((h + 1) * g.oh + g.h - 1) / g.h - 1);
    const I j0 = w * g.ow / g.w, j1 = min(g.ow - 1, ((w + 1) * g.ow + g.w - 1) / g.w - 1);
    const float* d = dy + pl * g.oh * g.ow;
    float sum = 0.0f;
    for (I i = i0; i <= i1; ++i) {
      const I hs = adaptive_start(i, g.h, g.oh), he = adaptive_end(i, g.h, g.oh);
      if (h < hs || h >= he) continue;
      for (I j = j0; j <= j1; ++j) {
        const I ws = adaptive_start(j, g.w, g.ow), we = adaptive_end(j, g.w, g.ow);
        if (w < ws || w >= we) continue;
        sum += d[i * g.ow + j] / static_cast<float>((he - hs) * (we - ws));
      }
    }
    dx[e] = sum;
  }
}

constexpr int64_t kSmemPlaneMax = 12288;  // floats: 48 KiB, the default shared-memory limit

}  // namespace

// Runs kernel<int> or kernel<int64_t> on geo<I>(g), by size.
#define EMBER_POOL_LAUNCH(kernel, grid, block, smem, stream, g, ...)                       \
  do {                                                                                     \
    if (fits32(g))                                                                         \
      kernel<int><<<(grid), (block), (smem), (stream)>>>(geo<int>(g), __VA_ARGS__);        \
    else                                                                                   \
      kernel<int64_t><<<(grid), (block), (smem), (stream)>>>(geo<int64_t>(g), __VA_ARGS__); \
    check_launch(#kernel);                                                                 \
  } while (0)

void max_pool2d_fwd(const Geometry& g, const float* x, float* y, int64_t* idx, stream_t stream) {
  const int64_t n = g.planes * g.oh * g.ow;
  if (n == 0) return;
  EMBER_POOL_LAUNCH(max_pool2d_fwd_kernel, grid_for(n), kThreads, 0, stream, g, x, y, idx);
}

void max_pool2d_bwd(const Geometry& g, const float* dy, const int64_t* idx, float* dx, stream_t stream) {
  const int64_t hw = g.h * g.w;
  if (g.planes * hw == 0) return;
  if (hw <= kSmemPlaneMax) {
    const int64_t blocks = g.planes < 65535LL * 32 ? g.planes : 65535LL * 32;
    EMBER_POOL_LAUNCH(max_pool2d_bwd_smem_kernel, static_cast<unsigned>(blocks), kThreads,
                      static_cast<size_t>(hw) * sizeof(float), stream, g, dy, idx, dx);
    return;
  }
  check_cuda(cudaMemsetAsync(dx, 0, static_cast<size_t>(g.planes * hw) * sizeof(float), stream),
             "max_pool2d_bwd: cudaMemsetAsync");
  const int64_t n = g.planes * g.oh * g.ow;
  if (n == 0) return;
  EMBER_POOL_LAUNCH(max_pool2d_bwd_scatter_kernel, grid_for(n), kThreads, 0, stream, g, dy, idx, dx);
}

void avg_pool2d_fwd(const Geometry& g, bool count_include_pad, const float* x, float* y, stream_t stream) {
  const int64_t n = g.planes * g.oh * g.ow;
  if (n == 0) return;
  EMBER_POOL_LAUNCH(avg_pool2d_fwd_kernel, grid_for(n), kThreads, 0, stream, g, count_include_pad, x, y);
}

void avg_pool2d_bwd(const Geometry& g, bool count_include_pad, const float* dy, float* dx, stream_t stream) {
  const int64_t n = g.planes * g.h * g.w;
  if (n == 0) return;
  EMBER_POOL_LAUNCH(avg_pool2d_bwd_kernel, grid_for(n), kThreads, 0, stream, g, count_include_pad, dy, dx);
}

void adaptive_avg_pool2d_fwd(const Geometry& g, const float* x, float* y, stream_t stream) {
  const int64_t n = g.planes * g.oh * g.ow;
  if (n == 0) return;
  EMBER_POOL_LAUNCH(adaptive_avg_pool2d_fwd_kernel, grid_for(n), kThreads, 0, stream, g, x, y);
}

void adaptive_avg_pool2d_bwd(const Geometry& g, const float* dy, float* dx, stream_t stream) {
  const int64_t n = g.planes * g.h * g.w;
  if (n == 0) return;
  EMBER_POOL_LAUNCH(adaptive_avg_pool2d_bwd_kernel, grid_for(n), kThreads, 0, stream, g, dy, dx);
}

}  // namespace ember::cuda
