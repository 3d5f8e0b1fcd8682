// The int8 quantized matmul on AMX tiles (W8A8, 16 to 32 rows at a time).
//
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
#include <immintrin.h>

#include <cstring>

#include "core/amx.h"
#include "ops/qmatmul/qmatmul.h"

namespace ember::qmatmul {
namespace {

// The float epilogue of the VNNI kernels for one 16-channel block: y = fma(acc - 128 colsum, sx * sw, bias).
void epilogue(const int32_t* acc, int64_t acc_ld, const QuantRows& a, int64_t rows, const Int8Weight& w, int64_t b,
              const float* bias, float* y, int64_t ldy) {
  const int64_t n0 = b * kBlock, left = w.n - n0;
  const __mmask16 mask = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1u);
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

}  // namespace

extern const WideKernels wide_amx = {int8_rows, configure_tiles, release_tiles};

}  // namespace ember::qmatmul
