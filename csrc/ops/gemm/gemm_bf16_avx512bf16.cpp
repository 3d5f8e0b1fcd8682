// The bf16 GEMM on AVX-512 with vdpbf16ps: packing into the tile layouts of
// gemm_bf16.h (shared with the AMX path), the epilogue, and a block kernel.
//
// Block kernel: a 32 x 32 block of C as four groups of 8 rows x 32 columns,
// 16 zmm accumulators each. Per k-pair: two loads of B (16 columns of pairs
// each), eight 32-bit broadcasts of A's pairs, sixteen vdpbf16ps (two
// multiply-adds per lane each). The strips sit in L1/L2 (packed once). B's
// strides are compile-time constants (it is always packed) and the k-pairs of
// a tile are unrolled: with runtime strides gcc runs out of registers for the
// addresses, and the kernel ran 6% slower on Zen 4 (217 against 230 GFLOP/s on
// one core with its operands in L1; the vdpbf16ps peak is ~234).
#include <immintrin.h>

#include <cstring>

#include "ops/gemm/gemm_bf16.h"

namespace ember::gemm {
namespace {

__mmask32 first_bits32(int64_t n) { return n >= 32 ? ~__mmask32(0) : (__mmask32(1) << n) - 1; }
__mmask16 first_bits16(int64_t n) { return n >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << n) - 1); }

void block_avx512bf16(const TileStrip& a, const TileStrip& b, int64_t kt_count, bool accumulate, float* acc) {
  for (int g = 0; g < 4; ++g) {
    const uint16_t* at = a.p + (g / 2) * a.next + (g % 2) * 8 * a.ld;
    float* out = acc + g * 8 * 32;
    __m512 c[8][2];
    for (int r = 0; r < 8; ++r) {
      c[r][0] = accumulate ? _mm512_load_ps(out + r * 32) : _mm512_setzero_ps();
      c[r][1] = accumulate ? _mm512_load_ps(out + r * 32 + 16) : _mm512_setzero_ps();
    }
    for (int64_t kt = 0; kt < kt_count; ++kt) {
      const uint16_t* ak = at + kt * a.kstep;
      const uint16_t* bk0 = b.p + kt * kBf16Tile;
      const uint16_t* bk1 = b.p + b.next + kt * kBf16Tile;
#pragma GCC unroll 16
      for (int kp = 0; kp < 16; ++kp) {
        const __m512bh v0 = (__m512bh)_mm512_loadu_si512(bk0 + kp * 32);
        const __m512bh v1 = (__m512bh)_mm512_loadu_si512(bk1 + kp * 32);
        for (int r = 0; r < 8; ++r) {
          int32_t pair;
          std::memcpy(&pair, ak + r * a.ld + 2 * kp, sizeof pair);
          const __m512bh u = (__m512bh)_mm512_set1_epi32(pair);
          c[r][0] = _mm512_dpbf16_ps(c[r][0], u, v0);
          c[r][1] = _mm512_dpbf16_ps(c[r][1], u, v1);
        }
      }
    }
    for (int r = 0; r < 8; ++r) {
      _mm512_store_ps(out + r * 32, c[r][0]);
      _mm512_store_ps(out + r * 32 + 16, c[r][1]);
    }
  }
}

