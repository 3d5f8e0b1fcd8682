// The quantized-matmul kernels for AVX2. A packed block (16 channels x 4
// inputs) is two ymm of 8 channels. vpmaddubsw multiplies unsigned by signed
// bytes and adds pairs into int16, saturating, so:
//  - int8: the unsigned operand is |w| and the signed one a with w's sign
//    (vpsignb): each pair sum is at most 2 * 127 * 127 = 32258, which fits;
//  - grouped int8: the stored q + 128 becomes q by flipping its top bit, then as int8;
//  - int4: the unsigned operand is the nibble q + 8 (at most 15) and the
//    signed one a; 8 * (the group's sum of a) is taken back out at the end.
// vpmaddwd by ones then adds the int16 pairs into int32. The int4 codebook
// format: see its kernel below.
#include <immintrin.h>

#include <algorithm>

#include "ops/qmatmul/qmatmul.h"
#include "ops/qmatmul/qmatmul_quant.h"
#include "ops/qmatmul/qmatmul_rows.h"

namespace ember::qmatmul {
namespace {

// Stores the first `count` (1..8) floats of v at p.
inline void store8(float* p, __m256 v, int64_t count) {
  if (count >= 8) {
    _mm256_storeu_ps(p, v);
    return;
  }
  alignas(32) float t[8];
  _mm256_store_ps(t, v);
  for (int64_t i = 0; i < count; ++i) p[i] = t[i];
}

inline __m256 load8(const float* p, int64_t count) {
  if (count >= 8) return _mm256_loadu_ps(p);
  alignas(32) float t[8] = {};
  for (int64_t i = 0; i < count; ++i) t[i] = p[i];
  return _mm256_load_ps(t);
}

// y[r, 16 b ...] = out[r] + bias for the block's channels below n.
template <int MR>
inline void store_outputs(const __m256 (&out)[MR][2], int64_t n, int64_t b, const float* bias, float* y, int64_t ldy) {
  const int64_t n0 = b * kBlock;
  for (int h = 0; h < 2; ++h) {
    const int64_t left = n - n0 - 8 * h;
    if (left <= 0) break;
    const __m256 bv = bias ? load8(bias + n0 + 8 * h, left) : _mm256_setzero_ps();
    for (int r = 0; r < MR; ++r) store8(y + r * ldy + n0 + 8 * h, _mm256_add_ps(out[r][h], bv), left);
  }
}

// acc[r] += quad q of rows r's activations times a packed quad of signed int8 weights (w0: channels
// 0-7, w1: 8-15): vpmaddubsw of |w| by the activations carrying w's sign, widened by vpmaddwd.
template <int MR>
inline void int8_quad(const QuantRows& a, int64_t q, __m256i w0, __m256i w1, __m256i ones, __m256i (&acc)[MR][2]) {
  const __m256i u0 = _mm256_abs_epi8(w0), u1 = _mm256_abs_epi8(w1);
  for (int r = 0; r < MR; ++r) {
    int32_t quad;
    __builtin_memcpy(&quad, a.qs + r * a.kp + 4 * q, 4);
    const __m256i av = _mm256_set1_epi32(quad);
    const __m256i p0 = _mm256_maddubs_epi16(u0, _mm256_sign_epi8(av, w0));
    const __m256i p1 = _mm256_maddubs_epi16(u1, _mm256_sign_epi8(av, w1));
    acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(p0, ones));
    acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(p1, ones));
  }
}

template <int MR>
void int8_kernel(const QuantRows& a, const Int8Weight& w, int64_t b, const float* bias, float* y, int64_t ldy) {
  const int64_t quads = w.kp / 4;
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc[MR][2];
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
  const int8_t* wp = w.data + b * quads * 64;
  for (int64_t q = 0; q < quads; ++q)
    int8_quad<MR>(a, q, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp + q * 64)),
                  _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp + q * 64 + 32)), ones, acc);
  const int64_t n0 = b * kBlock;
  for (int h = 0; h < 2; ++h) {
    const int64_t left = w.n - n0 - 8 * h;
    if (left <= 0) break;
    const __m256 sw = _mm256_loadu_ps(w.scales + n0 + 8 * h);
    const __m256 bv = bias ? load8(bias + n0 + 8 * h, left) : _mm256_setzero_ps();
    for (int r = 0; r < MR; ++r) {
      const __m256 s = _mm256_mul_ps(sw, _mm256_set1_ps(a.scale[r]));
      store8(y + r * ldy + n0 + 8 * h, _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[r][h]), s, bv), left);
    }
  }
}

