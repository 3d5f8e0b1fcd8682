// optim_step's rows in the dispatch table (core/registry.h).
#include "core/registry.h"
#include "ops/optim_step/optim_step.h"

namespace ember::optim_step {
namespace {

// the element loops of the fused optimizer steps (optim_step_cpu.cpp drives them)
const KernelEntry kRows[] = {
    {"optim_step", Device::cpu, Isa::generic, &loops_generic},
    {"optim_step", Device::cpu, Isa::avx2, &loops_avx2},
    {"optim_step", Device::cpu, Isa::avx512, &loops_avx512},
};
const KernelRegistrar registrar(kRows);

}  // namespace
}  // namespace ember::optim_step
