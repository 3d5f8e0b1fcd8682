// The softmax cross-entropy row kernels compiled for generic.
#include "ops/cross_entropy/cross_entropy_rows_impl.h"

namespace ember::cross_entropy {

extern const RowKernels row_kernels_generic = {row_fwd, row_bwd};

}  // namespace ember::cross_entropy
