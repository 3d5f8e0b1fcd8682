// The bf16 GEMM on AMX tiles (packing and epilogue shared with avx512_bf16).
//
// Every tile is configured as 16 rows x 64 bytes. A 32 x 32 block of C lives
// in tiles 0-3 (2 x 2 tiles of 16 x 16 fp32); per 32-wide step of K, tiles 4-5
// take two A tiles (16 rows x 32 bf16) and tiles 6-7 two B tiles (16 k-pairs x
// 16 columns), and four tdpbf16ps do 32 x 32 x 32 multiply-adds. Tile
// configuration is per thread: each thread loads it before its blocks and
// releases the tiles after them. The OS grant for the tile state was asked for
// when the CPU's features were read (core/cpu_features.cpp).
#include <immintrin.h>

#include "core/amx.h"
#include "ops/gemm/gemm_bf16.h"

namespace ember::gemm {
namespace {

void block_amx(const TileStrip& a, const TileStrip& b, int64_t kt_count, bool accumulate, float* acc) {
  const uint16_t* a0 = a.p;
  const uint16_t* a1 = a.p + a.next;
  const uint16_t* b0 = b.p;
  const uint16_t* b1 = b.p + b.next;
  const int64_t as = a.ld * 2, bs = b.ld * 2;  // row strides in bytes
  if (accumulate) {
    _tile_loadd(0, acc, 128);
    _tile_loadd(1, acc + 16, 128);
    _tile_loadd(2, acc + 16 * 32, 128);
    _tile_loadd(3, acc + 16 * 32 + 16, 128);
  } else {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
  }
  for (int64_t kt = 0; kt < kt_count; ++kt) {
    _tile_loadd(4, a0 + kt * a.kstep, as);
    _tile_loadd(6, b0 + kt * b.kstep, bs);
    _tile_loadd(5, a1 + kt * a.kstep, as);
    _tile_loadd(7, b1 + kt * b.kstep, bs);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, acc, 128);
  _tile_stored(1, acc + 16, 128);
  _tile_stored(2, acc + 16 * 32, 128);
  _tile_stored(3, acc + 16 * 32 + 16, 128);
}

void end_amx() {
  release_tiles();
  finish_stores_avx512();
}

}  // namespace

const Bf16Kernels bf16_kernels_amx = {"amx 32x32 (2x2 tiles, tdpbf16ps)", pack_a_bf16_avx512, pack_b_bf16_avx512,
                                      block_amx, store_bf16_avx512, configure_tiles, end_amx, 4096};

}  // namespace ember::gemm
