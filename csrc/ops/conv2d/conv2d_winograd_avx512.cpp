// The Winograd tile transforms compiled for avx512.
#include "ops/conv2d/conv2d_winograd_impl.h"

namespace ember::conv2d {

extern const WinogradKernels winograd_avx512 = {input, output, dy_transform};

}  // namespace ember::conv2d
