// The 2x2, stride-2 max-pooling rules for outputs [j0, j1) of a row pair, one output at a
// time (pool2d.h: RowKernels): the generic row kernel, and the vector kernels' last outputs.
// Included only by pool2d_rows_<isa>.cpp; anonymous namespace: one copy per ISA.
#pragma once

#include <cmath>
#include <cstdint>

namespace ember::pool2d {
namespace {

inline void max2x2_outputs(const float* r0, const float* r1, int64_t j0, int64_t j1, int64_t row0, int64_t w,
                           float* y, int64_t* idx) {
  for (int64_t j = j0; j < j1; ++j) {
    const int64_t c = 2 * j;
    // The first tap needs no test: any value beats the initial -inf or is NaN.
    float best = r0[c];
    int64_t bi = row0 + c;
    const float v1 = r0[c + 1], v2 = r1[c], v3 = r1[c + 1];
    if (v1 > best || std::isnan(v1)) best = v1, bi = row0 + c + 1;
    if (v2 > best || std::isnan(v2)) best = v2, bi = row0 + w + c;
    if (v3 > best || std::isnan(v3)) best = v3, bi = row0 + w + c + 1;
    y[j] = best;
    if (idx) idx[j] = bi;
  }
}

}  // namespace
}  // namespace ember::pool2d