// A whole 16 x 32 tile of op(A) whose rows are contiguous in memory's columns (a.rs == 1: op(A) is
// a transposed row-major matrix, as the output gradient in a Linear's weight gradient): 32 loads
// of 16 values (one k each), widened and paired into 16 dwords per k pair (k even in the low
// half, as the tile row wants them), then a 16 x 16 dword transpose in four rounds of
// two-source permutes, each swapping the off-diagonal blocks of size 8, 4, 2, 1. Replaces 512
// single-element loads strided by a row of the matrix.
void pack_a_tile_transposed(const uint16_t* src, int64_t cs, uint16_t* dst) {
  __m512i w[16];
  for (int p = 0; p < 16; ++p) {
    const __m512i lo = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + 2 * p * cs)));
    const __m512i hi =
        _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + (2 * p + 1) * cs)));
    w[p] = _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16));  // w[p][r]: row r's k = 2p, 2p + 1
  }
  for (int b = 8; b >= 1; b /= 2) {
    alignas(64) int32_t keep[16], take[16];
    for (int j = 0; j < 16; ++j) {
      const bool first = j % (2 * b) < b;
      keep[j] = first ? j : 16 + j - b;  // row i: its own first half of each 2b block, then row i + b's
      take[j] = first ? j + b : 16 + j;  // row i + b: row i's second half, then its own
    }
    const __m512i ik = _mm512_load_si512(keep), it = _mm512_load_si512(take);
    for (int i = 0; i < 16; ++i) {
      if (i % (2 * b) >= b) continue;
      const __m512i x = w[i], y = w[i + b];
      w[i] = _mm512_permutex2var_epi32(x, ik, y);
      w[i + b] = _mm512_permutex2var_epi32(x, it, y);
    }
  }
  for (int r = 0; r < 16; ++r) _mm512_storeu_si512(dst + r * 32, w[r]);
}

}  // namespace

void pack_a_bf16_avx512(const MatrixBF16& a, int64_t r0, int64_t tiles, int64_t kt_count, uint16_t* out) {
  const int64_t K = a.cols;
  for (int64_t t = 0; t < tiles; ++t) {
    uint16_t* tile0 = out + t * kt_count * kBf16Tile;
    const int64_t i0 = r0 + t * 16;
    int64_t whole = 0;  // k-tiles packed by transposing whole tiles
    if (a.rs == 1 && a.cs > 0 && i0 + 16 <= a.rows)
      for (; whole < kt_count && (whole + 1) * 32 <= K; ++whole)
        pack_a_tile_transposed(a.data + i0 + whole * 32 * a.cs, a.cs, tile0 + whole * kBf16Tile);
    for (int r = 0; r < 16 && whole < kt_count; ++r) {
      const int64_t i = r0 + t * 16 + r;
      for (int64_t kt = whole; kt < kt_count; ++kt) {
        uint16_t* dst = tile0 + kt * kBf16Tile + r * 32;
        const int64_t k0 = kt * 32, n = i < a.rows ? std::min<int64_t>(32, K - k0) : 0;
        if (n > 0 && a.cs == 1) {
          _mm512_storeu_si512(dst, _mm512_maskz_loadu_epi16(first_bits32(n), a.data + i * a.rs + k0));
        } else {
          for (int64_t p = 0; p < 32; ++p) dst[p] = p < n ? a.data[i * a.rs + (k0 + p) * a.cs] : 0;
        }
      }
    }
  }
}

