// pool2d's rows in the dispatch table (core/registry.h).
#include "core/registry.h"
#include "ops/pool2d/pool2d.h"

namespace ember::pool2d {
namespace {

// the row kernel of 2x2 / stride-2 max pooling (pool2d_cpu.cpp drives it)
const KernelEntry kRows[] = {
    {"pool2d", Device::cpu, Isa::generic, &row_kernels_generic},
    {"pool2d", Device::cpu, Isa::avx2, &row_kernels_avx2},
    {"pool2d", Device::cpu, Isa::avx512, &row_kernels_avx512},
};
const KernelRegistrar registrar(kRows);

}  // namespace
}  // namespace ember::pool2d
