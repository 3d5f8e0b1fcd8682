// AVX-512 GEMM micro-kernel gemm_ukernel_avx512_8x48.
//
// Strategy: an 8 x 48 tile of C lives in 24 zmm accumulators for the whole k
// loop. Each k step loads three zmm of B (one row of the sliver), broadcasts
// 8 values of A and issues 24 FMAs: 11 loads per 24 FMAs keeps Zen 4's single
// 512-bit FMA per cycle (two 256-bit halves) busy, with load ports to spare
// for the B stream from L2. The A sliver (8 x KC) stays in L1.
// (Measured against 12x32 and 6x64 tiles on Zen 4: 8x48 was the fastest on
// odd sizes and equal on powers of two.)
// Edges: narrow tiles run an instantiation with 1 or 2 vectors per row and
// mask the rest (loads of in-place B and all C accesses); m < 8 rows of
// in-place A is a separate instantiation that neither reads nor computes the
// missing rows. Nothing is materialised: the epilogue (alpha, beta, bias,
// ReLU) is applied to the registers on the way out, so C is written once.
//
// Intrinsics live only in this file, inside an anonymous namespace, so no
// AVX-512 code can be merged into a function another CPU might call.
#include <immintrin.h>

// GCC 12's own AVX-512 headers build masked and reduced values from a
// deliberately undefined register, which -W(maybe-)uninitialized reports at
// every call site; the warning is about the headers, not this file.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include <type_traits>
#include <utility>

#include "ops/gemm/gemm.h"
#include "ops/gemm/gemm_ukernel.h"
#include "ops/gemm/gemm_ukernel_tables.h"

namespace ember::gemm {
namespace {

constexpr int kMR = 8;
constexpr int kNV = 3;  // zmm vectors per row of the full tile
constexpr int kNR = 16 * kNV;

inline __mmask16 tail_mask(int n, int v) {
  int left = n - 16 * v;
  if (left >= 16) return static_cast<__mmask16>(0xFFFF);
  if (left <= 0) return 0;
  return static_cast<__mmask16>((1u << left) - 1u);
}

template <int M, int NV, bool PACKED>
[[gnu::always_inline]] inline void ukernel(int64_t k, const float* a, int64_t rs_a, int64_t cs_a, const float* b, int64_t rs_b,
             float* c, int64_t ldc, int m, int n, const Epilogue& ep) {
  const int rows = PACKED ? m : M;
  __mmask16 mask[NV];
  for (int v = 0; v < NV; ++v) mask[v] = tail_mask(n, v);
  // Start fetching the C tile now so the epilogue does not wait for it.
  for (int i = 0; i < rows; ++i)
    for (int v = 0; v < NV; ++v) _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 16 * v), _MM_HINT_T0);

  __m512 acc[M][NV];
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();

  // Packed A is at a[p * MR + i] (strides known at compile time); in-place A
  // at a[i * rs_a + p * cs_a]. B may be packed or in place: its loads are
  // masked to n columns either way.
  const int64_t a_rs = PACKED ? 1 : rs_a;
  const int64_t a_cs = PACKED ? kMR : cs_a;
  for (int64_t p = 0; p < k; ++p) {
    __m512 bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = _mm512_maskz_loadu_ps(mask[v], b + 16 * v);
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) {
      const __m512 av = _mm512_set1_ps(a[i * a_rs]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
    }
    a += a_cs;
    b += rs_b;
  }

  // Epilogue, one stage at a time so each option is tested once per tile.
  if (ep.alpha != 1.0f) {
    const __m512 alpha = _mm512_set1_ps(ep.alpha);
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_mul_ps(acc[i][v], alpha);
  }
  if (ep.beta != 0.0f) {
    const __m512 beta = _mm512_set1_ps(ep.beta);
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i)
      if (i < rows)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v)
          acc[i][v] = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(mask[v], c + i * ldc + 16 * v), acc[i][v]);
  }
  if (ep.bias) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const __m512 bv = _mm512_maskz_loadu_ps(mask[v], ep.bias + 16 * v);
#pragma GCC unroll 16
      for (int i = 0; i < M; ++i) acc[i][v] = _mm512_add_ps(acc[i][v], bv);
    }
  }
  if (ep.relu) {
    // max(0, x) with x second returns x when x is NaN: ReLU propagates NaN.
    const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_max_ps(zero, acc[i][v]);
  }
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i)
    if (i < rows)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) _mm512_mask_storeu_ps(c + i * ldc + 16 * v, mask[v], acc[i][v]);
}

// Narrow tiles (n <= 16 or 32) run an instantiation with fewer vectors per
// row rather than computing masked-off columns.
static_assert(kNV == 3, "by_width lists one instantiation per vector count");