void pack_b_bf16_avx512(const MatrixBF16& b, int64_t c0, int64_t tiles, int64_t kt_count, uint16_t* out) {
  const int64_t K = b.rows;
  const int64_t tile_stride = kt_count * kBf16Tile;
  // Rows contiguous: 32 columns (two tiles, one cache line of each row) at a time, two rows widened and
  // interleaved into each tile's row of pairs.
  int64_t t = 0;
  if (b.cs == 1) {
    for (; t + 2 <= tiles; t += 2) {
      const int64_t j0 = c0 + t * 16, cols = std::max<int64_t>(0, std::min<int64_t>(32, b.cols - j0));
      const __mmask32 m = first_bits32(cols);
      uint16_t* dst0 = out + t * tile_stride;
      for (int64_t k = 0; k < kt_count * 32; k += 2) {
        const __m512i zero = _mm512_setzero_si512();
        const __m512i r0 = k < K && cols ? _mm512_maskz_loadu_epi16(m, b.data + k * b.rs + j0) : zero;
        const __m512i r1 = k + 1 < K && cols ? _mm512_maskz_loadu_epi16(m, b.data + (k + 1) * b.rs + j0) : zero;
        const int64_t o = (k / 32) * kBf16Tile + (k % 32) / 2 * 32;
        for (int h = 0; h < 2; ++h) {  // columns 0-15 to the first tile, 16-31 to the second
          const __m512i lo = _mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(r0, h));
          const __m512i hi = _mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(r1, h));
          _mm512_store_si512(dst0 + h * tile_stride + o, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
        }
      }
    }
  }
  // Columns contiguous (op(B) a transposed row-major matrix, as a Linear's weight): each pair
  // (k, k+1) of a column is one 32-bit word, so a tile row is a gather of 16 words, one per column.
  const bool gather = b.rs == 1 && b.cs > 0 && b.cs <= (int64_t{1} << 26);
  for (; t < tiles; ++t) {
    const int64_t j0 = c0 + t * 16, cols = std::max<int64_t>(0, std::min<int64_t>(16, b.cols - j0));
    uint16_t* tile0 = out + t * tile_stride;
    const __mmask16 m = first_bits16(cols);
    const __m512i index = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                             _mm512_set1_epi32(static_cast<int32_t>(b.cs)));
    for (int64_t kt = 0; kt < kt_count; ++kt) {
      for (int kp = 0; kp < 16; ++kp) {
        uint16_t* dst = tile0 + kt * kBf16Tile + kp * 32;
        const int64_t k = kt * 32 + 2 * kp;
        const bool has0 = k < K && cols > 0, has1 = k + 1 < K && cols > 0;
        if (gather && has1) {  // both halves inside the matrix: no read past a column's end
          _mm512_store_si512(dst, _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, index,
                                                              b.data + k + j0 * b.cs, 2));
          continue;
        }
        for (int j = 0; j < 16; ++j) {
          dst[2 * j] = has0 && j < cols ? b.data[k * b.rs + (j0 + j) * b.cs] : 0;
          dst[2 * j + 1] = has1 && j < cols ? b.data[(k + 1) * b.rs + (j0 + j) * b.cs] : 0;
        }
      }
    }
  }
}

// C at least this large (floats) is written with streaming stores when beta == 0: it is not read,
// it would not stay in cache, and the stores skip reading each line first.
constexpr int64_t kStreamFloats = int64_t{1} << 20;

void store_bf16_avx512(const GemmBf16Args& g, const float* acc, int64_t i0, int64_t j0, int64_t rows, int64_t cols) {
  const __m512 alpha = _mm512_set1_ps(g.alpha), beta = _mm512_set1_ps(g.beta), zero = _mm512_setzero_ps();
  const bool stream = g.beta == 0.0f && cols == 32 && g.c.rows * g.c.ld >= kStreamFloats;
  for (int h = 0; h < 2; ++h) {
    const int64_t n = cols - 16 * h;
    if (n <= 0) break;
    const __mmask16 m = first_bits16(n);
    const __m512 bias = g.bias ? _mm512_maskz_loadu_ps(m, g.bias + j0 + 16 * h) : zero;
    for (int64_t r = 0; r < rows; ++r) {
      float* c = g.c.data + (i0 + r) * g.c.ld + j0 + 16 * h;
      __m512 x = _mm512_mul_ps(alpha, _mm512_load_ps(acc + r * 32 + 16 * h));
      if (g.beta != 0.0f) x = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(m, c), x);
      x = _mm512_add_ps(x, bias);
      if (g.row_bias) x = _mm512_add_ps(x, _mm512_set1_ps(g.row_bias[i0 + r]));
      if (g.relu) x = _mm512_max_ps(zero, x);  // max(0, NaN) is NaN: it propagates
      if (stream && reinterpret_cast<uintptr_t>(c) % 64 == 0)
        _mm512_stream_ps(c, x);
      else
        _mm512_mask_storeu_ps(c, m, x);
    }
  }
}

void finish_stores_avx512() { _mm_sfence(); }  // orders the streaming stores before the threads join

const Bf16Kernels bf16_kernels_avx512bf16 = {"avx512_bf16 32x32 (vdpbf16ps)", pack_a_bf16_avx512,
                                             pack_b_bf16_avx512, block_avx512bf16, store_bf16_avx512, nullptr,
                                             finish_stores_avx512, 0};

}  // namespace ember::gemm
