// The float32 GELU kernels (gelu_impl.h) compiled for generic.
#include "ops/eltwise/eltwise.h"
#include "ops/eltwise/gelu_impl.h"

namespace ember::eltwise {

extern const GeluKernels gelu_generic = {gelu_fwd_block, gelu_bwd_block};

}  // namespace ember::eltwise
