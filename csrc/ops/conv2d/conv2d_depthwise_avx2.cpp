// The depthwise kernels compiled for avx2.
#include "ops/conv2d/conv2d_depthwise_impl.h"

namespace ember::conv2d {

extern const DepthwiseKernels depthwise_avx2 = {dw_fwd, dw_bwd_data, dw_bwd_weight};

}  // namespace ember::conv2d
