// The quantized-matmul kernels for AVX-512 with VNNI. One zmm holds a packed
// block's 16 channels x 4 inputs; vpdpbusd multiplies it by 4 activation
// bytes broadcast to every lane and adds the 4 products into each channel's
// int32. vpdpbusd takes one unsigned and one signed operand:
//  - int8 weights are signed, so activations enter as q + 128 (unsigned) and
//    128 * colsum[n] is taken back out at the end, exactly;
//  - grouped int8 and int4 weights are stored as q + 128 (unsigned bytes) and
//    q + 8 (unsigned nibbles), activations enter as q (signed), and 128 or 8
//    times the group's sum of q is taken back out (the sums start from minus it).
// A tile keeps MR rows x NB blocks of accumulators in registers over the
// whole of K (int8) or one group at a time (int4).
//
// Included only by qmatmul_kernels_avx512vnni.cpp and qmatmul_kernels_avx512vbmi.cpp, each
// compiling it with its own flags and defining, before the include, `CodebookLookup`: how a
// 64-byte octet of codebook indices becomes the codebook's values (vpshufb, or VBMI's vpermb).
// Everything is in an anonymous namespace: each translation unit gets its own copy.
#pragma once

#include <algorithm>
#include <cfloat>
#include <type_traits>

#include "ops/qmatmul/qmatmul.h"
#include "ops/qmatmul/qmatmul_avx512.h"
#include "ops/qmatmul/qmatmul_rows.h"

namespace ember::qmatmul {
namespace {

// The documented activation quantization, 16 values at a time (the same float operations as
// qmatmul_quant.h: |x|, max, 127 / amax, x * inv rounded half to even, clamped).
bool quantize_rows(const float* x, int64_t rows, int64_t ldx, int64_t k, int64_t kp, int64_t group, uint8_t* qu,
                   int8_t* qs, float* scale, int32_t* sums) {
  const int64_t groups = kp / group;
  const __m512 big = _mm512_set1_ps(FLT_MAX), lim = _mm512_set1_ps(127.0f), neg = _mm512_set1_ps(-127.0f);
  const __m128i flip = _mm_set1_epi8(static_cast<char>(0x80));
  bool finite = true;
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * ldx;
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t k0 = g * group, k1 = k0 + group < k ? k0 + group : k;
      __m512 vmax = _mm512_setzero_ps();
      __mmask16 bad = 0;
      for (int64_t i = k0; i < k1; i += 16) {
        const __mmask16 mask = k1 - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (k1 - i)) - 1u);
        const __m512 a = _mm512_abs_ps(_mm512_maskz_loadu_ps(mask, xr + i));
        bad |= _mm512_mask_cmp_ps_mask(mask, a, big, _CMP_NLE_UQ);  // NaN or infinite
        vmax = _mm512_max_ps(vmax, a);
      }
      finite &= bad == 0;
      const float amax = _mm512_reduce_max_ps(vmax);
      const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
      scale[r * groups + g] = amax / 127.0f;
      const __m512 vinv = _mm512_set1_ps(inv);
      __m512i vsum = _mm512_setzero_si512();
      for (int64_t i = k0; i < k0 + group; i += 16) {
        const __mmask16 mask = i >= k1 ? __mmask16(0) : (k1 - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (k1 - i)) - 1u));
        __m512 q = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(mask, xr + i), vinv),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        q = _mm512_max_ps(_mm512_min_ps(q, lim), neg);
        const __m512i qi = _mm512_cvtps_epi32(q);
        vsum = _mm512_add_epi32(vsum, qi);
        const __m128i bytes = _mm512_cvtepi32_epi8(qi);
        const int64_t n = k0 + group - i < 16 ? k0 + group - i : 16;  // the group's padding is written too
        const __mmask16 store = n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1u);
        _mm_mask_storeu_epi8(qs + r * kp + i, store, bytes);
        _mm_mask_storeu_epi8(qu + r * kp + i, store, _mm_xor_si128(bytes, flip));
      }
      sums[r * groups + g] = _mm512_reduce_add_epi32(vsum);
    }
  }
  return finite;
}

