// AVX2 + FMA GEMM micro-kernel gemm_ukernel_avx2_6x16.
//
// Strategy: a 6 x 16 tile of C in 12 ymm accumulators (16 registers: 12
// accumulators, 2 rows of B, 1 broadcast). Each k step: 2 loads of B, 6
// broadcasts of A, 12 FMAs — two FMA pipes' worth on Zen 4 and Haswell-class
// cores alike. The A sliver (6 x KC) stays in L1, the B panel streams from L2.
// Edges: n < 16 uses masked loads of in-place B and masked C accesses
// (instantiated separately so full tiles never pay for them); m < 6 is a
// separate instantiation that neither reads nor computes the missing rows.
// The epilogue (alpha, beta, bias, ReLU) runs on registers: C is written once.
// Packing a row-major A or a transposed B goes through 8 x 8 in-register
// transposes (a scalar element-by-element copy cost as much as the product for
// the long-K shapes of a dense layer).
//
// Intrinsics live only in this file, inside an anonymous namespace.
#include <immintrin.h>

#include <type_traits>
#include <utility>

#include "ops/gemm/gemm.h"
#include "ops/gemm/gemm_ukernel.h"
#include "ops/gemm/gemm_ukernel_tables.h"

namespace ember::gemm {
namespace {

constexpr int kMR = 6;
constexpr int kNV = 2;
constexpr int kNR = 8 * kNV;

inline __m256i tail_mask(int n, int v) {
  int left = n - 8 * v;
  left = left < 0 ? 0 : (left > 8 ? 8 : left);
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(left), idx);
}

template <int M, bool PACKED, bool FULL_N>
void ukernel(int64_t k, const float* a, int64_t rs_a, int64_t cs_a, const float* b, int64_t rs_b,
             float* c, int64_t ldc, int m, int n, const Epilogue& ep) {
  const int rows = PACKED ? m : M;
  __m256i mask[kNV];
  for (int v = 0; v < kNV; ++v) mask[v] = tail_mask(n, v);

  __m256 acc[M][kNV];
#pragma GCC unroll 8
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < kNV; ++v) acc[i][v] = _mm256_setzero_ps();

  const int64_t a_rs = PACKED ? 1 : rs_a;
  const int64_t a_cs = PACKED ? kMR : cs_a;
#pragma GCC unroll 2
  for (int64_t p = 0; p < k; ++p) {
    __m256 bv[kNV];
#pragma GCC unroll 4
    for (int v = 0; v < kNV; ++v)
      bv[v] = FULL_N ? _mm256_loadu_ps(b + 8 * v) : _mm256_maskload_ps(b + 8 * v, mask[v]);
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i) {
      __m256 av = _mm256_broadcast_ss(a + i * a_rs);
#pragma GCC unroll 4
      for (int v = 0; v < kNV; ++v) acc[i][v] = _mm256_fmadd_ps(av, bv[v], acc[i][v]);
    }
    a += a_cs;
    b += rs_b;
  }

  const __m256 alpha = _mm256_set1_ps(ep.alpha);
  const __m256 beta = _mm256_set1_ps(ep.beta);
  const __m256 zero = _mm256_setzero_ps();
  const bool full = FULL_N || n >= kNR;
  __m256 bias[kNV];
  for (int v = 0; v < kNV; ++v)
    bias[v] = !ep.bias ? zero : full ? _mm256_loadu_ps(ep.bias + 8 * v) : _mm256_maskload_ps(ep.bias + 8 * v, mask[v]);
#pragma GCC unroll 8
  for (int i = 0; i < M; ++i) {
    if (i >= rows) break;
    float* crow = c + i * ldc;
#pragma GCC unroll 4
    for (int v = 0; v < kNV; ++v) {
      __m256 x = _mm256_mul_ps(acc[i][v], alpha);
      if (ep.beta != 0.0f) {
        __m256 cv = full ? _mm256_loadu_ps(crow + 8 * v) : _mm256_maskload_ps(crow + 8 * v, mask[v]);
        x = _mm256_fmadd_ps(beta, cv, x);
      }
      if (ep.bias) x = _mm256_add_ps(x, bias[v]);
      // max(0, x) with x second returns x when x is NaN: ReLU propagates NaN.
      if (ep.relu) x = _mm256_max_ps(zero, x);
      if (full)
        _mm256_storeu_ps(crow + 8 * v, x);
      else
        _mm256_maskstore_ps(crow + 8 * v, mask[v], x);
    }
  }
}

// Full-width tiles never pay for masked accesses.
template <int M, bool PACKED>
void by_width(int64_t k, const float* a, int64_t rs_a, int64_t cs_a, const float* b, int64_t rs_b, float* c,
              int64_t ldc, int m, int n, const Epilogue& ep) {
  if (n >= kNR)
    ukernel<M, PACKED, true>(k, a, rs_a, cs_a, b, rs_b, c, ldc, m, n, ep);
  else
    ukernel<M, PACKED, false>(k, a, rs_a, cs_a, b, rs_b, c, ldc, m, n, ep);
}

