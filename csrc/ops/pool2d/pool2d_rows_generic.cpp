// The 2x2, stride-2 max-pooling row kernel in plain C++ (any x86-64): the
// selection rules spelled out per output.
#include "ops/pool2d/pool2d.h"
#include "ops/pool2d/pool2d_rows.h"

namespace ember::pool2d {
namespace {

void max2x2_row(const float* r0, const float* r1, int64_t ow, int64_t row0, int64_t w, float* y, int64_t* idx) {
  max2x2_outputs(r0, r1, 0, ow, row0, w, y, idx);
}

}  // namespace

extern const RowKernels row_kernels_generic = {max2x2_row};

}  // namespace ember::pool2d
