// ReLU forward and backward, and erf, on the GPU.
//
// Strategy: a grid-stride loop over 16-byte vectors (float4 / double2), each
// thread keeping two vectors in flight, plus a scalar tail; a scalar kernel
// when any pointer is not 16-byte aligned. Memory-bound: forward reads n and
// writes n elements, backward reads 2n and writes n. Nothing else moves.
#include "core/cuda_launch.cuh"
#include "ops/eltwise/eltwise_cuda.h"

namespace ember::cuda {
namespace {

template <class T>
__device__ __forceinline__ T relu1(T x) {
  return !(x <= T(0)) ? x : T(0);  // NaN kept; -0.0 becomes +0.0
}
template <class T>
__device__ __forceinline__ T relu_grad1(T g, T y) {
  return !(y <= T(0)) ? g : T(0);  // through a NaN too, as PyTorch's
}

template <class T>
struct Vec;
template <>
struct Vec<float> {
  using type = float4;
  static constexpr int n = 4;
};
template <>
struct Vec<double> {
  using type = double2;
  static constexpr int n = 2;
};

template <class T>
__device__ __forceinline__ typename Vec<T>::type vrelu(typename Vec<T>::type v);
template <>
__device__ __forceinline__ float4 vrelu<float>(float4 v) {
  return make_float4(relu1(v.x), relu1(v.y), relu1(v.z), relu1(v.w));
}
template <>
__device__ __forceinline__ double2 vrelu<double>(double2 v) {
  return make_double2(relu1(v.x), relu1(v.y));
}
template <class T>
__device__ __forceinline__ typename Vec<T>::type vgrad(typename Vec<T>::type g, typename Vec<T>::type y);
template <>
__device__ __forceinline__ float4 vgrad<float>(float4 g, float4 y) {
  return make_float4(relu_grad1(g.x, y.x), relu_grad1(g.y, y.y), relu_grad1(g.z, y.z), relu_grad1(g.w, y.w));
}
template <>
__device__ __forceinline__ double2 vgrad<double>(double2 g, double2 y) {
  return make_double2(relu_grad1(g.x, y.x), relu_grad1(g.y, y.y));
}

template <class T>
__global__ void relu_fwd_vec_kernel(const T* x, T* y, int64_t n) {
  using V = typename Vec<T>::type;
  constexpr int W = Vec<T>::n;
  const int64_t nv = n / W;
  const V* xv = reinterpret_cast<const V*>(x);
  V* yv = reinterpret_cast<V*>(y);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (; i + stride < nv; i += 2 * stride) {
    const V a = xv[i], b = xv[i + stride];
    yv[i] = vrelu<T>(a);
    yv[i + stride] = vrelu<T>(b);
  }
  if (i < nv) yv[i] = vrelu<T>(xv[i]);
  // The tail (fewer than W elements), by the first threads of block 0.
  if (blockIdx.x == 0 && threadIdx.x < n - nv * W) y[nv * W + threadIdx.x] = relu1(x[nv * W + threadIdx.x]);
}

template <class T>
__global__ void relu_bwd_vec_kernel(const T* g, const T* yy, T* dx, int64_t n) {
  using V = typename Vec<T>::type;
  constexpr int W = Vec<T>::n;
  const int64_t nv = n / W;
  const V* gv = reinterpret_cast<const V*>(g);
  const V* yv = reinterpret_cast<const V*>(yy);
  V* dv = reinterpret_cast<V*>(dx);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (; i + stride < nv; i += 2 * stride) {
    const V g0 = gv[i], y0 = yv[i], g1 = gv[i + stride], y1 = yv[i + stride];
    dv[i] = vgrad<T>(g0, y0);
    dv[i + stride] = vgrad<T>(g1, y1);
  }
  if (i < nv) dv[i] = vgrad<T>(gv[i], yv[i]);
  if (blockIdx.x == 0 && threadIdx.x < n - nv * W)
    dx[nv * W + threadIdx.x] = relu_grad1(g[nv * W + threadIdx.x], yy[nv * W + threadIdx.x]);
}

// Unaligned fallbacks: one element per thread per step.
template <class T>
__global__ void relu_fwd_scalar_kernel(const T* x, T* y, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[i] = relu1(x[i]);
}
template <class T>
__global__ void erf_kernel(const T* x, T* y, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[i] = ::erf(x[i]);  // erff for float: the overloads of CUDA's math library
}
template <class T>
__global__ void relu_bwd_scalar_kernel(const T* g, const T* yy, T* dx, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dx[i] = relu_grad1(g[i], yy[i]);
}

constexpr int kThreads = 256;

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// Enough blocks to fill the GPU a few times over; the loops stride over the rest.
unsigned grid_for(int64_t work) {
  const int64_t cap = static_cast<int64_t>(sm_count()) * 8;
  const int64_t want = ceil_div(work, kThreads * 2);
  return static_cast<unsigned>(want < 1 ? 1 : (want < cap ? want : cap));
}

}  // namespace

template <class T>
void relu_fwd(const T* x, T* y, int64_t n, stream_t stream) {
  if (n <= 0) return;
  if (aligned16(x) && aligned16(y)) {
    relu_fwd_vec_kernel<T><<<grid_for(n / Vec<T>::n + 1), kThreads, 0, stream>>>(x, y, n);
    check_launch("relu_fwd_vec_kernel");
  } else {
    relu_fwd_scalar_kernel<T><<<grid_for(n), kThreads, 0, stream>>>(x, y, n);
    check_launch("relu_fwd_scalar_kernel");
  }
}

template <class T>
void relu_bwd(const T* g, const T* y, T* dx, int64_t n, stream_t stream) {
  if (n <= 0) return;
  if (aligned16(g) && aligned16(y) && aligned16(dx)) {
    relu_bwd_vec_kernel<T><<<grid_for(n / Vec<T>::n + 1), kThreads, 0, stream>>>(g, y, dx, n);
    check_launch("relu_bwd_vec_kernel");
  } else {
    relu_bwd_scalar_kernel<T><<<grid_for(n), kThreads, 0, stream>>>(g, y, dx, n);
    check_launch("relu_bwd_scalar_kernel");
  }
}

template <class T>
void erf(const T* x, T* y, int64_t n, stream_t stream) {
  if (n <= 0) return;
  erf_kernel<T><<<grid_for(n), kThreads, 0, stream>>>(x, y, n);
  check_launch("erf_kernel");
}

template void erf<float>(const float*, float*, int64_t, stream_t);
template void erf<double>(const double*, double*, int64_t, stream_t);
template void relu_fwd<float>(const float*, float*, int64_t, stream_t);
template void relu_fwd<double>(const double*, double*, int64_t, stream_t);
template void relu_bwd<float>(const float*, const float*, float*, int64_t, stream_t);
template void relu_bwd<double>(const double*, const double*, double*, int64_t, stream_t);

}  // namespace ember::cuda
