#include "core/registry.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "core/check.h"
#include "ops/conv2d/conv2d_direct.h"
#include "ops/gemm/gemm.h"
#include "ops/gemm/gemm_ukernel.h"
#include "ops/optim_step/optim_step.h"
#include "ops/pool2d/pool2d.h"
#include "ops/qmatmul/qmatmul.h"
#include "ops/softmax_xent/softmax_xent.h"

namespace ember {

namespace {

// One row group per op. Keep each group ordered from generic up.
const KernelEntry kTable[] = {
    // gemm: micro-kernels and blocking sizes for the packed GEMM driver (gemm_cpu.cpp)
    {"gemm", Device::cpu, Isa::generic, &gemm::ukernel_generic},
    {"gemm", Device::cpu, Isa::avx2, &gemm::ukernel_avx2},
    {"gemm", Device::cpu, Isa::avx512, &gemm::ukernel_avx512},
    // fma_peak: a register-only FMA loop measuring the machine's fp32 peak
    {"fma_peak", Device::cpu, Isa::generic, reinterpret_cast<const void*>(&gemm::fma_peak_generic)},
    {"fma_peak", Device::cpu, Isa::avx2, reinterpret_cast<const void*>(&gemm::fma_peak_avx2)},
    {"fma_peak", Device::cpu, Isa::avx512, reinterpret_cast<const void*>(&gemm::fma_peak_avx512)},
    // pool2d: the row kernel of 2x2 / stride-2 max pooling (pool2d_cpu.cpp drives it)
    {"pool2d", Device::cpu, Isa::generic, &pool2d::ukernels_generic},
    {"pool2d", Device::cpu, Isa::avx512, &pool2d::ukernels_avx512},
    // conv2d_direct: direct kernels for depthwise and few-channel convolutions (conv2d_cpu.cpp drives them)
    {"conv2d_direct", Device::cpu, Isa::generic, &conv2d::direct_generic},
    {"conv2d_direct", Device::cpu, Isa::avx2, &conv2d::direct_avx2},
    {"conv2d_direct", Device::cpu, Isa::avx512, &conv2d::direct_avx512},
    // optim_step: the element loops of the fused optimizer steps (optim_step_cpu.cpp drives them)
    {"optim_step", Device::cpu, Isa::generic, &optim::step_kernels_generic},
    {"optim_step", Device::cpu, Isa::avx2, &optim::step_kernels_avx2},
    {"optim_step", Device::cpu, Isa::avx512, &optim::step_kernels_avx512},
    // qmatmul: activation quantization and the integer tiles of the quantized matmul
    // (qmatmul_cpu.cpp drives them); AVX-512 without VNNI takes the AVX2 set
    {"qmatmul", Device::cpu, Isa::generic, &qmatmul::kernels_generic},
    {"qmatmul", Device::cpu, Isa::avx2, &qmatmul::kernels_avx2},
    {"qmatmul", Device::cpu, Isa::avx512, &qmatmul::kernels_avx512vnni, Feature::avx512_vnni},
    // softmax_xent: the row kernels of softmax cross-entropy (softmax_xent_cpu.cpp drives them)
    {"softmax_xent", Device::cpu, Isa::generic, &xent::row_kernels_generic},
    {"softmax_xent", Device::cpu, Isa::avx2, &xent::row_kernels_avx2},
    {"softmax_xent", Device::cpu, Isa::avx512, &xent::row_kernels_avx512},
};

std::atomic<int> g_active{-1};

bool feature_present(Feature f) {
  switch (f) {
    case Feature::avx512_vnni:
      return cpu_features().avx512_vnni;
    case Feature::none:
      break;
  }
  return true;
}

}  // namespace

void init_isa_from_env() {
  const char* env = std::getenv("EMBER_ISA");
  if (env == nullptr || *env == '\0') {
    g_active.store(static_cast<int>(best_isa()));
    return;
  }
  Isa isa;
  try {
    isa = parse_isa(env);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(detail::concat("EMBER_ISA: ", e.what()));
  }
  set_active_isa(isa);
}

Isa active_isa() {
  int v = g_active.load(std::memory_order_relaxed);
  if (v < 0) return best_isa();
  return static_cast<Isa>(v);
}

void set_active_isa(Isa isa) {
  if (!isa_supported(isa)) {
    std::string avail;
    for (Isa s : supported_isas()) avail += std::string(avail.empty() ? "" : ", ") + isa_name(s);
    throw std::invalid_argument(detail::concat("ISA '", isa_name(isa),
                                               "' is not supported by this CPU (available: ", avail, ")"));
  }
  g_active.store(static_cast<int>(isa));
}

const void* lookup_impl(const char* op, Device device, Isa isa) {
  const KernelEntry* best = nullptr;
  for (const KernelEntry& e : kTable) {
    if (e.device != device || std::strcmp(e.op, op) != 0 || e.isa > isa || !feature_present(e.feature)) continue;
    if (best == nullptr || e.isa > best->isa) best = &e;
  }
  EMBER_ASSERT(best != nullptr, "no kernel registered for op '", op, "'");
  return best->impl;
}

std::vector<std::pair<std::string, std::string>> registered_kernels() {
  std::vector<std::pair<std::string, std::string>> out;
  for (const KernelEntry& e : kTable)
    if (e.device == Device::cpu)
      out.emplace_back(e.op, std::string(isa_name(e.isa)) + (e.feature == Feature::avx512_vnni ? "+vnni" : ""));
  return out;
}

}  // namespace ember