template <int MR>
void int8g_kernel(const QuantRows& a, const Int8GWeight& w, int64_t b, const float* bias, float* y, int64_t ldy) {
  const int64_t quads = w.kp / 4, groups = w.kp / w.group, per_group = w.group / 4;
  const uint8_t* wp = w.data + b * quads * 64;
  const __m256i ones = _mm256_set1_epi16(1), flip = _mm256_set1_epi8(static_cast<char>(0x80));
  __m256 out[MR][2];
  for (int r = 0; r < MR; ++r) out[r][0] = out[r][1] = _mm256_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    __m256i acc[MR][2];
    for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
    for (int64_t q = g * per_group, end = q + per_group; q < end; ++q)
      int8_quad<MR>(a, q, _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp + q * 64)), flip),
                    _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp + q * 64 + 32)), flip),
                    ones, acc);
    for (int h = 0; h < 2; ++h) {
      const __m128i bits = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w.scales + (b * groups + g) * kBlock + 8 * h));
      const __m256 sw = _mm256_castsi256_ps(
          _mm256_add_epi32(_mm256_slli_epi32(_mm256_cvtepu16_epi32(bits), 13), _mm256_set1_epi32(kE6m10Bias)));
      for (int r = 0; r < MR; ++r) {
        const __m256 s = _mm256_mul_ps(sw, _mm256_set1_ps(a.scale[r * groups + g]));
        out[r][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[r][h]), s, out[r][h]);
      }
    }
  }
  store_outputs<MR>(out, w.n, b, bias, y, ldy);
}

template <int MR>
void int4_kernel(const QuantRows& a, const Int4Weight& w, int64_t b, const float* bias, float* y, int64_t ldy) {
  const int64_t octets = w.kp / 8, groups = w.kp / w.group, per_group = w.group / 8;
  const uint8_t* wp = w.data + b * octets * 64;
  const __m256i low4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
  __m256 out[MR][2];
  for (int r = 0; r < MR; ++r) out[r][0] = out[r][1] = _mm256_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    __m256i acc[MR][2];
    for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
    // int16 pair sums of up to 4 octets (8 vpmaddubsw, each lane at most 2 * 15 * 127) add up
    // within int16, so one vpmaddwd widens 4 octets' products: a quarter of the multiplies it
    // would take per octet.
    for (int64_t o0 = g * per_group, end = o0 + per_group; o0 < end; o0 += 4) {
      __m256i s16[MR][2];
      for (int r = 0; r < MR; ++r) s16[r][0] = s16[r][1] = _mm256_setzero_si256();
      for (int64_t o = o0; o < std::min(o0 + 4, end); ++o) {
        __m256i lo[2], hi[2];
        for (int h = 0; h < 2; ++h) {
          const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp + o * 64 + 32 * h));
          lo[h] = _mm256_and_si256(v, low4);
          hi[h] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
        }
        for (int r = 0; r < MR; ++r) {
          int32_t q0, q1;
          __builtin_memcpy(&q0, a.qs + r * a.kp + 8 * o, 4);
          __builtin_memcpy(&q1, a.qs + r * a.kp + 8 * o + 4, 4);
          const __m256i a0 = _mm256_set1_epi32(q0), a1 = _mm256_set1_epi32(q1);
          for (int h = 0; h < 2; ++h)
            s16[r][h] = _mm256_add_epi16(
                s16[r][h], _mm256_add_epi16(_mm256_maddubs_epi16(lo[h], a0), _mm256_maddubs_epi16(hi[h], a1)));
        }
      }
      for (int r = 0; r < MR; ++r)
        for (int h = 0; h < 2; ++h) acc[r][h] = _mm256_add_epi32(acc[r][h], _mm256_madd_epi16(s16[r][h], ones));
    }
    for (int h = 0; h < 2; ++h) {
      const __m256 sw = _mm256_loadu_ps(w.scales + ((b * groups + g) * kBlock) + 8 * h);
      for (int r = 0; r < MR; ++r) {
        const __m256i comp = _mm256_set1_epi32(8 * a.sums[r * groups + g]);
        const __m256 f = _mm256_cvtepi32_ps(_mm256_sub_epi32(acc[r][h], comp));
        const __m256 s = _mm256_mul_ps(sw, _mm256_set1_ps(a.scale[r * groups + g]));
        out[r][h] = _mm256_fmadd_ps(f, s, out[r][h]);
      }
    }
  }
  store_outputs<MR>(out, w.n, b, bias, y, ldy);
}

