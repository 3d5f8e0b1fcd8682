// The float32 GELU kernels (gelu_impl.h) compiled for avx2.
#include "ops/eltwise/eltwise.h"
#include "ops/eltwise/gelu_impl.h"

namespace ember::eltwise {

extern const GeluKernels gelu_avx2 = {gelu_fwd_block, gelu_bwd_block};

}  // namespace ember::eltwise
