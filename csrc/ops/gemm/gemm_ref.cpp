// gemm_ref and gemm_bf16_ref: the oracles of every fast GEMM path (fp32 and bf16 inputs).
//
// Plain loops over the strided views, one double accumulator per element of C,
// no threads, no intrinsics, no blocking. It deliberately does not round the
// product to float32 before adding beta * C, so a fast kernel is compared with
// the exact-as-practical result, not with another float32 ordering.
#include "ops/gemm/gemm.h"
#include "ops/gemm/gemm_bf16.h"

namespace ember::gemm {
namespace {

// C = act(alpha * sum_p a(i, p) b(p, j) + beta * C + bias) in double, for any element readers.
template <class Args, class A, class B>
void ref_loops(const Args& g, int64_t K, const float* row_bias, A a, B b) {
  const int64_t M = g.c.rows, N = g.c.cols;
  const bool skip_product = (K == 0 || g.alpha == 0.0f);
  for (int64_t i = 0; i < M; ++i) {
    float* crow = g.c.data + i * g.c.ld;
    for (int64_t j = 0; j < N; ++j) {
      double acc = 0.0;
      if (!skip_product)
        for (int64_t p = 0; p < K; ++p) acc += a(i, p) * b(p, j);
      double v = skip_product ? 0.0 : static_cast<double>(g.alpha) * acc;  // no product term: not NaN * 0
      if (g.beta != 0.0f) v += static_cast<double>(g.beta) * static_cast<double>(crow[j]);
      if (g.bias) v += static_cast<double>(g.bias[j]);
      if (row_bias) v += static_cast<double>(row_bias[i]);
      // ReLU that propagates NaN, as PyTorch's does.
      if (g.relu && v < 0.0) v = 0.0;
      crow[j] = static_cast<float>(v);
    }
  }
}

double widen(uint16_t h) {
  float f;
  f32_from_bf16(&h, 1, &f);
  return f;
}

}  // namespace

void gemm_ref(const GemmArgs& g) {
  ref_loops(g, g.a.cols, nullptr, [&](int64_t i, int64_t p) { return static_cast<double>(g.a.at(i, p)); },
            [&](int64_t p, int64_t j) { return static_cast<double>(g.b.at(p, j)); });
}

void gemm_bf16_ref(const GemmBf16Args& g) {
  ref_loops(g, g.a.cols, g.row_bias, [&](int64_t i, int64_t p) { return widen(g.a.data[i * g.a.rs + p * g.a.cs]); },
            [&](int64_t p, int64_t j) { return widen(g.b.data[p * g.b.rs + j * g.b.cs]); });
}

}  // namespace ember::gemm
