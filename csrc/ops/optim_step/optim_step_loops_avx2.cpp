// The optimizer-step loops compiled for avx2.
#include "ops/optim_step/optim_step_loops_impl.h"

namespace ember::optim_step {

extern const Loops loops_avx2 = {adam_range, sgd_range};

}  // namespace ember::optim_step
