// GELU's float32 rows in the dispatch table (core/registry.h).
#include "core/registry.h"
#include "ops/eltwise/eltwise.h"

namespace ember::eltwise {
namespace {

const KernelEntry kRows[] = {
    {"gelu", Device::cpu, Isa::generic, &gelu_generic},
    {"gelu", Device::cpu, Isa::avx2, &gelu_avx2},
    {"gelu", Device::cpu, Isa::avx512, &gelu_avx512},
};
const KernelRegistrar registrar(kRows);

}  // namespace
}  // namespace ember::eltwise
