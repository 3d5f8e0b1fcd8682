// The Winograd tile transforms compiled for generic.
#include "ops/conv2d/conv2d_winograd_impl.h"

namespace ember::conv2d {

extern const WinogradKernels winograd_generic = {input, output, dy_transform};

}  // namespace ember::conv2d
