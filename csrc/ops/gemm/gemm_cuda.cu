// GEMM on the GPU: variant choice and the CUDA-core (SIMT) launcher.
//
// The SIMT kernel itself is gemm_simt.cuh (shared with the convolutions);
// the tensor-core kernels are gemm_mma.cu and gemm_wgmma.cu. This file only
// decides which one runs and instantiates the SIMT kernel for the dense
// layouts: fp32 inputs with float4 loads where aligned, bf16 inputs (the
// fallback of the tensor-core paths) with scalar loads.
#include "core/cuda_launch.cuh"
#include "ops/gemm/gemm_cuda.h"
#include "ops/gemm/gemm_simt.cuh"

namespace ember::cuda {
namespace {

bool aligned(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

template <class T, class OutT, bool AK, bool BNF, bool VEC>
void launch_simt(const GemmCudaArgs& g, stream_t stream) {
  simt::DenseGemm<T, OutT, AK, BNF, VEC, VEC> p;
  p.M = g.m, p.N = g.n, p.K = g.k;
  p.a = static_cast<const T*>(g.a), p.lda = g.lda, p.bsa = g.bsa;
  p.b = static_cast<const T*>(g.b), p.ldb = g.ldb, p.bsb = g.bsb;
  p.c = static_cast<OutT*>(g.c), p.ldc = g.ldc, p.bsc = g.bsc;
  p.alpha = g.alpha, p.beta = g.beta, p.bias = g.bias, p.relu = g.relu;
  p.vec_c = sizeof(OutT) == 4 && aligned(g.c, 16) && g.ldc % 4 == 0 && g.bsc % 4 == 0;
  const dim3 grid(static_cast<unsigned>(ceil_div(g.n, simt::BN)), static_cast<unsigned>(ceil_div(g.m, simt::BM)),
                  static_cast<unsigned>(g.batch));
  simt::simt_gemm_kernel<<<grid, simt::THREADS, 0, stream>>>(p);
  check_launch("simt_gemm_kernel");
}

template <class T, class OutT, bool VEC>
void simt_layouts(const GemmCudaArgs& g, stream_t stream) {
  if (g.a_kfast)
    g.b_nfast ? launch_simt<T, OutT, true, true, VEC>(g, stream) : launch_simt<T, OutT, true, false, VEC>(g, stream);
  else
    g.b_nfast ? launch_simt<T, OutT, false, true, VEC>(g, stream) : launch_simt<T, OutT, false, false, VEC>(g, stream);
}

// Tensor-core operands: 16-byte aligned bases, strides in multiples of 8 elements.
bool tc_strides_ok(const GemmCudaArgs& g) {
  return aligned(g.a, 16) && aligned(g.b, 16) && g.lda % 8 == 0 && g.ldb % 8 == 0 && g.bsa % 8 == 0 &&
         g.bsb % 8 == 0;
}

}  // namespace

void gemm_simt(const GemmCudaArgs& g, stream_t stream) {
  if (g.in_type == GemmDType::f32) {
    const bool vec = aligned(g.a, 16) && aligned(g.b, 16) && g.lda % 4 == 0 && g.ldb % 4 == 0 && g.bsa % 4 == 0 &&
                     g.bsb % 4 == 0;
    vec ? simt_layouts<float, float, true>(g, stream) : simt_layouts<float, float, false>(g, stream);
  } else if (g.out_type == GemmDType::f32) {
    simt_layouts<__nv_bfloat16, float, false>(g, stream);
  } else {
    simt_layouts<__nv_bfloat16, __nv_bfloat16, false>(g, stream);
  }
}

std::string gemm_cuda_unsupported(const GemmCudaArgs& g, GemmVariant variant) {
  if (g.batch > 65535) return "batch is above 65535";
  switch (variant) {
    case GemmVariant::automatic:
    case GemmVariant::simt:
      if (ceil_div(g.m, simt::BM) > 65535) return "M is above 8388480 (the SIMT kernel's grid limit)";
      return "";
    case GemmVariant::mma:
      if (g.in_type != GemmDType::bf16) return "mma needs bf16 inputs";
      if (compute_capability() < 80) return "mma needs compute capability 8.0 or newer";
      if (!tc_strides_ok(g))
        return "mma needs 16-byte aligned a and b with row and batch strides that are multiples of 8 elements";
      return "";
    case GemmVariant::wgmma:
      if (g.in_type != GemmDType::bf16) return "wgmma needs bf16 inputs";
      if (!gemm_wgmma_built()) return "this build has no sm_90a code (wgmma)";
      if (!is_sm90()) return "wgmma needs a compute capability 9.0 GPU (H100/H200)";
      if (!g.a_kfast || g.b_nfast)
        return "wgmma needs K-contiguous operands: a row-major (M, K) (or a transposed (K, M) column-major view) "
               "and b as the transpose of a row-major (N, K) array (trans_b with a C-contiguous b)";
      if (!tc_strides_ok(g))
        return "wgmma needs 16-byte aligned a and b with row and batch strides that are multiples of 8 elements";
      if (g.lda < g.k || g.ldb < g.k) return "wgmma needs row strides of at least K (rows that do not overlap)";
      if (g.m > (int64_t(1) << 31) - 256 || g.n > (int64_t(1) << 31) - 256 || g.k > (int64_t(1) << 31) - 64)
        return "wgmma needs M, N and K below 2^31";
      return "";
  }
  return "unknown variant";
}

namespace {

// The arguments a kernel actually sees: alpha == 0 means A and B are not read.
GemmCudaArgs effective(const GemmCudaArgs& g0) {
  GemmCudaArgs g = g0;
  if (g.alpha == 0.0f) g.k = 0;
  return g;
}

}  // namespace

const char* gemm_cuda_resolve(const GemmCudaArgs& g0, GemmVariant variant) {
  const GemmCudaArgs g = effective(g0);
  const std::string why = gemm_cuda_unsupported(g, variant);
  if (!why.empty()) throw std::invalid_argument("gemm: variant cannot run these arguments: " + why);
  if (g.batch == 0 || g.m == 0 || g.n == 0) return "none";
  // Nothing to multiply: only the epilogue (beta * C, bias, ReLU) runs, on the SIMT kernel.
  if (g.k == 0) return "simt";
  switch (variant) {
    case GemmVariant::simt: return "simt";
    case GemmVariant::mma: return "mma";
    case GemmVariant::wgmma: return "wgmma";
    case GemmVariant::automatic: break;
  }
  if (g.in_type == GemmDType::f32) return "simt";
  const bool big = g.m * g.n * g.batch >= (int64_t(1) << 20) && g.k >= 64;
  if (big && gemm_cuda_unsupported(g, GemmVariant::wgmma).empty()) return "wgmma";
  if (gemm_cuda_unsupported(g, GemmVariant::mma).empty()) return "mma";
  return "simt";
}

const char* gemm_cuda(const GemmCudaArgs& g0, GemmVariant variant, stream_t stream) {
  const char* chosen = gemm_cuda_resolve(g0, variant);
  const GemmCudaArgs g = effective(g0);
  const std::string c = chosen;
  if (c == "wgmma")
    gemm_wgmma(g, stream);
  else if (c == "mma")
    gemm_mma(g, stream);
  else if (c == "simt")
    gemm_simt(g, stream);
  return chosen;
}

}  // namespace ember::cuda