// y[r, channels of blocks b .. b + NB) = out[r][j] + bias, the channels below n.
template <int MR, int NB>
inline void store_rows(const __m512 (&out)[MR][NB], int64_t n, int64_t b, const float* bias, float* y, int64_t ldy) {
  for (int j = 0; j < NB; ++j) {
    const int64_t n0 = (b + j) * kBlock;
    const __mmask16 mask = lanes_left(n, b + j);
    const __m512 bv = bias ? _mm512_maskz_loadu_ps(mask, bias + n0) : _mm512_setzero_ps();
    for (int r = 0; r < MR; ++r) _mm512_mask_storeu_ps(y + r * ldy + n0, mask, _mm512_add_ps(out[r][j], bv));
  }
}

template <int MR, int NB>
void int8_kernel(const QuantRows& a, const Int8Weight& w, int64_t b, const float* bias, float* y, int64_t ldy) {
  const int64_t quads = w.kp / 4;
  __m512i acc[MR][NB];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NB; ++j) acc[r][j] = _mm512_setzero_si512();
  const int8_t* wp = w.data + b * quads * 64;
  const int64_t stride = quads * 64;  // bytes from one block to the next
  const uint8_t* ap = a.qu;
  for (int64_t q = 0; q < quads; ++q) {
    __m512i wv[NB];
    for (int j = 0; j < NB; ++j) wv[j] = _mm512_loadu_si512(wp + j * stride + q * 64);
    for (int r = 0; r < MR; ++r) {
      int32_t quad;
      __builtin_memcpy(&quad, ap + r * a.kp + 4 * q, 4);
      const __m512i av = _mm512_set1_epi32(quad);
      for (int j = 0; j < NB; ++j) acc[r][j] = _mm512_dpbusd_epi32(acc[r][j], av, wv[j]);
    }
  }
  for (int j = 0; j < NB; ++j) {
    const int64_t n0 = (b + j) * kBlock;
    const __mmask16 mask = lanes_left(w.n, b + j);
    const __m512i comp = _mm512_slli_epi32(_mm512_loadu_si512(w.colsum + n0), 7);  // 128 * colsum
    const __m512 sw = _mm512_loadu_ps(w.scales + n0);
    const __m512 bv = bias ? _mm512_maskz_loadu_ps(mask, bias + n0) : _mm512_setzero_ps();
    for (int r = 0; r < MR; ++r) {
      const __m512 f = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][j], comp));
      const __m512 s = _mm512_mul_ps(sw, _mm512_set1_ps(a.scale[r]));
      _mm512_mask_storeu_ps(y + r * ldy + n0, mask, _mm512_fmadd_ps(f, s, bv));
    }
  }
}

// Grouped int8: per group, the sums start at -128 * (the group's sum of q) and the e6m10
// scales widen by a shift and an add.
template <int MR, int NB>
void int8g_kernel(const QuantRows& a, const Int8GWeight& w, int64_t b, const float* bias, float* y, int64_t ldy) {
  const int64_t quads = w.kp / 4, groups = w.kp / w.group, per_group = w.group / 4;
  const int64_t stride = quads * 64;
  const uint8_t* wp = w.data + b * stride;
  __m512 out[MR][NB];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NB; ++j) out[r][j] = _mm512_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    __m512i acc[MR][NB];
    for (int r = 0; r < MR; ++r) {
      const __m512i comp = _mm512_set1_epi32(-128 * a.sums[r * groups + g]);
      for (int j = 0; j < NB; ++j) acc[r][j] = comp;
    }
    for (int64_t q = g * per_group, end = q + per_group; q < end; ++q) {
      __m512i wv[NB];
      for (int j = 0; j < NB; ++j) wv[j] = _mm512_loadu_si512(wp + j * stride + q * 64);
      for (int r = 0; r < MR; ++r) {
        int32_t quad;
        __builtin_memcpy(&quad, a.qs + r * a.kp + 4 * q, 4);
        const __m512i av = _mm512_set1_epi32(quad);
        for (int j = 0; j < NB; ++j) acc[r][j] = _mm512_dpbusd_epi32(acc[r][j], wv[j], av);
      }
    }
    for (int j = 0; j < NB; ++j) {
      const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.scales + ((b + j) * groups + g) * kBlock));
      const __m512 sw = _mm512_castsi512_ps(
          _mm512_add_epi32(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 13), _mm512_set1_epi32(kE6m10Bias)));
      for (int r = 0; r < MR; ++r) {
        const __m512 s = _mm512_mul_ps(sw, _mm512_set1_ps(a.scale[r * groups + g]));
        out[r][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[r][j]), s, out[r][j]);
      }
    }
  }
  store_rows<MR, NB>(out, w.n, b, bias, y, ldy);
}

