// AVX-512 GEMM micro-kernel gemm_ukernel_avx512_12x32.
//
// Strategy: a 12 x 32 tile of C lives in 24 zmm accumulators for the whole k
// loop. Each k step loads two zmm of B (one row of the sliver), broadcasts 12
// values of A, and issues 24 FMAs: 14 loads per 24 FMAs keeps Zen 4's single
// 512-bit FMA per cycle (two 256-bit halves) busy from L1/L2. This is BLIS's
// Zen 4 32x12 kernel seen from row-major C: the broadcast operand (A, 12 x KC,
// ~18 KB) stays in L1 while the B panel streams from L2.
// Edges: n < 32 is masked (loads of in-place B and all C accesses); m < 12 is
// a separate instantiation that neither reads nor computes the missing rows.
// Nothing is materialised: the epilogue (alpha, beta, bias, ReLU) is applied
// to the registers on the way out, so C is written exactly once.
//
// Intrinsics live only in this file, inside an anonymous namespace, so no
// AVX-512 code can be merged into a function another CPU might call.
#include <immintrin.h>

#include <utility>

#include "ops/gemm/gemm.h"
#include "ops/gemm/gemm_ukernel.h"

namespace ember::gemm {
namespace {

constexpr int kMR = 12;
constexpr int kNV = 2;  // zmm vectors per row of the tile
constexpr int kNR = 16 * kNV;

inline __mmask16 tail_mask(int n, int v) {
  int left = n - 16 * v;
  if (left >= 16) return static_cast<__mmask16>(0xFFFF);
  if (left <= 0) return 0;
  return static_cast<__mmask16>((1u << left) - 1u);
}

template <int M, bool PACKED>
void ukernel(int64_t k, const float* a, int64_t rs_a, int64_t cs_a, const float* b, int64_t rs_b,
             float* c, int64_t ldc, int m, int n, const Epilogue& ep) {
  const int rows = PACKED ? m : M;
  __mmask16 mask[kNV];
  for (int v = 0; v < kNV; ++v) mask[v] = tail_mask(n, v);
  for (int i = 0; i < M; ++i)
    if (i < rows) _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);

  __m512 acc[M][kNV];
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < kNV; ++v) acc[i][v] = _mm512_setzero_ps();

  if (PACKED) {
    // Packed slivers: A at a[p * MR + i], B zero-padded to NR columns.
#pragma GCC unroll 2
    for (int64_t p = 0; p < k; ++p) {
      __m512 bv[kNV];
#pragma GCC unroll 4
      for (int v = 0; v < kNV; ++v) bv[v] = _mm512_loadu_ps(b + 16 * v);
#pragma GCC unroll 16
      for (int i = 0; i < M; ++i) {
        __m512 av = _mm512_set1_ps(a[i]);
#pragma GCC unroll 4
        for (int v = 0; v < kNV; ++v) acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
      }
      a += kMR;
      b += rs_b;
    }
  } else {
    for (int64_t p = 0; p < k; ++p) {
      __m512 bv[kNV];
#pragma GCC unroll 4
      for (int v = 0; v < kNV; ++v) bv[v] = _mm512_maskz_loadu_ps(mask[v], b + 16 * v);
#pragma GCC unroll 16
      for (int i = 0; i < M; ++i) {
        __m512 av = _mm512_set1_ps(a[i * rs_a]);
#pragma GCC unroll 4
        for (int v = 0; v < kNV; ++v) acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
      }
      a += cs_a;
      b += rs_b;
    }
  }

  const __m512 alpha = _mm512_set1_ps(ep.alpha);
  const __m512 beta = _mm512_set1_ps(ep.beta);
  const __m512 zero = _mm512_setzero_ps();
  __m512 bias[kNV];
  for (int v = 0; v < kNV; ++v)
    bias[v] = ep.bias ? _mm512_maskz_loadu_ps(mask[v], ep.bias + 16 * v) : zero;
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i) {
    if (i >= rows) break;
    float* crow = c + i * ldc;
#pragma GCC unroll 4
    for (int v = 0; v < kNV; ++v) {
      __m512 x = _mm512_mul_ps(acc[i][v], alpha);
      if (ep.beta != 0.0f) x = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(mask[v], crow + 16 * v), x);
      if (ep.bias) x = _mm512_add_ps(x, bias[v]);
      // max(0, x) with x second returns x when x is NaN: ReLU propagates NaN.
      if (ep.relu) x = _mm512_max_ps(zero, x);
      _mm512_mask_storeu_ps(crow + 16 * v, mask[v], x);
    }
  }
}

template <int... Ms>
ukernel_fn strided_table_entry(int m, std::integer_sequence<int, Ms...>) {
  static const ukernel_fn table[] = {ukernel<Ms + 1, false>...};
  return table[m - 1];
}

