// The quantized matmuls on AMX tiles, 16 to 32 rows at a time: int8 (W8A8) and the int4
// codebook format.
//
// int8:
// The packed int8 weight already is a stack of AMX B tiles: a 16-channel block's
// quads of inputs are 64-byte rows (channel c's 4 values at bytes 4c..4c+3),
// so 16 consecutive quads -- 64 inputs -- are one B tile, loaded in place.
// The quantized activations (q + 128, unsigned, rows kp bytes apart) are the A
// tiles. tdpbusd multiplies unsigned by signed bytes like vpdpbusd, so the
// same correction (128 * colsum) and the same float epilogue give the VNNI
// kernels' results bit for bit. A 32-row x 32-channel block lives in tiles 0-3
// over the whole of K; a last partial group of quads is read from a
// zero-padded copy of the weight rows (the activation bytes past kp that the A
// tile then reads are multiplied by those zeros; the driver allocates them).
#include "ops/qmatmul/qmatmul_avx512.h"  // first: it includes the intrinsics

#include <algorithm>
#include <cstring>

#include "core/amx.h"
#include "ops/qmatmul/qmatmul.h"

namespace ember::qmatmul {
namespace {

// The float epilogue of the VNNI kernels for one 16-channel block: y = fma(acc - 128 colsum, sx * sw, bias).
void epilogue(const int32_t* acc, int64_t acc_ld, const QuantRows& a, int64_t rows, const Int8Weight& w, int64_t b,
              const float* bias, float* y, int64_t ldy) {
  const int64_t n0 = b * kBlock;
  const __mmask16 mask = lanes_left(w.n, b);
  const __m512i comp = _mm512_slli_epi32(_mm512_loadu_si512(w.colsum + n0), 7);
  const __m512 sw = _mm512_loadu_ps(w.scales + n0);
  const __m512 bv = bias ? _mm512_maskz_loadu_ps(mask, bias + n0) : _mm512_setzero_ps();
  for (int64_t r = 0; r < rows; ++r) {
    const __m512 f = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_loadu_si512(acc + r * acc_ld), comp));
    const __m512 s = _mm512_mul_ps(sw, _mm512_set1_ps(a.scale[r]));
    _mm512_mask_storeu_ps(y + r * ldy + n0, mask, _mm512_fmadd_ps(f, s, bv));
  }
}

// Rows [0, rows) (rows <= 32; the activation buffer holds 32) x blocks [b0, b1).
void int8_rows(const QuantRows& a, int64_t rows, const Int8Weight& w, int64_t b0, int64_t b1, const float* bias,
               float* y, int64_t ldy) {
  const int64_t quads = w.kp / 4, full = quads / 16, tail = quads % 16;
  const int64_t block_bytes = quads * 64;
  const uint8_t* a0 = a.qu;
  const uint8_t* a1 = a.qu + 16 * a.kp;
  alignas(64) int8_t pad[2][1024];
  alignas(64) int32_t acc[32 * 32];
  for (int64_t b = b0; b < b1; b += 2) {
    const bool pair = b + 1 < b1;
    const int8_t* w0 = w.data + b * block_bytes;
    const int8_t* w1 = pair ? w0 + block_bytes : w0;
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int64_t t = 0; t <= full; ++t) {
      const int8_t* p0 = w0 + t * 1024;
      const int8_t* p1 = w1 + t * 1024;
      if (t == full) {  // the last quads, if any: zero-padded copies
        if (tail == 0) break;
        std::memset(pad, 0, sizeof pad);
        std::memcpy(pad[0], p0, static_cast<size_t>(tail * 64));
        std::memcpy(pad[1], p1, static_cast<size_t>(tail * 64));
        p0 = pad[0], p1 = pad[1];
      }
      _tile_loadd(4, a0 + t * 64, a.kp);
      _tile_loadd(6, p0, 64);
      _tile_loadd(5, a1 + t * 64, a.kp);
      _tile_loadd(7, p1, 64);
      _tile_dpbusd(0, 4, 6);
      _tile_dpbusd(1, 4, 7);
      _tile_dpbusd(2, 5, 6);
      _tile_dpbusd(3, 5, 7);
    }
    _tile_stored(0, acc, 128);
    _tile_stored(1, acc + 16, 128);
    _tile_stored(2, acc + 16 * 32, 128);
    _tile_stored(3, acc + 16 * 32 + 16, 128);
    epilogue(acc, 32, a, rows, w, b, bias, y, ldy);
    if (pair) epilogue(acc + 16, 32, a, rows, w, b + 1, bias, y, ldy);
  }
}