// acc[r][j] += octets [o0, o1) of blocks j (16 channels, `stride` bytes apart from wp) times rows r
// of the signed activations; unpack(v, lo, hi) makes a 64-byte octet's low and high nibbles the
// unsigned bytes that vpdpbusd multiplies.
template <int MR, int NB, class Unpack>
inline void octet_products(const QuantRows& a, const uint8_t* wp, int64_t stride, int64_t o0, int64_t o1,
                           __m512i (&acc)[MR][NB], Unpack unpack) {
  for (int64_t o = o0; o < o1; ++o) {
    __m512i lo[NB], hi[NB];
    for (int j = 0; j < NB; ++j) unpack(_mm512_loadu_si512(wp + j * stride + o * 64), lo[j], hi[j]);
    for (int r = 0; r < MR; ++r) {
      int32_t q0, q1;
      __builtin_memcpy(&q0, a.qs + r * a.kp + 8 * o, 4);
      __builtin_memcpy(&q1, a.qs + r * a.kp + 8 * o + 4, 4);
      const __m512i a0 = _mm512_set1_epi32(q0), a1 = _mm512_set1_epi32(q1);
      for (int j = 0; j < NB; ++j) {
        acc[r][j] = _mm512_dpbusd_epi32(acc[r][j], lo[j], a0);
        acc[r][j] = _mm512_dpbusd_epi32(acc[r][j], hi[j], a1);
      }
    }
  }
}

template <int MR, int NB>
void int4_kernel(const QuantRows& a, const Int4Weight& w, int64_t b, const float* bias, float* y, int64_t ldy) {
  const int64_t octets = w.kp / 8, groups = w.kp / w.group, per_group = w.group / 8;
  const int64_t stride = octets * 64;
  const uint8_t* wp = w.data + b * stride;
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  __m512 out[MR][NB];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NB; ++j) out[r][j] = _mm512_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    __m512i acc[MR][NB];
    for (int r = 0; r < MR; ++r)
      for (int j = 0; j < NB; ++j) acc[r][j] = _mm512_setzero_si512();
    octet_products<MR, NB>(a, wp, stride, g * per_group, (g + 1) * per_group, acc,
                           [&](__m512i v, __m512i& lo, __m512i& hi) {
                             lo = _mm512_and_si512(v, low4);
                             hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
                           });
    for (int j = 0; j < NB; ++j) {
      const __m512 sw = _mm512_loadu_ps(w.scales + ((b + j) * groups + g) * kBlock);
      for (int r = 0; r < MR; ++r) {
        const __m512i comp = _mm512_set1_epi32(8 * a.sums[r * groups + g]);
        const __m512 f = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][j], comp));
        const __m512 s = _mm512_mul_ps(sw, _mm512_set1_ps(a.scale[r * groups + g]));
        out[r][j] = _mm512_fmadd_ps(f, s, out[r][j]);
      }
    }
  }
  store_rows<MR, NB>(out, w.n, b, bias, y, ldy);
}

