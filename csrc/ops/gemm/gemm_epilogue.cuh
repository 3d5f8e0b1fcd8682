// The GEMM epilogue shared by the tensor-core kernels (included only by .cu files):
// C(m, n..n+1) = act(alpha * acc + beta * C + bias), predicated on M and N, with one
// 8-byte (float) or 4-byte (bf16) store where C's alignment allows.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

namespace ember::cuda {

struct Epilogue {
  void* c;
  int64_t ldc, bsc, M, N;
  float alpha, beta;
  const float* bias;
  bool relu, c_bf16, vec2;  // vec2: C rows and batch strides keep pairs aligned

  __device__ __forceinline__ float finish(float acc, float old, int64_t n) const {
    float x = alpha * acc;
    if (beta != 0.0f) x = fmaf(beta, old, x);
    if (bias) x += bias[n];
    if (relu && x < 0.0f) x = 0.0f;  // NaN passes through
    return x;
  }

  // Two adjacent columns n, n + 1 of row m (n even) of batch entry z.
  __device__ __forceinline__ void store2(int64_t z, int64_t m, int64_t n, float v0, float v1) const {
    if (m >= M || n >= N) return;
    const int64_t off = z * bsc + m * ldc + n;
    if (c_bf16) {
      __nv_bfloat16* p = static_cast<__nv_bfloat16*>(c) + off;
      if (vec2 && n + 1 < N) {
        float o0 = 0.0f, o1 = 0.0f;
        if (beta != 0.0f) {
          const __nv_bfloat162 old = *reinterpret_cast<const __nv_bfloat162*>(p);
          o0 = __low2float(old);
          o1 = __high2float(old);
        }
        *reinterpret_cast<__nv_bfloat162*>(p) = __floats2bfloat162_rn(finish(v0, o0, n), finish(v1, o1, n + 1));
        return;
      }
      p[0] = __float2bfloat16_rn(finish(v0, beta != 0.0f ? __bfloat162float(p[0]) : 0.0f, n));
      if (n + 1 < N) p[1] = __float2bfloat16_rn(finish(v1, beta != 0.0f ? __bfloat162float(p[1]) : 0.0f, n + 1));
    } else {
      float* p = static_cast<float*>(c) + off;
      if (vec2 && n + 1 < N) {
        float2 old = make_float2(0.0f, 0.0f);
        if (beta != 0.0f) old = *reinterpret_cast<const float2*>(p);
        *reinterpret_cast<float2*>(p) = make_float2(finish(v0, old.x, n), finish(v1, old.y, n + 1));
        return;
      }
      p[0] = finish(v0, beta != 0.0f ? p[0] : 0.0f, n);
      if (n + 1 < N) p[1] = finish(v1, beta != 0.0f ? p[1] : 0.0f, n + 1);
    }
  }
};

// Tile order with better L2 reuse: consecutive blocks walk down a band of GROUP tile rows
// before moving to the next column, so a wave of blocks shares A panels and B panels.
template <int GROUP>
__device__ __forceinline__ void swizzle_tile(int64_t pid, int64_t tiles_m, int64_t tiles_n, int64_t& tm,
                                             int64_t& tn) {
  const int64_t per_group = static_cast<int64_t>(GROUP) * tiles_n;
  const int64_t group = pid / per_group;
  const int64_t first_m = group * GROUP;
  const int64_t rows = tiles_m - first_m < GROUP ? tiles_m - first_m : GROUP;
  const int64_t in_group = pid % per_group;
  tm = first_m + in_group % rows;
  tn = in_group / rows;
}

}  // namespace ember::cuda