void ukernel_strided(int64_t k, const float* a, int64_t rs_a, int64_t cs_a, const float* b,
                     int64_t rs_b, float* c, int64_t ldc, int m, int n, const Epilogue& ep) {
  strided_table_entry(m, std::make_integer_sequence<int, kMR>{})(k, a, rs_a, cs_a, b, rs_b, c, ldc, m, n, ep);
}

// Small M: rows of B stream through, U rows per pass, with the m x 16 slice of
// the accumulator block loaded and stored once per pass (it lives in L1).
// The next rows are prefetched a few passes ahead: each row segment starts in
// a new page, where the hardware prefetchers would start cold. They go to L2,
// not L1: rows a power-of-two apart alias in L1's few ways and evict each other.
constexpr int kPrefetchRows = 8;

template <int M>
void smallm_rows(int64_t k, int /*m == M*/, const float* a, int64_t rs_a, int64_t cs_a, const float* b,
                 int64_t rs_b, int64_t n, float* acc) {
  constexpr int U = M <= 2 ? 8 : M <= 4 ? 4 : 2;
  const __mmask16 tail = tail_mask(static_cast<int>(n % 16), 0);
  int64_t p = 0;
  for (; p + U <= k; p += U) {
    __m512 av[M][U];
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i)
#pragma GCC unroll 8
      for (int q = 0; q < U; ++q) av[i][q] = _mm512_set1_ps(a[i * rs_a + (p + q) * cs_a]);
    const float* brow = b + p * rs_b;
    for (int64_t j = 0; j < n; j += 16) {
      const __mmask16 mk = n - j >= 16 ? static_cast<__mmask16>(0xFFFF) : tail;
      __m512 bv[U];
#pragma GCC unroll 8
      for (int q = 0; q < U; ++q) {
        bv[q] = _mm512_maskz_loadu_ps(mk, brow + q * rs_b + j);
        _mm_prefetch(reinterpret_cast<const char*>(brow + (q + kPrefetchRows) * rs_b + j), _MM_HINT_T1);
      }
#pragma GCC unroll 8
      for (int i = 0; i < M; ++i) {
        __m512 c = _mm512_maskz_loadu_ps(mk, acc + i * n + j);
#pragma GCC unroll 8
        for (int q = 0; q < U; ++q) c = _mm512_fmadd_ps(av[i][q], bv[q], c);
        _mm512_mask_storeu_ps(acc + i * n + j, mk, c);
      }
    }
  }
  for (; p < k; ++p) {
    __m512 av[M];
    for (int i = 0; i < M; ++i) av[i] = _mm512_set1_ps(a[i * rs_a + p * cs_a]);
    const float* brow = b + p * rs_b;
    for (int64_t j = 0; j < n; j += 16) {
      const __mmask16 mk = n - j >= 16 ? static_cast<__mmask16>(0xFFFF) : tail;
      const __m512 bv = _mm512_maskz_loadu_ps(mk, brow + j);
      for (int i = 0; i < M; ++i)
        _mm512_mask_storeu_ps(acc + i * n + j, mk,
                              _mm512_fmadd_ps(av[i], bv, _mm512_maskz_loadu_ps(mk, acc + i * n + j)));
    }
  }
}

template <int... Ms>
smallm_fn smallm_table_entry(int m, std::integer_sequence<int, Ms...>) {
  static const smallm_fn table[] = {smallm_rows<Ms + 1>...};
  return table[m - 1];
}

void smallm(int64_t k, int m, const float* a, int64_t rs_a, int64_t cs_a, const float* b, int64_t rs_b, int64_t n,
            float* acc) {
  smallm_table_entry(m, std::make_integer_sequence<int, kSmallM>{})(k, m, a, rs_a, cs_a, b, rs_b, n, acc);
}

}  // namespace

extern const Ukernel ukernel_avx512 = {
    "avx512_12x32", kMR, kNR,
    /*kc=*/384, /*nc=*/512, /*mc=*/1536,
    ukernel<kMR, true>, ukernel_strided, smallm,
};

int64_t fma_peak_avx512(int64_t iters, float* sink) {
  constexpr int kChains = 12;  // > latency x throughput, so the loop is FMA-bound
  __m512 acc[kChains];
  for (int j = 0; j < kChains; ++j) acc[j] = _mm512_set1_ps(1.0f + 0.001f * static_cast<float>(j));
  const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it)
#pragma GCC unroll 12
    for (int j = 0; j < kChains; ++j) acc[j] = _mm512_fmadd_ps(acc[j], x, y);
  __m512 s = acc[0];
  for (int j = 1; j < kChains; ++j) s = _mm512_add_ps(s, acc[j]);
  *sink += _mm512_reduce_add_ps(s);
  return iters * kChains * 16 * 2;
}

}  // namespace ember::gemm
