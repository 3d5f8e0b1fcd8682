// The softmax cross-entropy row kernels compiled for avx512.
#include "ops/softmax_xent/softmax_xent_impl.h"

namespace ember::xent {

extern const RowKernels row_kernels_avx512 = {row_fwd, row_bwd};

}  // namespace ember::xent