// One block's 16 sub-block scales of a super-block (qmatmul.h's 6-bit layout) for vpmaddwd:
// out[j][h] holds channel 8h + l's scale c_j in both int16 halves of lane l.
inline void sub_scale_pairs(const uint8_t* sb, __m256i (&out)[kSuper / kSub][2]) {
  const __m256i m63 = _mm256_set1_epi32(63), off = _mm256_set1_epi32(32), low16 = _mm256_set1_epi32(0xFFFF);
  const auto pair = [&](__m256i u) {
    const __m256i c = _mm256_sub_epi32(u, off);
    return _mm256_or_si256(_mm256_and_si256(c, low16), _mm256_slli_epi32(c, 16));
  };
  const auto bytes8 = [](const uint8_t* p) {
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  };
  for (int p = 0; p < 4; ++p) {
    const uint8_t* rows = sb + 64 + 48 * p;
    for (int h = 0; h < 2; ++h) {
      const __m256i a = bytes8(rows + 8 * h), b = bytes8(rows + 16 + 8 * h), c = bytes8(rows + 32 + 8 * h);
      const __m256i u3 = _mm256_or_si256(_mm256_srli_epi32(a, 6),
                                         _mm256_or_si256(_mm256_slli_epi32(_mm256_srli_epi32(b, 6), 2),
                                                         _mm256_slli_epi32(_mm256_srli_epi32(c, 6), 4)));
      out[4 * p][h] = pair(_mm256_and_si256(a, m63));
      out[4 * p + 1][h] = pair(_mm256_and_si256(b, m63));
      out[4 * p + 2][h] = pair(_mm256_and_si256(c, m63));
      out[4 * p + 3][h] = pair(u3);
    }
  }
}

// The codebook format: vpshufb looks each index up in the (signed) codebook; vpmaddubsw then
// multiplies |value| (unsigned) by the activation carrying the value's sign (vpsignb), so each
// pair sum stays within 2 * 127 * 127 and nothing saturates. vpmaddwd multiplies the int16 pair
// sums by the channel's sub-block scale (the same in both halves of the lane) straight into the
// super-block's int32 total: T exactly as qmatmul.h defines it.
template <int MR>
void int4cb_kernel(const QuantRows& a, const Int4CbWeight& w, int64_t b, const float* bias, float* y, int64_t ldy) {
  const int64_t octets = w.kp / 8, supers = w.supers();
  const uint8_t* wp = w.data + b * octets * 64;
  const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kCodebook)));
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  __m256 out[MR][2];
  for (int r = 0; r < MR; ++r) out[r][0] = out[r][1] = _mm256_setzero_ps();
  __m256i sc[kSuper / kSub][2];
  for (int64_t s = 0; s < supers; ++s) {
    const uint8_t* sb = w.scales + (b * supers + s) * kCbScaleBytes;
    sub_scale_pairs(sb, sc);
    __m256i total[MR][2];
    for (int r = 0; r < MR; ++r) total[r][0] = total[r][1] = _mm256_setzero_si256();
    const int64_t here = std::min<int64_t>(kSuper, w.kp - s * kSuper) / kSub;  // a last super-block may be short
    for (int64_t sub = 0; sub < here; ++sub)
      for (int64_t o = (s * kSuper + sub * kSub) / 8, o1 = o + kSub / 8; o < o1; ++o)
        for (int h = 0; h < 2; ++h) {
          const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp + o * 64 + 32 * h));
          const __m256i lo = _mm256_shuffle_epi8(table, _mm256_and_si256(v, low4));
          const __m256i hi = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(v, 4), low4));
          const __m256i ulo = _mm256_abs_epi8(lo), uhi = _mm256_abs_epi8(hi);
          for (int r = 0; r < MR; ++r) {
            int32_t q0, q1;
            __builtin_memcpy(&q0, a.qs + r * a.kp + 8 * o, 4);
            __builtin_memcpy(&q1, a.qs + r * a.kp + 8 * o + 4, 4);
            const __m256i p0 = _mm256_maddubs_epi16(ulo, _mm256_sign_epi8(_mm256_set1_epi32(q0), lo));
            const __m256i p1 = _mm256_maddubs_epi16(uhi, _mm256_sign_epi8(_mm256_set1_epi32(q1), hi));
            total[r][h] = _mm256_add_epi32(total[r][h], _mm256_add_epi32(_mm256_madd_epi16(p0, sc[sub][h]),
                                                                         _mm256_madd_epi16(p1, sc[sub][h])));
          }
        }
    for (int h = 0; h < 2; ++h) {
      const __m256 d = _mm256_loadu_ps(reinterpret_cast<const float*>(sb) + 8 * h);
      for (int r = 0; r < MR; ++r) {
        const __m256 scale = _mm256_mul_ps(d, _mm256_set1_ps(a.scale[r * supers + s]));
        out[r][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(total[r][h]), scale, out[r][h]);
      }
    }
  }
  store_outputs<MR>(out, w.n, b, bias, y, ldy);
}

