// conv2d's rows in the dispatch table (core/registry.h).
#include "core/registry.h"
#include "ops/conv2d/conv2d_direct.h"
#include "ops/conv2d/conv2d_winograd.h"

namespace ember::conv2d {
namespace {

const KernelEntry kRows[] = {
    // direct kernels for depthwise and few-channel convolutions (conv2d_direct.cpp drives them)
    {"conv2d_direct", Device::cpu, Isa::generic, &direct_generic},
    {"conv2d_direct", Device::cpu, Isa::avx2, &direct_avx2},
    {"conv2d_direct", Device::cpu, Isa::avx512, &direct_avx512},
    // the Winograd F(2x2, 3x3) tile transforms (conv2d_winograd.cpp drives them)
    {"conv2d_winograd", Device::cpu, Isa::generic, &winograd_generic},
    {"conv2d_winograd", Device::cpu, Isa::avx2, &winograd_avx2},
    {"conv2d_winograd", Device::cpu, Isa::avx512, &winograd_avx512},
};
const KernelRegistrar registrar(kRows);

}  // namespace
}  // namespace ember::conv2d