// The codebook format: CodebookLookup (the including file's) looks each index up in the codebook
// + 128 (unsigned bytes, the vpdpbusd operand), the activations enter signed, and 128 * (the
// sub-block's sum of q) is taken back out (the sums start from minus it) before the sub-block's
// scale multiplies its sum (exact: |T| < 2^28).
template <int MR, int NB>
void int4cb_kernel(const QuantRows& a, const Int4CbWeight& w, int64_t b, const float* bias, float* y, int64_t ldy) {
  const int64_t octets = w.kp / 8, supers = w.supers(), subs = a.kp / kSub;
  const int64_t stride = octets * 64;
  const uint8_t* wp = w.data + b * stride;
  const CodebookLookup lookup{codebook_table(128)};
  __m512 out[MR][NB];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NB; ++j) out[r][j] = _mm512_setzero_ps();
  __m512i sc[NB][kSuper / kSub];
  for (int64_t s = 0; s < supers; ++s) {
    for (int j = 0; j < NB; ++j) sub_scales(w.scales + ((b + j) * supers + s) * kCbScaleBytes, sc[j]);
    __m512i total[MR][NB];
    for (int r = 0; r < MR; ++r)
      for (int j = 0; j < NB; ++j) total[r][j] = _mm512_setzero_si512();
    const int64_t here = std::min<int64_t>(kSuper, w.kp - s * kSuper) / kSub;  // a last super-block may be short
    for (int sub = 0; sub < here; ++sub) {
      __m512i acc[MR][NB];  // the sums start at -128 * (the sub-block's sum of q)
      for (int r = 0; r < MR; ++r) {
        const __m512i comp = _mm512_set1_epi32(-128 * a.sums[r * subs + s * (kSuper / kSub) + sub]);
        for (int j = 0; j < NB; ++j) acc[r][j] = comp;
      }
      const int64_t o0 = (s * kSuper + sub * kSub) / 8;
      octet_products<MR, NB>(a, wp, stride, o0, o0 + kSub / 8, acc, lookup);
      for (int r = 0; r < MR; ++r)
        for (int j = 0; j < NB; ++j)
          total[r][j] = _mm512_add_epi32(total[r][j], _mm512_mullo_epi32(acc[r][j], sc[j][sub]));
    }
    for (int j = 0; j < NB; ++j) {
      const uint8_t* sb = w.scales + ((b + j) * supers + s) * kCbScaleBytes;
      const __m512 d = _mm512_loadu_ps(reinterpret_cast<const float*>(sb));
      for (int r = 0; r < MR; ++r) {
        const __m512 scale = _mm512_mul_ps(d, _mm512_set1_ps(a.scale[r * supers + s]));
        out[r][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(total[r][j]), scale, out[r][j]);
      }
    }
  }
  store_rows<MR, NB>(out, w.n, b, bias, y, ldy);
}

// Blocks per kernel call for MR rows: as many as the 32 zmm registers allow (int4_nb: grouped int8's
// too, which keeps the same two sets of accumulators; int4cb_nb: the codebook's, whose sub-block
// scales take registers too).
constexpr int int8_nb(int mr) { return mr <= 4 ? 4 : 2; }
constexpr int int4_nb(int mr) { return mr <= 2 ? 4 : (mr <= 4 ? 2 : 1); }
constexpr int int4cb_nb(int mr) { return mr <= 2 ? 4 : 2; }

// A tile of `rows` rows (at most MaxRows) by blocks [b0, b1): run(mr, nb, b) calls a format's
// kernel<MR, NB> at block b, Nb(MR) blocks per call and the rest one at a time.
template <int MaxRows, int (*Nb)(int), class Run>
void tiles(int64_t rows, int64_t b0, int64_t b1, Run&& run) {
  with_rows<MaxRows>(rows, [&](auto mr) {
    constexpr int NB = Nb(decltype(mr)::value);
    int64_t b = b0;
    for (; b + NB <= b1; b += NB) run(mr, std::integral_constant<int, NB>{}, b);
    for (; b < b1; ++b) run(mr, std::integral_constant<int, 1>{}, b);
  });
}

void int8_tile(const QuantRows& a, int64_t rows, const Int8Weight& w, int64_t b0, int64_t b1, const float* bias,
               float* y, int64_t ldy) {
  tiles<8, int8_nb>(rows, b0, b1, [&](auto mr, auto nb, int64_t b) {
    int8_kernel<decltype(mr)::value, decltype(nb)::value>(a, w, b, bias, y, ldy);
  });
}

void int8g_tile(const QuantRows& a, int64_t rows, const Int8GWeight& w, int64_t b0, int64_t b1, const float* bias,
                float* y, int64_t ldy) {
  tiles<8, int4_nb>(rows, b0, b1, [&](auto mr, auto nb, int64_t b) {
    int8g_kernel<decltype(mr)::value, decltype(nb)::value>(a, w, b, bias, y, ldy);
  });
}

void int4_tile(const QuantRows& a, int64_t rows, const Int4Weight& w, int64_t b0, int64_t b1, const float* bias,
               float* y, int64_t ldy) {
  tiles<8, int4_nb>(rows, b0, b1, [&](auto mr, auto nb, int64_t b) {
    int4_kernel<decltype(mr)::value, decltype(nb)::value>(a, w, b, bias, y, ldy);
  });
}

void int4cb_tile(const QuantRows& a, int64_t rows, const Int4CbWeight& w, int64_t b0, int64_t b1, const float* bias,
                 float* y, int64_t ldy) {
  tiles<4, int4cb_nb>(rows, b0, b1, [&](auto mr, auto nb, int64_t b) {
    int4cb_kernel<decltype(mr)::value, decltype(nb)::value>(a, w, b, bias, y, ldy);
  });
}

}  // namespace
}  // namespace ember::qmatmul
