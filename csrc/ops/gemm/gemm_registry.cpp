// gemm's rows in the dispatch table (core/registry.h).
#include "core/registry.h"
#include "ops/gemm/gemm.h"
#include "ops/gemm/gemm_bf16.h"
#include "ops/gemm/gemm_ukernel.h"

namespace ember::gemm {
namespace {

const KernelEntry kRows[] = {
    // micro-kernels and blocking sizes for the packed GEMM driver (gemm_cpu.cpp)
    {"gemm", Device::cpu, Isa::generic, &ukernel_generic},
    {"gemm", Device::cpu, Isa::avx2, &ukernel_avx2},
    {"gemm", Device::cpu, Isa::avx512, &ukernel_avx512},
    // the bf16 GEMM's packed paths (gemm_bf16_cpu.cpp); below avx512_bf16 it widens to fp32
    {"gemm_bf16", Device::cpu, Isa::generic, &bf16_kernels_widened},
    {"gemm_bf16", Device::cpu, Isa::avx512_bf16, &bf16_kernels_avx512bf16},
    {"gemm_bf16", Device::cpu, Isa::amx, &bf16_kernels_amx},
    // bf16 <-> fp32 conversion
    {"convert_bf16", Device::cpu, Isa::generic, &bf16_convert_generic},
    {"convert_bf16", Device::cpu, Isa::avx512, &bf16_convert_avx512},
    // a register-only FMA loop measuring the machine's fp32 peak (ember._C.measure_fma_peak)
    {"fma_peak", Device::cpu, Isa::generic, reinterpret_cast<const void*>(&fma_peak_generic)},
    {"fma_peak", Device::cpu, Isa::avx2, reinterpret_cast<const void*>(&fma_peak_avx2)},
    {"fma_peak", Device::cpu, Isa::avx512, reinterpret_cast<const void*>(&fma_peak_avx512)},
};
const KernelRegistrar registrar(kRows);

}  // namespace
}  // namespace ember::gemm
