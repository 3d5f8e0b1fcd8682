// The fp32 CUDA-core GEMM machinery, shared by the dense GEMM and the
// implicit-GEMM convolutions (included only by .cu files).
//
// Strategy (block, warp and register tiling; siboehm/SGEMM_CUDA style):
// a 256-thread block computes a 128 x 128 tile of C over K in steps of 8.
// Each step's 128 x 8 slice of A and 8 x 128 slice of B are fetched from
// global memory into registers (4 elements per thread each, one float4 where
// the layout and alignment allow) while the previous step is computed, then
// stored into the other half of a double-buffered shared memory (A stored
// k-major, transposed on the way when A is K-contiguous, so both operands
// are read as float4 rows). The 8 warps tile the block 2 x 4 (64 x 32 per
// warp); a lane's 8 x 8 outputs are 2 x 2 sub-blocks of 4 x 4, 32 rows and
// 16 columns apart, so a warp reads each shared-memory row in one
// conflict-free 128-byte access. Per k: 4 LDS.128, 64 FMAs per thread.
//
// What moves: each block reads its 128 x K panel of A and K x 128 panel of B
// once (L2 serves the re-reads by other blocks) and writes its tile of C once
// (reading C only when beta != 0). Nothing is materialised besides C.
//
// A problem is a policy P (see DenseGemm below and conv2d_cuda.cu) that
// says how to fetch 4 elements of A or B into registers and how to store a
// row of 4 results; blockIdx.z selects a batch entry / group / K split.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

