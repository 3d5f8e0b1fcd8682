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

constexpr int kThreads = 256;

unsigned grid_for(int64_t n) {
  const int64_t cap = static_cast<int64_t>(sm_count()) * 32;
  const int64_t want = ceil_div(n, kThreads);
  return static_cast<unsigned>(want < 1 ? 1 : (want < cap ? want : cap));
}

#define EMBER_GRID_STRIDE(i, n)                                                           \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

__global__ void max_pool2d_fwd_kernel(Geometry g, const float* __restrict__ x, float* __restrict__ y,
                                      int64_t* __restrict__ idx) {
  const int64_t total = g.planes * g.oh * g.ow;
  EMBER_GRID_STRIDE(o, total) {
    const int64_t j = o % g.ow, t = o / g.ow, i = t % g.oh, pl = t / g.oh;
    const float* xp = x + pl * g.h * g.w;
    const int64_t h0 = i * g.sh - g.ph, w0 = j * g.sw - g.pw;
    // The first position of the window inside the plane (the reference's starting index).
    const int64_t first_h = h0 < 0 ? h0 + ((-h0 + g.dh - 1) / g.dh) * g.dh : h0;
    const int64_t first_w = w0 < 0 ? w0 + ((-w0 + g.dw - 1) / g.dw) * g.dw : w0;
    float best = -__int_as_float(0x7f800000);
    int64_t best_idx = first_h * g.w + first_w;
    for (int64_t p = 0; p < g.kh; ++p) {
      const int64_t h = h0 + p * g.dh;
      if (h < 0 || h >= g.h) continue;
      for (int64_t q = 0; q < g.kw; ++q) {
        const int64_t w = w0 + q * g.dw;
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
__global__ void max_pool2d_bwd_smem_kernel(Geometry g, const float* __restrict__ dy, const int64_t* __restrict__ idx,
                                           float* __restrict__ dx) {
  extern __shared__ float plane[];
  const int64_t hw = g.h * g.w, ohw = g.oh * g.ow;
  for (int64_t pl = blockIdx.x; pl < g.planes; pl += gridDim.x) {
    for (int64_t e = threadIdx.x; e < hw; e += blockDim.x) plane[e] = 0.0f;
    __syncthreads();
    const float* d = dy + pl * ohw;
    const int64_t* ix = idx + pl * ohw;
    for (int64_t e = threadIdx.x; e < ohw; e += blockDim.x) {
      const int64_t k = ix[e];
      if (k >= 0 && k < hw) atomicAdd(&plane[k], d[e]);
    }
    __syncthreads();
    float* out = dx + pl * hw;
    for (int64_t e = threadIdx.x; e < hw; e += blockDim.x) out[e] = plane[e];
    __syncthreads();  // the plane is reused for the next one
  }
}

__global__ void max_pool2d_bwd_scatter_kernel(Geometry g, const float* __restrict__ dy,
                                              const int64_t* __restrict__ idx, float* dx) {
  const int64_t hw = g.h * g.w, ohw = g.oh * g.ow, total = g.planes * ohw;
  EMBER_GRID_STRIDE(o, total) {
    const int64_t k = idx[o];
    if (k >= 0 && k < hw) atomicAdd(&dx[(o / ohw) * hw + k], dy[o]);
  }
}

struct AvgWindow {
  int64_t h0, h1, w0, w1;
  float divisor;
};

__device__ __forceinline__ AvgWindow avg_window(const Geometry& g, bool count_include_pad, int64_t i, int64_t j) {
  int64_t h0 = i * g.sh - g.ph, w0 = j * g.sw - g.pw;
  int64_t h1 = min(h0 + g.kh, g.h + g.ph), w1 = min(w0 + g.kw, g.w + g.pw);
  const int64_t padded = (h1 - h0) * (w1 - w0);
  h0 = max(h0, int64_t(0));
  w0 = max(w0, int64_t(0));
  h1 = min(h1, g.h);
  w1 = min(w1, g.w);
  const int64_t valid = (h1 - h0) * (w1 - w0);
  return {h0, h1, w0, w1, static_cast<float>(count_include_pad ? padded : valid)};
}

__global__ void avg_pool2d_fwd_kernel(Geometry g, bool count_include_pad, const float* __restrict__ x,
                                      float* __restrict__ y) {
  const int64_t total = g.planes * g.oh * g.ow;
  EMBER_GRID_STRIDE(o, total) {
    const int64_t j = o % g.ow, t = o / g.ow, i = t % g.oh, pl = t / g.oh;
    const float* xp = x + pl * g.h * g.w;
    const AvgWindow win = avg_window(g, count_include_pad, i, j);
    float sum = 0.0f;
    for (int64_t h = win.h0; h < win.h1; ++h)
      for (int64_t w = win.w0; w < win.w1; ++w) sum += xp[h * g.w + w];
    y[o] = sum / win.divisor;
  }
}

// floor(a / b) for b > 0 and any sign of a.
__device__ __forceinline__ int64_t floordiv(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

__global__ void avg_pool2d_bwd_kernel(Geometry g, bool count_include_pad, const float* __restrict__ dy,
                                      float* __restrict__ dx) {
  const int64_t total = g.planes * g.h * g.w;
  EMBER_GRID_STRIDE(e, total) {
    const int64_t w = e % g.w, t = e / g.w, h = t % g.h, pl = t / g.h;
    // Output rows i with i*sh - ph <= h < i*sh - ph + kh, likewise columns.
    const int64_t i0 = max(int64_t(0), floordiv(h + g.ph - g.kh, g.sh) + 1), i1 = min(g.oh - 1, (h + g.ph) / g.sh);
    const int64_t j0 = max(int64_t(0), floordiv(w + g.pw - g.kw, g.sw) + 1), j1 = min(g.ow - 1, (w + g.pw) / g.sw);
    const float* d = dy + pl * g.oh * g.ow;
    float sum = 0.0f;
    for (int64_t i = i0; i <= i1; ++i)
      for (int64_t j = j0; j <= j1; ++j) sum += d[i * g.ow + j] / avg_window(g, count_include_pad, i, j).divisor;
    dx[e] = sum;
  }
}

__device__ __forceinline__ int64_t adaptive_start(int64_t i, int64_t in, int64_t out) { return i * in / out; }
__device__ __forceinline__ int64_t adaptive_end(int64_t i, int64_t in, int64_t out) {
  return ((i + 1) * in + out - 1) / out;
}

__global__ void adaptive_avg_pool2d_fwd_kernel(Geometry g, const float* __restrict__ x, float* __restrict__ y) {
  const int64_t total = g.planes * g.oh * g.ow;
  EMBER_GRID_STRIDE(o, total) {
    const int64_t j = o % g.ow, t = o / g.ow, i = t % g.oh, pl = t / g.oh;
    const float* xp = x + pl * g.h * g.w;
    const int64_t h0 = adaptive_start(i, g.h, g.oh), h1 = adaptive_end(i, g.h, g.oh);
    const int64_t w0 = adaptive_start(j, g.w, g.ow), w1 = adaptive_end(j, g.w, g.ow);
    float sum = 0.0f;
    for (int64_t h = h0; h < h1; ++h)
      for (int64_t w = w0; w < w1; ++w) sum += xp[h * g.w + w];
    y[o] = sum / static_cast<float>((h1 - h0) * (w1 - w0));
  }
}

__global__ void adaptive_avg_pool2d_bwd_kernel(Geometry g, const float* __restrict__ dy, float* __restrict__ dx) {
  const int64_t total = g.planes * g.h * g.w;
  EMBER_GRID_STRIDE(e, total) {
    const int64_t w = e % g.w, t = e / g.w, h = t % g.h, pl = t / g.h;
    // Windows i with start(i) <= h < end(i): i in [floor(h*OH/H), ceil((h+1)*OH/H) - 1], checked.
    const int64_t i0 = h * g.oh / g.h, i1 = min(g.oh - 1, ((h + 1) * g.oh + g.h - 1) / g.h - 1);
    const int64_t j0 = w * g.ow / g.w, j1 = min(g.ow - 1, ((w + 1) * g.ow + g.w - 1) / g.w - 1);
    const float* d = dy + pl * g.oh * g.ow;
    float sum = 0.0f;
    for (int64_t i = i0; i <= i1; ++i) {
      const int64_t hs = adaptive_start(i, g.h, g.oh), he = adaptive_end(i, g.h, g.oh);
      if (h < hs || h >= he) continue;
      for (int64_t j = j0; j <= j1; ++j) {
        const int64_t ws = adaptive_start(j, g.w, g.ow), we = adaptive_end(j, g.w, g.ow);
        if (w < ws || w >= we) continue;
        sum += d[i * g.ow + j] / static_cast<float>((he - hs) * (we - ws));
      }
    }
    dx[e] = sum;
  }
}

constexpr int64_t kSmemPlaneMax = 12288;  // floats: 48 KiB, the default shared-memory limit

}  // namespace

void max_pool2d_fwd(const Geometry& g, const float* x, float* y, int64_t* idx, stream_t stream) {
  const int64_t n = g.planes * g.oh * g.ow;
  if (n == 0) return;
  max_pool2d_fwd_kernel<<<grid_for(n), kThreads, 0, stream>>>(g, x, y, idx);
  check_launch("max_pool2d_fwd_kernel");
}

void max_pool2d_bwd(const Geometry& g, const float* dy, const int64_t* idx, float* dx, stream_t stream) {
  const int64_t hw = g.h * g.w;
  if (g.planes * hw == 0) return;
  if (hw <= kSmemPlaneMax) {
    const int64_t blocks = g.planes < 65535LL * 32 ? g.planes : 65535LL * 32;
    max_pool2d_bwd_smem_kernel<<<static_cast<unsigned>(blocks), kThreads, static_cast<size_t>(hw) * sizeof(float),
                                 stream>>>(g, dy, idx, dx);
    check_launch("max_pool2d_bwd_smem_kernel");
    return;
  }
  check_cuda(cudaMemsetAsync(dx, 0, static_cast<size_t>(g.planes * hw) * sizeof(float), stream),
             "max_pool2d_bwd: cudaMemsetAsync");
  const int64_t n = g.planes * g.oh * g.ow;
  if (n == 0) return;
  max_pool2d_bwd_scatter_kernel<<<grid_for(n), kThreads, 0, stream>>>(g, dy, idx, dx);
  check_launch("max_pool2d_bwd_scatter_kernel");
}

void avg_pool2d_fwd(const Geometry& g, bool count_include_pad, const float* x, float* y, stream_t stream) {
  const int64_t n = g.planes * g.oh * g.ow;
  if (n == 0) return;
  avg_pool2d_fwd_kernel<<<grid_for(n), kThreads, 0, stream>>>(g, count_include_pad, x, y);
  check_launch("avg_pool2d_fwd_kernel");
}

void avg_pool2d_bwd(const Geometry& g, bool count_include_pad, const float* dy, float* dx, stream_t stream) {
  const int64_t n = g.planes * g.h * g.w;
  if (n == 0) return;
  avg_pool2d_bwd_kernel<<<grid_for(n), kThreads, 0, stream>>>(g, count_include_pad, dy, dx);
  check_launch("avg_pool2d_bwd_kernel");
}

void adaptive_avg_pool2d_fwd(const Geometry& g, const float* x, float* y, stream_t stream) {
  const int64_t n = g.planes * g.oh * g.ow;
  if (n == 0) return;
  adaptive_avg_pool2d_fwd_kernel<<<grid_for(n), kThreads, 0, stream>>>(g, x, y);
  check_launch("adaptive_avg_pool2d_fwd_kernel");
}

void adaptive_avg_pool2d_bwd(const Geometry& g, const float* dy, float* dx, stream_t stream) {
  const int64_t n = g.planes * g.h * g.w;
  if (n == 0) return;
  adaptive_avg_pool2d_bwd_kernel<<<grid_for(n), kThreads, 0, stream>>>(g, dy, dx);
  check_launch("adaptive_avg_pool2d_bwd_kernel");
}

}  // namespace ember::cuda
