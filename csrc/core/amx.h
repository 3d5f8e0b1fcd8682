// AMX tile configuration shared by the kernels that use the tiles. Included only by *_amx.cpp
// files (compiled with the AMX flags, run only at the amx ISA level); everything is in an
// anonymous namespace, so each translation unit keeps its own copy.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace ember {
namespace {

struct alignas(64) TileConfig {
  uint8_t palette;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

// Palette 1, tiles 0-7 of 16 rows x 64 bytes. A constant in memory: GCC does not see that
// ldtilecfg reads all 64 bytes, and drops stores into a local configuration.
constexpr TileConfig kTiles16x64 = {1, 0, {}, {64, 64, 64, 64, 64, 64, 64, 64}, {16, 16, 16, 16, 16, 16, 16, 16}};

// Tile configuration is per thread: load it before a thread's first tile instruction, release
// the tiles after its last.
inline void configure_tiles() { _tile_loadconfig(&kTiles16x64); }
inline void release_tiles() { _tile_release(); }

}  // namespace
}  // namespace ember
