// attention's rows in the dispatch table (core/registry.h).
#include "core/registry.h"
#include "ops/attention/attention.h"

namespace ember::attention {

namespace {

const KernelEntry kRows[] = {
    {"attention", Device::cpu, Isa::generic, &blocks_generic},
    {"attention", Device::cpu, Isa::avx2, &blocks_avx2},
    {"attention", Device::cpu, Isa::avx512, &blocks_avx512},
};
const KernelRegistrar registrar(kRows);

}  // namespace
}  // namespace ember::attention