// Small M: rows of B stream through, U rows per pass, with the m x 8 slice of
// the accumulator block loaded and stored once per pass (it lives in L1);
// the next rows are prefetched into L2 a few passes ahead (into L2, since rows
// a power-of-two apart alias in L1's few ways). Columns past the last
// multiple of 8 are done in scalar code.
constexpr int kPrefetchRows = 8;

template <int M>
void smallm_rows(int64_t k, const float* a, int64_t rs_a, int64_t cs_a, const float* b, int64_t rs_b, int64_t n,
                 float* acc) {
  constexpr int U = M <= 2 ? 4 : 2;
  const int64_t nv = n / 8 * 8;
  int64_t p = 0;
  for (; p + U <= k; p += U) {
    __m256 av[M][U];
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i)
#pragma GCC unroll 4
      for (int q = 0; q < U; ++q) av[i][q] = _mm256_set1_ps(a[i * rs_a + (p + q) * cs_a]);
    const float* brow = b + p * rs_b;
    for (int64_t j = 0; j < nv; j += 8) {
      __m256 bv[U];
#pragma GCC unroll 4
      for (int q = 0; q < U; ++q) {
        bv[q] = _mm256_loadu_ps(brow + q * rs_b + j);
        if ((j & 15) == 0)
          _mm_prefetch(reinterpret_cast<const char*>(brow + (q + kPrefetchRows) * rs_b + j), _MM_HINT_T1);
      }
#pragma GCC unroll 8
      for (int i = 0; i < M; ++i) {
        __m256 c = _mm256_loadu_ps(acc + i * n + j);
#pragma GCC unroll 4
        for (int q = 0; q < U; ++q) c = _mm256_fmadd_ps(av[i][q], bv[q], c);
        _mm256_storeu_ps(acc + i * n + j, c);
      }
    }
  }
  for (; p < k; ++p) {
    const float* brow = b + p * rs_b;
    for (int i = 0; i < M; ++i) {
      const __m256 av = _mm256_set1_ps(a[i * rs_a + p * cs_a]);
      for (int64_t j = 0; j < nv; j += 8)
        _mm256_storeu_ps(acc + i * n + j, _mm256_fmadd_ps(av, _mm256_loadu_ps(brow + j), _mm256_loadu_ps(acc + i * n + j)));
    }
  }
  for (int64_t j = nv; j < n; ++j)
    for (int i = 0; i < M; ++i) {
      float s = 0.0f;
      for (int64_t q = 0; q < k; ++q) s += a[i * rs_a + q * cs_a] * b[q * rs_b + j];
      acc[i * n + j] += s;
    }
}

// Small M, transposed B: J rows of Bt and the m rows of A are walked along K
// together, 8 at a time, into m x J accumulators, reduced once at the end;
// the last k % 8 products are added in scalar code.
inline float hsum(__m256 v) {
  __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  x = _mm_add_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x);
}

template <int M>
void smallm_dot_rows(int64_t k, const float* a, int64_t rs_a, const float* bt, int64_t ld_bt, int64_t n,
                     float* acc) {
  constexpr int J = M <= 2 ? 4 : M <= 4 ? 2 : 1;
  const int64_t kv = k / 8 * 8;
  int64_t j = 0;
  auto block = [&](auto jcount) {
    constexpr int JB = decltype(jcount)::value;
    __m256 s[M][JB];
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i)
#pragma GCC unroll 4
      for (int q = 0; q < JB; ++q) s[i][q] = _mm256_setzero_ps();
    for (int64_t p = 0; p < kv; p += 8) {
      __m256 bv[JB];
#pragma GCC unroll 4
      for (int q = 0; q < JB; ++q) bv[q] = _mm256_loadu_ps(bt + (j + q) * ld_bt + p);
#pragma GCC unroll 8
      for (int i = 0; i < M; ++i) {
        const __m256 av = _mm256_loadu_ps(a + i * rs_a + p);
#pragma GCC unroll 4
        for (int q = 0; q < JB; ++q) s[i][q] = _mm256_fmadd_ps(av, bv[q], s[i][q]);
      }
    }
    for (int i = 0; i < M; ++i)
      for (int q = 0; q < JB; ++q) {
        float t = hsum(s[i][q]);
        for (int64_t p = kv; p < k; ++p) t += a[i * rs_a + p] * bt[(j + q) * ld_bt + p];
        acc[i * n + j + q] = t;
      }
  };
  for (; j + J <= n; j += J) block(std::integral_constant<int, J>{});
  for (; j < n; ++j) block(std::integral_constant<int, 1>{});
}

// In-register transpose of an 8 x 8 block: r[i] lane j <- r[j] lane i.
inline void transpose8(__m256 r[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xee);
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xee);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
  }
}

