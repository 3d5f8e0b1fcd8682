// The optimizer-step loops compiled for avx512.
#include "ops/optim_step/optim_step_impl.h"

namespace ember::optim {

extern const StepKernels step_kernels_avx512 = {adam_range, sgd_range};

}  // namespace ember::optim
