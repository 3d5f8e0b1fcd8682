// qmatmul's rows in the dispatch table (core/registry.h).
#include "core/registry.h"
#include "ops/qmatmul/qmatmul.h"

namespace ember::qmatmul {
namespace {

// activation quantization and the integer tiles of the quantized matmul
// (qmatmul_cpu.cpp drives them); AVX-512 without VNNI takes the AVX2 set
const KernelEntry kRows[] = {
    {"qmatmul", Device::cpu, Isa::generic, &kernels_generic},
    {"qmatmul", Device::cpu, Isa::avx2, &kernels_avx2},
    {"qmatmul", Device::cpu, Isa::avx512, &kernels_avx512vnni, Feature::avx512_vnni},
    {"qmatmul", Device::cpu, Isa::avx512, &kernels_avx512vbmi, Feature::avx512_vnni_vbmi},
    // many rows at once: AMX tiles (int8 weights)
    {"qmatmul_wide", Device::cpu, Isa::generic, &wide_none},
    {"qmatmul_wide", Device::cpu, Isa::amx, &wide_amx},
};
const KernelRegistrar registrar(kRows);

}  // namespace
}  // namespace ember::qmatmul
