// gemm_bf16_ref: the oracle of the bf16 GEMM paths, and the bf16 <-> fp32
// conversions.
//
// Plain loops over the strided views, one double accumulator per element of C
// (each product of two bf16 values is exact in double as in fp32), no threads,
// no intrinsics.
#include <cstring>

#include "ops/gemm/gemm_bf16.h"

namespace ember::gemm {

namespace {
float widen(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}
}  // namespace

void f32_from_bf16(const uint16_t* x, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = widen(x[i]);
}

void bf16_from_f32(const float* x, int64_t n, uint16_t* out) {
  // Branch-free, so that the compiler vectorises it.
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, &x[i], sizeof bits);
    // Round to nearest, ties to even: add 0x7fff plus the lowest kept bit. An overflow past the
    // largest finite value correctly becomes infinity.
    const uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
    // A NaN keeps its sign and the top of its payload, made quiet (rounding could carry it into
    // infinity).
    const uint32_t nan = (bits >> 16) | 0x0040u;
    out[i] = static_cast<uint16_t>((bits & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
  }
}

const Bf16Convert bf16_convert_generic = {bf16_from_f32, f32_from_bf16};

void gemm_bf16_ref(const GemmBf16Args& g) {
  const int64_t M = g.c.rows, N = g.c.cols, K = g.a.cols;
  const bool skip_product = (K == 0 || g.alpha == 0.0f);
  for (int64_t i = 0; i < M; ++i) {
    float* crow = g.c.data + i * g.c.ld;
    for (int64_t j = 0; j < N; ++j) {
      double acc = 0.0;
      if (!skip_product)
        for (int64_t p = 0; p < K; ++p)
          acc += static_cast<double>(widen(g.a.data[i * g.a.rs + p * g.a.cs])) *
                 static_cast<double>(widen(g.b.data[p * g.b.rs + j * g.b.cs]));
      double v = skip_product ? 0.0 : static_cast<double>(g.alpha) * acc;  // no product term: not NaN * 0
      if (g.beta != 0.0f) v += static_cast<double>(g.beta) * static_cast<double>(crow[j]);
      if (g.bias) v += static_cast<double>(g.bias[j]);
      if (g.relu && v < 0.0) v = 0.0;  // NaN compares false: it propagates
      crow[j] = static_cast<float>(v);
    }
  }
}

}  // namespace ember::gemm
