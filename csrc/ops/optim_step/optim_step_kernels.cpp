// The optimizer-step loops compiled for generic.
#include "ops/optim_step/optim_step_impl.h"

namespace ember::optim {

extern const StepKernels step_kernels_generic = {adam_range, sgd_range};

}  // namespace ember::optim
