// What the CPU (and the OS, which must save the wide registers) supports, and
// the instruction-set levels Ember has kernels for.
#pragma once

#include <string>
#include <vector>

namespace ember {

// Kernel levels, lowest first. Each level implies the ones below it:
// avx512_bf16 is AVX-512 with vdpbf16ps (Zen 4, Cooper Lake and later Xeons);
// amx adds the AMX tiles with their bf16 and int8 products (Sapphire Rapids
// and later), usable once the OS has granted this process the tile state.
enum class Isa : int { generic = 0, avx2 = 1, avx512 = 2, avx512_bf16 = 3, amx = 4 };
constexpr int kNumIsas = 5;

struct CpuFeatures {
  bool avx2_fma = false;     // AVX2 + FMA3, with the OS saving YMM state
  bool avx512 = false;       // AVX-512 F/BW/VL/DQ, with the OS saving ZMM state
  bool avx512_vnni = false;  // vpdpbusd (int8 dot products)
  bool avx512_vbmi = false;  // vpermb (byte permutes over a whole zmm)
  bool avx512_bf16 = false;  // vdpbf16ps
  bool amx = false;          // AMX-TILE, -BF16 and -INT8, the OS saving and granting the tile state
};

// Read once (CPUID through the compiler's runtime checks, which also test
// XCR0 for the OS's support of the register state).
const CpuFeatures& cpu_features();

const char* isa_name(Isa isa);
// Parses "generic" | "avx2" | "avx512" | "avx512_bf16" | "amx"; throws
// std::invalid_argument otherwise.
Isa parse_isa(const std::string& name);
bool isa_supported(Isa isa);
Isa best_isa();
std::vector<Isa> supported_isas();

}  // namespace ember
