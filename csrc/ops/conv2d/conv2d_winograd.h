// Winograd F(2x2, 3x3) tile transforms, the per-ISA part of the Winograd
// convolutions (conv2d_winograd.cpp drives them and runs the GEMMs between).
//
// A block is nti rows of tw tiles (tb = nti * tw tiles), each tile a 2x2 block
// of output read from a 4x4 block of input; the transforms are vectorised
// across the tiles of a row, a register's worth at a time (8 with AVX2, 16
// with AVX-512). The 16 positions xi of the
// 4x4 Winograd domain are laid out one after another, each a matrix over
// (channel, tile), so that every xi is one GEMM's operand:
//
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
//   A^T = [1 1 1 0; 0 1 -1 -1]
//   G   = [1 0; 1/2 1/2; 1/2 -1/2; 0 1]   (F(3x3, 2x2), for the weight gradient)
//
// One set per ISA: conv2d_winograd_<isa>.cpp, from conv2d_winograd_impl.h.
#pragma once

#include <cstdint>

namespace ember::conv2d {

// Readable floats a caller leaves after the padded input planes given to `input`.
constexpr int64_t kWinogradSlack = 64;

struct WinogradKernels {
  // xp holds cpg planes of (2*nti + 2) x wp padded input (plane after plane,
  // then kWinogradSlack readable floats); v[(xi*cpg + c)*tb + tile] =
  // (B^T d B)[xi] of channel c's 4x4 block of that tile.
  void (*input)(const float* xp, int64_t cpg, int64_t wp, int64_t nti, int64_t tw, float* v);
  // m[(xi*opg + o)*tb + tile] holds M; y[o*plane + (i0 + i)*ow + j] =
  // act(bias[o] + (A^T M A)) for the tiles' outputs inside oh x ow.
  void (*output)(const float* m, int64_t opg, int64_t nti, int64_t tw, const float* bias, bool relu, int64_t i0,
                 int64_t oh, int64_t ow, int64_t plane, float* y);
  // For the weight gradient, F(3x3, 2x2) with dy's 2x2 tiles as the filter:
  // t[(xi*n_out + o)*tb + tile] = (G dy G^T)[xi] of output plane o's 2x2
  // block at output rows i0 + 2*ti (zeros past oh x ow).
  void (*dy)(const float* dy, int64_t n_out, int64_t nti, int64_t tw, int64_t i0, int64_t oh, int64_t ow,
             int64_t plane, float* t);
};

extern const WinogradKernels winograd_generic;
extern const WinogradKernels winograd_avx2;
extern const WinogradKernels winograd_avx512;

}  // namespace ember::conv2d
