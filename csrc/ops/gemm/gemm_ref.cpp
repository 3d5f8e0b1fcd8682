// gemm_ref: the oracle for every fast GEMM path.
//
// Plain loops over the strided views, one double accumulator per element of C,
// no threads, no intrinsics, no blocking. It deliberately does not round the
// product to float32 before adding beta * C, so a fast kernel is compared with
// the exact-as-practical result, not with another float32 ordering.
#include "ops/gemm/gemm.h"

#include <algorithm>

namespace ember::gemm {

void gemm_ref(const GemmArgs& g) {
  const int64_t M = g.c.rows, N = g.c.cols, K = g.a.cols;
  const bool skip_product = (K == 0 || g.alpha == 0.0f);
  for (int64_t i = 0; i < M; ++i) {
    float* crow = g.c.data + i * g.c.ld;
    for (int64_t j = 0; j < N; ++j) {
      double acc = 0.0;
      if (!skip_product)
        for (int64_t p = 0; p < K; ++p)
          acc += static_cast<double>(g.a.at(i, p)) * static_cast<double>(g.b.at(p, j));
      double v = skip_product ? 0.0 : static_cast<double>(g.alpha) * acc;  // no product term: not NaN * 0
      if (g.beta != 0.0f) v += static_cast<double>(g.beta) * static_cast<double>(crow[j]);
      if (g.bias) v += static_cast<double>(g.bias[j]);
      // ReLU that propagates NaN, as PyTorch's does.
      if (g.relu && v < 0.0) v = 0.0;
      crow[j] = static_cast<float>(v);
    }
  }
}

}  // namespace ember::gemm
