// The depthwise kernels compiled for generic (baseline x86-64).
#include "ops/conv2d/conv2d_depthwise_impl.h"

namespace ember::conv2d {

extern const DepthwiseKernels depthwise_generic = {dw_fwd, dw_bwd_data, dw_bwd_weight};

}  // namespace ember::conv2d