// Loads rows[q] (q < nrows) of an 8 x 8 block, np values each, zero beyond.
inline void load_block(const float* src, int64_t ld, int nrows, int np, __m256 r[8]) {
  const __m256i pm = tail_mask(np, 0);
  for (int q = 0; q < 8; ++q)
    r[q] = q >= nrows ? _mm256_setzero_ps()
           : np == 8  ? _mm256_loadu_ps(src + q * ld)
                      : _mm256_maskload_ps(src + q * ld, pm);
}

// Packing a transposed B: 8 columns x 8 values of K at a time are transposed
// in registers and stored as 8-float halves of 16-column rows.
void pack_b_t(const float* src, int64_t ld, int64_t kc, int64_t cols, float* out) {
  for (int64_t s = 0; s < cols; s += kNR) {
    const int64_t n = cols - s < kNR ? cols - s : kNR;
    float* dst = out + s * kc;
    for (int jb = 0; jb < kNR; jb += 8) {
      const int nj = static_cast<int>(n - jb < 0 ? 0 : (n - jb > 8 ? 8 : n - jb));
      for (int64_t p0 = 0; p0 < kc; p0 += 8) {
        const int np = static_cast<int>(kc - p0 < 8 ? kc - p0 : 8);
        __m256 r[8];
        load_block(src + (s + jb) * ld + p0, ld, nj, np, r);
        transpose8(r);
        for (int t = 0; t < np; ++t) _mm256_storeu_ps(dst + (p0 + t) * kNR + jb, r[t]);
      }
    }
  }
}

// Packing a row-major A: the MR rows x 8 values of K are transposed in
// registers (rows MR..7 of the block are zero) and stored MR values per k.
// Each full 8-float store spills two values into the next k's place, which
// the next store overwrites; the last k of a block is stored exactly.
void pack_a_n(const float* src, int64_t ld, int64_t rows, int64_t kc, float* out) {
  static_assert(kMR == 6, "stores write 4 + 2 values per k");
  for (int64_t s = 0; s < rows; s += kMR) {
    const int m = static_cast<int>(rows - s < kMR ? rows - s : kMR);
    float* dst = out + s * kc;
    for (int64_t p0 = 0; p0 < kc; p0 += 8) {
      const int np = static_cast<int>(kc - p0 < 8 ? kc - p0 : 8);
      __m256 r[8];
      load_block(src + s * ld + p0, ld, m, np, r);
      transpose8(r);
      for (int t = 0; t + 1 < np; ++t) _mm256_storeu_ps(dst + (p0 + t) * kMR, r[t]);
      float* last = dst + (p0 + np - 1) * kMR;
      _mm_storeu_ps(last, _mm256_castps256_ps128(r[np - 1]));
      _mm_storel_pi(reinterpret_cast<__m64*>(last + 4), _mm256_extractf128_ps(r[np - 1], 1));
    }
  }
}

}  // namespace

// Blocking for the AVX2-only cores this path serves (Zen 2/3: 32 KB L1d, 512 KB L2): a 6 x 256
// sliver of A (6 KB) beside a 16 x 256 sliver of B (16 KB) in L1, the 256 x 256 panel of B
// (256 KB) in L2. (Zen 4's 384 x 512 panel overflowed Zen 3's L2: 0.7x NumPy's speed on
// 256 x 1024 x 512, 0.9x with these.)
extern const Ukernel ukernel_avx2 = {
    "avx2_6x16", kMR, kNR,
    /*kc=*/256, /*nc=*/256, /*mc=*/1536, /*narrow_nr=*/0,
    by_width<kMR, true>,
    rows_table<kMaxTileRows, kMR>([](auto m) { return by_width<decltype(m)::value, false>; }),
    rows_table<kSmallM, kSmallM>([](auto m) { return smallm_rows<decltype(m)::value>; }),
    rows_table<kSmallM, kSmallM>([](auto m) { return smallm_dot_rows<decltype(m)::value>; }),
    pack_b_t, pack_a_n, nullptr,
};

int64_t fma_peak_avx2(int64_t iters, float* sink) {
  constexpr int kChains = 12;  // > latency x throughput (4 x 2 on current cores)
  __m256 acc[kChains];
  for (int j = 0; j < kChains; ++j) acc[j] = _mm256_set1_ps(1.0f + 0.001f * static_cast<float>(j));
  const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it)
#pragma GCC unroll 12
    for (int j = 0; j < kChains; ++j) acc[j] = _mm256_fmadd_ps(acc[j], x, y);
  __m256 s = acc[0];
  for (int j = 1; j < kChains; ++j) s = _mm256_add_ps(s, acc[j]);
  float lanes[8];
  _mm256_storeu_ps(lanes, s);
  for (float l : lanes) *sink += l;
  return iters * kChains * 8 * 2;
}

}  // namespace ember::gemm
