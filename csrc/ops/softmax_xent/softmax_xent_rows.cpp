// The softmax cross-entropy row kernels compiled for generic.
#include "ops/softmax_xent/softmax_xent_impl.h"

namespace ember::xent {

extern const RowKernels row_kernels_generic = {row_fwd, row_bwd};

}  // namespace ember::xent
