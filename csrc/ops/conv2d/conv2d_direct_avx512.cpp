// The direct convolution kernels compiled for avx512.
#include "ops/conv2d/conv2d_direct_impl.h"

namespace ember::conv2d {

extern const DirectKernels direct_avx512 = {dw_fwd, dw_bwd_data, dw_bwd_weight, smallc_fwd, smallc_bwd_weight};

}  // namespace ember::conv2d