template <int M, bool PACKED>
void by_width(int64_t k, const float* a, int64_t rs_a, int64_t cs_a, const float* b, int64_t rs_b, float* c,
              int64_t ldc, int m, int n, const Epilogue& ep) {
  if (n > 32)
    ukernel<M, 3, PACKED>(k, a, rs_a, cs_a, b, rs_b, c, ldc, m, n, ep);
  else if (n > 16)
    ukernel<M, 2, PACKED>(k, a, rs_a, cs_a, b, rs_b, c, ldc, m, n, ep);
  else
    ukernel<M, 1, PACKED>(k, a, rs_a, cs_a, b, rs_b, c, ldc, m, n, ep);
}

// Strips of in-place A at most 32 columns wide use tiles of up to 12 rows (24
// accumulators again): with K as short as an im2col's 27, a tile's fixed cost
// (masks, epilogue stores) is then spread over 1.5x the FMAs.
constexpr int kNarrowNR = 32;
constexpr int kNarrowMR = 12;

template <int M>
void narrow_by_width(int64_t k, const float* a, int64_t rs_a, int64_t cs_a, const float* b, int64_t rs_b,
                     float* c, int64_t ldc, int m, int n, const Epilogue& ep) {
  if (n > 16)
    ukernel<M, 2, false>(k, a, rs_a, cs_a, b, rs_b, c, ldc, m, n, ep);
  else
    ukernel<M, 1, false>(k, a, rs_a, cs_a, b, rs_b, c, ldc, m, n, ep);
}

// A strip of in-place A at most 32 columns wide over many rows (the im2col
// product of a first conv layer, where K is a few dozen): 12-row tiles in one
// loop, so the call and the epilogue's setup are paid once per strip, not
// once per tile.
template <int NV>
void narrow_rows(int64_t rows, int64_t k, const float* a, int64_t rs_a, int64_t cs_a, const float* b, int64_t rs_b,
                 float* c, int64_t ldc, int n, const Epilogue& ep) {
  for (int64_t i = 0; i + kNarrowMR <= rows; i += kNarrowMR)
    ukernel<kNarrowMR, NV, false>(k, a + i * rs_a, rs_a, cs_a, b, rs_b, c + i * ldc, ldc, kNarrowMR, n, ep);
}

void narrow_panel(int64_t rows, int64_t k, const float* a, int64_t rs_a, int64_t cs_a, const float* b,
                  int64_t rs_b, float* c, int64_t ldc, int n, const Epilogue& ep) {
  if (n > 16)
    narrow_rows<2>(rows, k, a, rs_a, cs_a, b, rs_b, c, ldc, n, ep);
  else
    narrow_rows<1>(rows, k, a, rs_a, cs_a, b, rs_b, c, ldc, n, ep);
  const int64_t done = rows / kNarrowMR * kNarrowMR;
  if (done < rows)
    ukernel_avx512.strided[rows - done - 1](k, a + done * rs_a, rs_a, cs_a, b, rs_b, c + done * ldc, ldc,
                                            static_cast<int>(rows - done), n, ep);
}

// Small M: rows of B stream through, U rows per pass, with the m x 16 slice of
// the accumulator block loaded and stored once per pass (it lives in L1).
// The next rows are prefetched a few passes ahead: each row segment starts in
// a new page, where the hardware prefetchers would start cold. They go to L2,
// not L1: rows a power-of-two apart alias in L1's few ways and evict each other.
constexpr int kPrefetchRows = 8;

template <int M>
void smallm_rows(int64_t k, const float* a, int64_t rs_a, int64_t cs_a, const float* b, int64_t rs_b, int64_t n,
                 float* acc) {
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

// Small M, transposed B: J rows of Bt and the m rows of A are walked along K
// together, 16 at a time, into m x J accumulators (A reloaded from L1 for each
// row of Bt it meets); each accumulator is reduced once at the end.
template <int M>
void smallm_dot_rows(int64_t k, const float* a, int64_t rs_a, const float* bt, int64_t ld_bt, int64_t n,
                     float* acc) {
  constexpr int J = M == 1 ? 8 : M == 2 ? 6 : M <= 4 ? 4 : 2;
  const __mmask16 tail = tail_mask(static_cast<int>(k % 16), 0);
  const int64_t kv = k / 16 * 16;
  int64_t j = 0;
  auto block = [&](auto jcount) {
    constexpr int JB = decltype(jcount)::value;
    __m512 s[M][JB];
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i)
#pragma GCC unroll 8
      for (int q = 0; q < JB; ++q) s[i][q] = _mm512_setzero_ps();
    auto step = [&](int64_t p, __mmask16 mk) {
      __m512 bv[JB];
#pragma GCC unroll 8
      for (int q = 0; q < JB; ++q) bv[q] = _mm512_maskz_loadu_ps(mk, bt + (j + q) * ld_bt + p);
#pragma GCC unroll 8
      for (int i = 0; i < M; ++i) {
        const __m512 av = _mm512_maskz_loadu_ps(mk, a + i * rs_a + p);
#pragma GCC unroll 8
        for (int q = 0; q < JB; ++q) s[i][q] = _mm512_fmadd_ps(av, bv[q], s[i][q]);
      }
    };
    for (int64_t p = 0; p < kv; p += 16) step(p, static_cast<__mmask16>(0xFFFF));
    if (kv < k) step(kv, tail);
    for (int i = 0; i < M; ++i)
      for (int q = 0; q < JB; ++q) acc[i * n + j + q] = _mm512_reduce_add_ps(s[i][q]);
  };
  for (; j + J <= n; j += J) block(std::integral_constant<int, J>{});
  for (; j < n; ++j) block(std::integral_constant<int, 1>{});
}

