// The bf16 convolution's im2col packers (conv2d_bf16.cpp): AVX-512 (masked 16-bit loads), called
// only at the levels with bf16 products.
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "ops/conv2d/conv2d_internal.h"
#include "ops/gemm/gemm_bf16.h"

namespace ember::conv2d {
namespace {

using gemm::kBf16Tile;

// Up to 32 consecutive output pixels from `first`, as runs within output rows, and the values one
// im2col row (one tap of one channel) takes on them.
class Strip {
 public:
  Strip(const Im2colBf16& m, int64_t first, int64_t width) : m_(m), g_(*m.g) {
    const int64_t pixels = g_.oh * g_.ow;
    for (int64_t j = 0; j < width && first + j < pixels; ++runs_) {
      const int64_t pix = first + j, i = pix / g_.ow, o0 = pix % g_.ow;
      const int64_t n = std::min(width - j, std::min(g_.ow - o0, pixels - pix));
      lane_[runs_] = j, count_[runs_] = n, row_[runs_] = i, col_[runs_] = o0;
      j += n;
    }
    if (g_.sw == 1) tabulate();
  }

  // Row k's values on the strip's pixels (zero past the image, past the strip and for k >= K),
  // `tap` being k % (KH * KW), which the callers count along: at unit stride one masked load per
  // run from the tap's table (lanes outside the image or the run are never read), element by
  // element otherwise.
  __m512i row(int64_t k, int64_t tap) const {
    __m512i v = _mm512_setzero_si512();
    if (k >= g_.c * g_.kh * g_.kw) return v;
    const uint16_t* xc = m_.x + m_.tap[3 * k];
    if (g_.sw == 1) {
      const Load* load = &loads_[tap * runs_];
      for (int64_t r = 0; r < runs_; ++r)
        if (load[r].mask) v = _mm512_mask_loadu_epi16(v, load[r].mask, xc + load[r].offset);
      return v;
    }
    const int64_t pdh = m_.tap[3 * k + 1], qdw = m_.tap[3 * k + 2];
    alignas(64) uint16_t lanes[32] = {};
    for (int64_t r = 0; r < runs_; ++r) {
      const int64_t ih = row_[r] * g_.sh - g_.pt + pdh;
      if (ih < 0 || ih >= g_.h) continue;
      const int64_t iw0 = col_[r] * g_.sw - g_.pl + qdw;  // input column of the run's first lane
      for (int64_t l = 0; l < count_[r]; ++l) {
        const int64_t iw = iw0 + l * g_.sw;
        if (iw >= 0 && iw < g_.w) lanes[lane_[r] + l] = xc[ih * g_.w + iw];
      }
    }
    return _mm512_load_si512(lanes);
  }

 private:
  struct Load {
    int64_t offset;  // from the channel's first value to the value lane 0 would take
    __mmask32 mask;  // the run's lanes inside the image (none: the run's input row is outside)
  };

  // At unit stride, the load of every run for every kernel tap (p, q), the same for all channels.
  void tabulate() {
    const int64_t taps = g_.kh * g_.kw;
    loads_.resize(static_cast<size_t>(taps * runs_));
    for (int64_t t = 0; t < taps; ++t)
      for (int64_t r = 0; r < runs_; ++r) {
        Load& load = loads_[t * runs_ + r];
        load = {0, 0};
        const int64_t ih = row_[r] * g_.sh - g_.pt + m_.tap[3 * t + 1];
        if (ih < 0 || ih >= g_.h) continue;
        const int64_t iw0 = col_[r] - g_.pl + m_.tap[3 * t + 2];
        const int64_t lo = std::max<int64_t>(0, -iw0), hi = std::min<int64_t>(count_[r], g_.w - iw0);
        if (hi <= lo) continue;
        load.mask = static_cast<__mmask32>(((uint64_t{1} << (hi - lo)) - 1) << (lane_[r] + lo));
        load.offset = ih * g_.w + iw0 - lane_[r];
      }
  }

  const Im2colBf16& m_;
  const Geometry& g_;
  int64_t lane_[33], count_[33], row_[33], col_[33], runs_ = 0;  // at most one run per pixel
  std::vector<Load> loads_;
};

}  // namespace

void pack_im2col_bf16(const void* ctx, int64_t c0, int64_t tiles, int64_t kt, uint16_t* out) {
  const Im2colBf16& m = *static_cast<const Im2colBf16*>(ctx);
  // Word permutes that interleave two rows' columns 0-15 (and 16-31) into a tile row of pairs.
  alignas(64) uint16_t pick[2][32];
  for (int h = 0; h < 2; ++h)
    for (int j = 0; j < 16; ++j) {
      pick[h][2 * j] = static_cast<uint16_t>(16 * h + j);           // row k's column 16h + j
      pick[h][2 * j + 1] = static_cast<uint16_t>(32 + 16 * h + j);  // row k + 1's
    }
  const __m512i first = _mm512_load_si512(pick[0]), second = _mm512_load_si512(pick[1]);
  for (int64_t t = 0; t < tiles; t += 2) {
    const Strip strip(m, c0 + 16 * t, std::min<int64_t>(32, 16 * (tiles - t)));
    uint16_t* tile0 = out + t * kt * kBf16Tile;
    const int64_t taps = m.g->kh * m.g->kw;
    int64_t tap = 0;  // k % taps
    for (int64_t k = 0; k < kt * 32; k += 2) {  // rows k and k + 1 interleaved into one row of pairs
      const __m512i r0 = strip.row(k, tap);
      tap = tap + 1 == taps ? 0 : tap + 1;
      const __m512i r1 = strip.row(k + 1, tap);
      tap = tap + 1 == taps ? 0 : tap + 1;
      const int64_t o = (k / 32) * kBf16Tile + (k % 32) / 2 * 32;
      _mm512_store_si512(tile0 + o, _mm512_permutex2var_epi16(r0, first, r1));  // columns 0-15
      if (t + 1 < tiles)  // columns 16-31 to the second tile
        _mm512_store_si512(tile0 + kt * kBf16Tile + o, _mm512_permutex2var_epi16(r0, second, r1));
    }
  }
}

void pack_im2col_rows_bf16(const void* ctx, int64_t r0, int64_t tiles, int64_t kt, uint16_t* out) {
  const Im2colBf16& m = *static_cast<const Im2colBf16*>(ctx);
  for (int64_t s = 0; s < kt; ++s) {  // 32 pixels: one k-tile of every row tile
    const Strip strip(m, 32 * s, 32);
    const int64_t taps = m.g->kh * m.g->kw;
    int64_t tap = r0 % taps;  // k % taps of row k = r0 + 16 * t + r
    for (int64_t t = 0; t < tiles; ++t)
      for (int r = 0; r < 16; ++r) {
        _mm512_store_si512(out + (t * kt + s) * kBf16Tile + r * 32, strip.row(r0 + 16 * t + r, tap));
        tap = tap + 1 == taps ? 0 : tap + 1;
      }
  }
}

}  // namespace ember::conv2d
