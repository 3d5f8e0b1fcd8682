// cross_entropy's rows in the dispatch table (core/registry.h).
#include "core/registry.h"
#include "ops/cross_entropy/cross_entropy.h"

namespace ember::cross_entropy {
namespace {

// the row kernels of softmax cross-entropy (cross_entropy_cpu.cpp drives them)
const KernelEntry kRows[] = {
    {"cross_entropy", Device::cpu, Isa::generic, &row_kernels_generic},
    {"cross_entropy", Device::cpu, Isa::avx2, &row_kernels_avx2},
    {"cross_entropy", Device::cpu, Isa::avx512, &row_kernels_avx512},
};
const KernelRegistrar registrar(kRows);

}  // namespace
}  // namespace ember::cross_entropy