// Rows [r0, r0 + count) of a.
QuantRows shifted(const QuantRows& a, int64_t r0) {
  QuantRows s = a;
  s.qu += r0 * a.kp;
  s.qs += r0 * a.kp;
  s.scale += r0 * a.groups;
  s.sums += r0 * a.groups;
  return s;
}

// Rows in register blocks of at most 4 (16 ymm registers): run(mr, rows_from_r0, b, y_from_r0) calls a
// format's kernel<MR> for each block b in [b0, b1).
template <class Run>
void tiles(const QuantRows& a, int64_t rows, int64_t b0, int64_t b1, float* y, int64_t ldy, Run&& run) {
  for (int64_t r0 = 0; r0 < rows; r0 += 4)
    with_rows<4>(rows - r0, [&](auto mr) {
      const QuantRows part = shifted(a, r0);
      for (int64_t b = b0; b < b1; ++b) run(mr, part, b, y + r0 * ldy);
    });
}

void int8_tile(const QuantRows& a, int64_t rows, const Int8Weight& w, int64_t b0, int64_t b1, const float* bias,
               float* y, int64_t ldy) {
  tiles(a, rows, b0, b1, y, ldy, [&](auto mr, const QuantRows& part, int64_t b, float* yr) {
    int8_kernel<decltype(mr)::value>(part, w, b, bias, yr, ldy);
  });
}

void int8g_tile(const QuantRows& a, int64_t rows, const Int8GWeight& w, int64_t b0, int64_t b1, const float* bias,
                float* y, int64_t ldy) {
  tiles(a, rows, b0, b1, y, ldy, [&](auto mr, const QuantRows& part, int64_t b, float* yr) {
    int8g_kernel<decltype(mr)::value>(part, w, b, bias, yr, ldy);
  });
}

void int4_tile(const QuantRows& a, int64_t rows, const Int4Weight& w, int64_t b0, int64_t b1, const float* bias,
               float* y, int64_t ldy) {
  tiles(a, rows, b0, b1, y, ldy, [&](auto mr, const QuantRows& part, int64_t b, float* yr) {
    int4_kernel<decltype(mr)::value>(part, w, b, bias, yr, ldy);
  });
}

void int4cb_tile(const QuantRows& a, int64_t rows, const Int4CbWeight& w, int64_t b0, int64_t b1, const float* bias,
                 float* y, int64_t ldy) {
  tiles(a, rows, b0, b1, y, ldy, [&](auto mr, const QuantRows& part, int64_t b, float* yr) {
    int4cb_kernel<decltype(mr)::value>(part, w, b, bias, yr, ldy);
  });
}

}  // namespace

extern const Kernels kernels_avx2 = {quantize_rows, int8_tile, int8g_tile, int4_tile, int4cb_tile};

}  // namespace ember::qmatmul