// Packing a transposed B: 16 x 16 blocks are loaded along K (contiguous),
// transposed in registers (unpack ps, unpack pd, two 128-bit lane shuffles)
// and stored as 16 rows of a sliver, instead of one strided store per element.
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    const __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 1]);
    const __m512d c = _mm512_castps_pd(t[i + 2]), d = _mm512_castps_pd(t[i + 3]);
    r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  for (int i = 0; i < 4; ++i) {
    t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
    t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xdd);
    t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
    t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xdd);
  }
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
  }
}

void pack_b_t(const float* src, int64_t ld, int64_t kc, int64_t cols, float* out) {
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t s = 0; s < cols; s += kNR) {
    const int64_t n = cols - s < kNR ? cols - s : kNR;
    float* dst = out + s * kc;
    for (int jb = 0; jb < kNR; jb += 16) {
      const int64_t nj = n - jb < 0 ? 0 : (n - jb > 16 ? 16 : n - jb);
      for (int64_t p0 = 0; p0 < kc; p0 += 16) {
        const int np = static_cast<int>(kc - p0 < 16 ? kc - p0 : 16);
        const __mmask16 pm = tail_mask(np, 0);
        __m512 r[16];
        for (int q = 0; q < 16; ++q)
          r[q] = q < nj ? _mm512_maskz_loadu_ps(pm, src + (s + jb + q) * ld + p0) : zero;
        transpose16(r);
        for (int t = 0; t < np; ++t) _mm512_storeu_ps(dst + (p0 + t) * kNR + jb, r[t]);
      }
    }
  }
}

// Packing a row-major A: MR rows x 16 values of K are transposed in registers
// (the other rows of the 16 x 16 block are zero) and stored MR values per k.
void pack_a_n(const float* src, int64_t ld, int64_t rows, int64_t kc, float* out) {
  static_assert(kMR <= 16, "one 16 x 16 transpose covers a sliver");
  const __m512 zero = _mm512_setzero_ps();
  const __mmask16 row_mask = static_cast<__mmask16>((1u << kMR) - 1u);
  for (int64_t s = 0; s < rows; s += kMR) {
    const int64_t m = rows - s < kMR ? rows - s : kMR;
    float* dst = out + s * kc;
    for (int64_t p0 = 0; p0 < kc; p0 += 16) {
      const int np = static_cast<int>(kc - p0 < 16 ? kc - p0 : 16);
      const __mmask16 pm = tail_mask(np, 0);
      __m512 r[16];
      for (int i = 0; i < 16; ++i) r[i] = i < m ? _mm512_maskz_loadu_ps(pm, src + (s + i) * ld + p0) : zero;
      transpose16(r);
      for (int t = 0; t < np; ++t) _mm512_mask_storeu_ps(dst + (p0 + t) * kMR, row_mask, r[t]);
    }
  }
}

}  // namespace

extern const Ukernel ukernel_avx512 = {
    "avx512_8x48", kMR, kNR,
    /*kc=*/384, /*nc=*/480, /*mc=*/1536, kNarrowNR,
    by_width<kMR, true>,
    rows_table<kMaxTileRows, kNarrowMR>([](auto m) -> ukernel_fn {
      if constexpr (decltype(m)::value <= kMR)
        return by_width<decltype(m)::value, false>;
      else
        return narrow_by_width<decltype(m)::value>;
    }),
    rows_table<kSmallM, kSmallM>([](auto m) { return smallm_rows<decltype(m)::value>; }),
    rows_table<kSmallM, kSmallM>([](auto m) { return smallm_dot_rows<decltype(m)::value>; }),
    pack_b_t, pack_a_n, narrow_panel,
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