// The codebook format. Each weight's integer s * codebook[q] (|.| <= 32 * 127 = 4064: 6-bit scale
// times codebook value) is split into two int8 planes, hi = round(w / 64) and lo = w - 64 hi, so
// that sum q_x * w = 64 sum q_x * hi + sum q_x * lo: two tdpbssd (signed by signed) per 64 inputs,
// with no scale inside a super-block, and the integer T of qmatmul.h exact (|T| < 2^28). A block's
// super-block is expanded once into 4 K-steps x 2 planes of B tiles (16 quads x 16 channels, 8 KB)
// for all the rows (the driver passes them in one call), which the 16-row A tiles of activations,
// read in place, meet 32 rows at a time; then the float epilogue, as in the VNNI kernels: the
// same bits.
void expand_super(const Int4CbWeight& w, const uint8_t* wp, int64_t s, const __m512i* sc, int8_t (*planes)[2][1024]) {
  const __m512i table = codebook_table(0);
  const int64_t here = std::min<int64_t>(kSuper, w.kp - s * kSuper) / kSub;
  for (int64_t sub = 0; sub < kSuper / kSub; ++sub) {
    // the sub-block's scale per channel, each repeated for the channel's 4 bytes of a quad, in int16
    const __m256i s16 = _mm512_cvtepi32_epi16(sc[sub]);
    const __m512i spread = _mm512_set_epi16(7, 7, 7, 7, 6, 6, 6, 6, 5, 5, 5, 5, 4, 4, 4, 4, 3, 3, 3, 3, 2, 2, 2, 2,
                                            1, 1, 1, 1, 0, 0, 0, 0);
    const __m512i wide = _mm512_castsi256_si512(s16);
    const __m512i scale[2] = {_mm512_permutexvar_epi16(spread, wide),
                              _mm512_permutexvar_epi16(_mm512_add_epi16(spread, _mm512_set1_epi16(8)), wide)};
    for (int o = 0; o < 2; ++o) {
      __m512i v[2];
      if (sub < here)
        codebook_values(table, _mm512_loadu_si512(wp + ((s * kSuper + sub * kSub) / 8 + o) * 64), v[0], v[1]);
      else
        v[0] = v[1] = _mm512_setzero_si512();  // past K: zero weights
      for (int h = 0; h < 2; ++h) {  // the low nibbles are quad 2o of the sub-block, the high ones 2o + 1
        const int64_t quad = sub * 4 + 2 * o + h, step = quad / 16, row = quad % 16;
        __m256i hi8[2], lo8[2];
        for (int half = 0; half < 2; ++half) {
          const __m512i x = _mm512_cvtepi8_epi16(half ? _mm512_extracti64x4_epi64(v[h], 1)
                                                      : _mm512_castsi512_si256(v[h]));
          const __m512i prod = _mm512_mullo_epi16(x, scale[half]);
          const __m512i hi = _mm512_srai_epi16(_mm512_add_epi16(prod, _mm512_set1_epi16(32)), 6);
          hi8[half] = _mm512_cvtepi16_epi8(hi);
          lo8[half] = _mm512_cvtepi16_epi8(_mm512_sub_epi16(prod, _mm512_slli_epi16(hi, 6)));
        }
        _mm512_store_si512(planes[step][0] + 64 * row, _mm512_inserti64x4(_mm512_castsi256_si512(hi8[0]), hi8[1], 1));
        _mm512_store_si512(planes[step][1] + 64 * row, _mm512_inserti64x4(_mm512_castsi256_si512(lo8[0]), lo8[1], 1));
      }
    }
  }
}

void int4cb_rows(const QuantRows& a, int64_t rows, const Int4CbWeight& w, int64_t b0, int64_t b1, const float* bias,
                 float* y, int64_t ldy) {
  const int64_t supers = w.supers(), stride = w.kp / 8 * 64;
  alignas(64) int8_t planes[4][2][1024];  // [K-step][hi, lo] B tiles of one block's super-block
  alignas(64) int32_t sums[4][256];        // C tiles: rows 0-15 hi, lo; rows 16-31 hi, lo
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t n0 = b * kBlock;
    const __mmask16 mask = lanes_left(w.n, b);
    for (int64_t s = 0; s < supers; ++s) {
      const uint8_t* sb = w.scales + (b * supers + s) * kCbScaleBytes;
      __m512i sc[kSuper / kSub];
      sub_scales(sb, sc);
      expand_super(w, w.data + b * stride, s, sc, planes);
      const int64_t steps = (std::min<int64_t>(kSuper, w.kp - s * kSuper) + 63) / 64;
      const __m512 d = _mm512_loadu_ps(reinterpret_cast<const float*>(sb));
      const bool last = s + 1 == supers;
      const __m512 bv = last && bias ? _mm512_maskz_loadu_ps(mask, bias + n0) : _mm512_setzero_ps();
      for (int64_t r0 = 0; r0 < rows; r0 += kWideRows) {
        const int8_t* a0 = a.qs + r0 * a.kp + s * kSuper;
        const int8_t* a1 = a0 + 16 * a.kp;
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        for (int64_t t = 0; t < steps; ++t) {
          _tile_loadd(4, a0 + 64 * t, a.kp);
          _tile_loadd(6, planes[t][0], 64);
          _tile_loadd(7, planes[t][1], 64);
          _tile_loadd(5, a1 + 64 * t, a.kp);
          _tile_dpbssd(0, 4, 6);
          _tile_dpbssd(1, 4, 7);
          _tile_dpbssd(2, 5, 6);
          _tile_dpbssd(3, 5, 7);
        }
        _tile_stored(0, sums[0], 64);
        _tile_stored(1, sums[1], 64);
        _tile_stored(2, sums[2], 64);
        _tile_stored(3, sums[3], 64);
        for (int64_t i = 0; i < kWideRows && r0 + i < rows; ++i) {
          const int64_t r = r0 + i;
          const int32_t* hi = sums[i < 16 ? 0 : 2] + 16 * (i % 16);
          const int32_t* lo = sums[i < 16 ? 1 : 3] + 16 * (i % 16);
          const __m512i total =
              _mm512_add_epi32(_mm512_slli_epi32(_mm512_load_si512(hi), 6), _mm512_load_si512(lo));
          float* out = y + r * ldy + n0;
          const __m512 before = s == 0 ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(mask, out);
          const __m512 sx = _mm512_mul_ps(d, _mm512_set1_ps(a.scale[r * supers + s]));
          const __m512 o = _mm512_fmadd_ps(_mm512_cvtepi32_ps(total), sx, before);
          _mm512_mask_storeu_ps(out, mask, last ? _mm512_add_ps(o, bv) : o);
        }
      }
    }
  }
}

}  // namespace

extern const WideKernels wide_amx = {int8_rows, int4cb_rows, configure_tiles, release_tiles};

}  // namespace ember::qmatmul
