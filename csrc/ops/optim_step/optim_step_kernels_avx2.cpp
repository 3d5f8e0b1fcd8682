// The optimizer-step loops compiled for avx2.
#include "ops/optim_step/optim_step_impl.h"

namespace ember::optim {

extern const StepKernels step_kernels_avx2 = {adam_range, sgd_range};

}  // namespace ember::optim
