// The optimizer-step loops compiled for avx512.
#include "ops/optim_step/optim_step_loops_impl.h"

namespace ember::optim_step {

extern const Loops loops_avx512 = {adam_range, sgd_range};

}  // namespace ember::optim_step