namespace ember::cuda::simt {

constexpr int BM = 128, BN = 128, BK = 8, THREADS = 256;
constexpr int PAD = 4;  // keeps float4 alignment and spreads transposed stores over banks

// A policy provides:
//   static constexpr bool A_K_FAST, B_N_FAST;  // which index a thread's 4 fetched elements run along
//   int64_t M, N;
//   __device__ void k_range(int z, int64_t& k0, int64_t& k1) const;   // the K range of blockIdx.z
//   __device__ void fetch_a(int z, int64_t m, int64_t k, float (&r)[4]) const;
//        A_K_FAST: r[i] = A(m, k + i); else r[i] = A(m + i, k). Out of range (m >= M, k >= k1): 0.
//   __device__ void fetch_b(int z, int64_t k, int64_t n, float (&r)[4]) const;
//        B_N_FAST: r[i] = B(k, n + i); else r[i] = B(k + i, n). Out of range: 0.
//   __device__ void store(int z, int64_t m, int64_t n, const float (&v)[4]) const;
//        C(m, n + i) from v[i] for the columns < N (m < M is checked by the kernel).

template <class P>
__global__ void __launch_bounds__(THREADS) simt_gemm_kernel(const P p) {
  __shared__ __align__(16) float As[2][BK][BM + PAD];
  __shared__ __align__(16) float Bs[2][BK][BN + PAD];
  const int tid = threadIdx.x;
  const int z = blockIdx.z;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * BM, n0 = static_cast<int64_t>(blockIdx.x) * BN;
  int64_t kb, ke;
  p.k_range(z, kb, ke);

  // This thread's fetch coordinates within a tile.
  constexpr int KV = BK / 4;  // float4 groups along K in a tile row
  const int a_row = P::A_K_FAST ? tid / KV : (tid % (BM / 4)) * 4;  // m offset
  const int a_k = P::A_K_FAST ? (tid % KV) * 4 : tid / (BM / 4);     // k offset
  const int b_col = P::B_N_FAST ? (tid % (BN / 4)) * 4 : tid / KV;    // n offset
  const int b_k = P::B_N_FAST ? tid / (BN / 4) : (tid % KV) * 4;      // k offset

  float ra[4], rb[4];
  auto fetch = [&](int64_t k0) {
    p.fetch_a(z, m0 + a_row, k0 + a_k, ra);
    p.fetch_b(z, k0 + b_k, n0 + b_col, rb);
  };
  auto stash = [&](int buf) {
    if (P::A_K_FAST) {
#pragma unroll
      for (int i = 0; i < 4; ++i) As[buf][a_k + i][a_row] = ra[i];
    } else {
      *reinterpret_cast<float4*>(&As[buf][a_k][a_row]) = make_float4(ra[0], ra[1], ra[2], ra[3]);
    }
    if (P::B_N_FAST) {
      *reinterpret_cast<float4*>(&Bs[buf][b_k][b_col]) = make_float4(rb[0], rb[1], rb[2], rb[3]);
    } else {
#pragma unroll
      for (int i = 0; i < 4; ++i) Bs[buf][b_k + i][b_col] = rb[i];
    }
  };

  const int warp = tid / 32, lane = tid % 32;
  const int wm = warp / 4, wn = warp % 4;  // 2 x 4 warps of 64 x 32
  const int lm = lane % 8, ln = lane / 8;  // 8 x 4 lanes
  const int row_base = wm * 64 + lm * 4;   // rows row_base + {0..3} and + 32 + {0..3}
  const int col_base = wn * 32 + ln * 4;   // cols col_base + {0..3} and + 16 + {0..3}

  float acc[8][8];
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;

  const int64_t ntiles = ke > kb ? (ke - kb + BK - 1) / BK : 0;
  if (ntiles > 0) {
    fetch(kb);
    stash(0);
    __syncthreads();
  }
  for (int64_t t = 0; t < ntiles; ++t) {
    const int buf = static_cast<int>(t & 1);
    if (t + 1 < ntiles) fetch(kb + (t + 1) * BK);
#pragma unroll
    for (int k = 0; k < BK; ++k) {
      const float4 a0 = *reinterpret_cast<const float4*>(&As[buf][k][row_base]);
      const float4 a1 = *reinterpret_cast<const float4*>(&As[buf][k][row_base + 32]);
      const float4 b0 = *reinterpret_cast<const float4*>(&Bs[buf][k][col_base]);
      const float4 b1 = *reinterpret_cast<const float4*>(&Bs[buf][k][col_base + 16]);
      const float a[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
      const float b[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    if (t + 1 < ntiles) stash(buf ^ 1);
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int64_t m = m0 + row_base + (i < 4 ? i : 32 + i - 4);
    if (m >= p.M) continue;
    const float v0[4] = {acc[i][0], acc[i][1], acc[i][2], acc[i][3]};
    const float v1[4] = {acc[i][4], acc[i][5], acc[i][6], acc[i][7]};
    if (n0 + col_base < p.N) p.store(z, m, n0 + col_base, v0);
    if (n0 + col_base + 16 < p.N) p.store(z, m, n0 + col_base + 16, v1);
  }
}

// ----------------------------------------------------------------------------- dense operands

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }

// Four elements from p[0], p[s], p[2s], p[3s] (s = 1 when along the contiguous index), the
// first `valid` of them real and the rest 0. VEC: one 16-byte (float) or 8-byte (bf16) load
// when all four are valid and s == 1 (the caller guarantees alignment).
template <class T, bool VEC>
__device__ __forceinline__ void load4(const T* p, int64_t s, int64_t valid, float (&r)[4]) {
  if (VEC && valid >= 4) {
    if constexpr (sizeof(T) == 4) {
      const float4 v = *reinterpret_cast<const float4*>(p);
      r[0] = v.x, r[1] = v.y, r[2] = v.z, r[3] = v.w;
    } else {
      const uint2 v = *reinterpret_cast<const uint2*>(p);
      const __nv_bfloat162 lo = *reinterpret_cast<const __nv_bfloat162*>(&v.x);
      const __nv_bfloat162 hi = *reinterpret_cast<const __nv_bfloat162*>(&v.y);
      r[0] = __low2float(lo), r[1] = __high2float(lo), r[2] = __low2float(hi), r[3] = __high2float(hi);
    }
    return;
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) r[i] = i < valid ? to_f(p[i * s]) : 0.0f;
}

// op(A) (M x K) at a[m * lda + k] (A_K_FAST) or a[m + k * lda]; op(B) (K x N) at b[k * ldb + n]
// (B_N_FAST) or b[k + n * ldb]; batch entry z at + z * batch stride. C row-major (ldc).
template <class T, class OutT, bool AK, bool BN_, bool VEC_A, bool VEC_B>
struct DenseGemm {
  static constexpr bool A_K_FAST = AK, B_N_FAST = BN_;
  int64_t M, N, K;
  const T* a;
  int64_t lda, bsa;
  const T* b;
  int64_t ldb, bsb;
  OutT* c;
  int64_t ldc, bsc;
  float alpha, beta;
  const float* bias;
  bool relu, vec_c;

  __device__ __forceinline__ void k_range(int, int64_t& k0, int64_t& k1) const { k0 = 0, k1 = K; }

  __device__ __forceinline__ void fetch_a(int z, int64_t m, int64_t k, float (&r)[4]) const {
    const T* base = a + z * bsa;
    if (AK) {
      if (m >= M || k >= K) return load4<T, false>(base, 1, 0, r);
      load4<T, VEC_A>(base + m * lda + k, 1, K - k, r);
    } else {
      if (m >= M || k >= K) return load4<T, false>(base, 1, 0, r);
      load4<T, VEC_A>(base + m + k * lda, 1, M - m, r);
    }
  }
  __device__ __forceinline__ void fetch_b(int z, int64_t k, int64_t n, float (&r)[4]) const {
    const T* base = b + z * bsb;
    if (BN_) {
      if (n >= N || k >= K) return load4<T, false>(base, 1, 0, r);
      load4<T, VEC_B>(base + k * ldb + n, 1, N - n, r);
    } else {
      if (n >= N || k >= K) return load4<T, false>(base, 1, 0, r);
      load4<T, VEC_B>(base + k + n * ldb, 1, K - k, r);
    }
  }
  __device__ __forceinline__ float finish(float acc, const OutT* old, int64_t n) const {
    float x = alpha * acc;
    if (beta != 0.0f) x = fmaf(beta, to_f(*old), x);
    if (bias) x += bias[n];
    if (relu && x < 0.0f) x = 0.0f;  // NaN passes through
    return x;
  }
  __device__ __forceinline__ void store(int z, int64_t m, int64_t n, const float (&v)[4]) const {
    OutT* row = c + z * bsc + m * ldc;
    if constexpr (sizeof(OutT) == 4) {
      if (vec_c && n + 3 < N) {
        float4 old = make_float4(0.f, 0.f, 0.f, 0.f);
        if (beta != 0.0f) old = *reinterpret_cast<const float4*>(row + n);
        const float o[4] = {old.x, old.y, old.z, old.w};
        float4 out;
        out.x = finish(v[0], &o[0], n);
        out.y = finish(v[1], &o[1], n + 1);
        out.z = finish(v[2], &o[2], n + 2);
        out.w = finish(v[3], &o[3], n + 3);
        *reinterpret_cast<float4*>(row + n) = out;
        return;
      }
    }
#pragma unroll
    for (int i = 0; i < 4; ++i)
      if (n + i < N) {
        const float x = finish(v[i], row + n + i, n + i);
        if constexpr (sizeof(OutT) == 4)
          row[n + i] = x;
        else
          row[n + i] = __float2bfloat16_rn(x);
      }
  }
};

}  // namespace ember::cuda::simt
