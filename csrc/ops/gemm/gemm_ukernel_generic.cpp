// Portable GEMM micro-kernel gemm_ukernel_generic_4x8.
//
// The same contract as the SIMD kernels, in plain C++: a 4 x 8 tile of C
// accumulated in a local array that the compiler keeps in (baseline SSE2)
// registers, one rank-1 update per k step, the epilogue applied once on the
// way out. It documents the idea and runs on any CPU; the blocking and
// packing around it (gemm_cpu.cpp) are shared with the fast kernels.

#include "ops/gemm/gemm.h"
#include "ops/gemm/gemm_ukernel.h"
#include "ops/gemm/gemm_ukernel_tables.h"

namespace ember::gemm {
namespace {

constexpr int kMR = 4;
constexpr int kNR = 8;

template <int M, bool PACKED>
void ukernel(int64_t k, const float* a, int64_t rs_a, int64_t cs_a, const float* b, int64_t rs_b,
             float* c, int64_t ldc, int m, int n, const Epilogue& ep) {
  const int rows = PACKED ? m : M;
  const int cols = n;
  const int64_t a_rs = PACKED ? 1 : rs_a;
  const int64_t a_cs = PACKED ? kMR : cs_a;
  float acc[M][kNR] = {};
  for (int64_t p = 0; p < k; ++p) {
    float bv[kNR];
    // B (packed or in place) is read only up to n columns.
    for (int j = 0; j < kNR; ++j) bv[j] = j < cols ? b[j] : 0.0f;
    for (int i = 0; i < M; ++i) {
      const float av = a[i * a_rs];
      for (int j = 0; j < kNR; ++j) acc[i][j] += av * bv[j];
    }
    a += a_cs;
    b += rs_b;
  }
  for (int i = 0; i < rows; ++i) {
    float* crow = c + i * ldc;
    for (int j = 0; j < cols; ++j) {
      float x = acc[i][j] * ep.alpha;
      if (ep.beta != 0.0f) x += ep.beta * crow[j];
      if (ep.bias) x += ep.bias[j];
      if (ep.relu && x < 0.0f) x = 0.0f;  // NaN compares false: it propagates
      crow[j] = x;
    }
  }
}

// Small M: one row of B at a time, a rank-1 update of the m x n block.
template <int M>
void smallm(int64_t k, const float* a, int64_t rs_a, int64_t cs_a, const float* b, int64_t rs_b, int64_t n,
            float* acc) {
  for (int64_t p = 0; p < k; ++p) {
    const float* brow = b + p * rs_b;
    for (int i = 0; i < M; ++i) {
      const float av = a[i * rs_a + p * cs_a];
      float* arow = acc + i * n;
      for (int64_t j = 0; j < n; ++j) arow[j] += av * brow[j];
    }
  }
}

// Small M, transposed B: one dot product per element of the m x n block.
template <int M>
void smallm_dot(int64_t k, const float* a, int64_t rs_a, const float* bt, int64_t ld_bt, int64_t n, float* acc) {
  for (int64_t j = 0; j < n; ++j)
    for (int i = 0; i < M; ++i) {
      float s = 0.0f;
      for (int64_t p = 0; p < k; ++p) s += a[i * rs_a + p] * bt[j * ld_bt + p];
      acc[i * n + j] = s;
    }
}

}  // namespace

extern const Ukernel ukernel_generic = {
    "generic_4x8", kMR, kNR,
    /*kc=*/256, /*nc=*/256, /*mc=*/512, /*narrow_nr=*/0,
    ukernel<kMR, true>,
    rows_table<kMaxTileRows, kMR>([](auto m) { return ukernel<decltype(m)::value, false>; }),
    rows_table<kSmallM, kSmallM>([](auto m) { return smallm<decltype(m)::value>; }),
    rows_table<kSmallM, kSmallM>([](auto m) { return smallm_dot<decltype(m)::value>; }),
    nullptr, nullptr, nullptr,
};

int64_t fma_peak_generic(int64_t iters, float* sink) {
  constexpr int kChains = 8, kLanes = 4;
  float acc[kChains][kLanes];
  for (int j = 0; j < kChains; ++j)
    for (int l = 0; l < kLanes; ++l) acc[j][l] = 1.0f + 0.001f * static_cast<float>(j * kLanes + l);
  for (int64_t it = 0; it < iters; ++it)
    for (int j = 0; j < kChains; ++j)
      for (int l = 0; l < kLanes; ++l) acc[j][l] = acc[j][l] * 0.999999f + 1e-7f;
  for (int j = 0; j < kChains; ++j)
    for (int l = 0; l < kLanes; ++l) *sink += acc[j][l];
  return iters * kChains * kLanes * 2;
}

}  // namespace ember::gemm
