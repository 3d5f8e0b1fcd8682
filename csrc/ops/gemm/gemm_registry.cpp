// gemm's rows in the dispatch table (core/registry.h).
#include "core/registry.h"
#include "ops/gemm/gemm.h"
#include "ops/gemm/gemm_ukernel.h"

namespace ember::gemm {
namespace {

const KernelEntry kRows[] = {
    // micro-kernels and blocking sizes for the packed GEMM driver (gemm_cpu.cpp)
    {"gemm", Device::cpu, Isa::generic, &ukernel_generic},
    {"gemm", Device::cpu, Isa::avx2, &ukernel_avx2},
    {"gemm", Device::cpu, Isa::avx512, &ukernel_avx512},
    // a register-only FMA loop measuring the machine's fp32 peak (ember._C.measure_fma_peak)
    {"fma_peak", Device::cpu, Isa::generic, reinterpret_cast<const void*>(&fma_peak_generic)},
    {"fma_peak", Device::cpu, Isa::avx2, reinterpret_cast<const void*>(&fma_peak_avx2)},
    {"fma_peak", Device::cpu, Isa::avx512, reinterpret_cast<const void*>(&fma_peak_avx512)},
};
const KernelRegistrar registrar(kRows);

}  // namespace
}  // namespace ember::gemm
