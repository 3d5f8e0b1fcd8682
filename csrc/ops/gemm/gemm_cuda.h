// GEMM on the GPU: plain C++ launchers (no CUDA headers).
//
//   C = act(alpha * op(A) @ op(B) + beta * C + bias)      (gemm.h's contract)
//
// for every batch entry z < batch: op(A) is M x K, op(B) K x N, C M x N
// row-major (unit column stride, row stride ldc), bias one float per column
// or null, act ReLU (NaN kept) or identity. beta == 0 never reads C; alpha
// == 0 or K == 0 never reads A or B. Each operand has one unit stride:
// op(A)(i, p) at a[i * lda + p] when a_kfast (K contiguous, "row-major")
// else at a[i + p * lda]; op(B)(p, j) at b[p * ldb + j] when b_nfast (N
// contiguous) else at b[p + j * ldb]. Batch strides may be 0 (broadcast).
//
// Inputs are float32 or bf16 (both the same; bf16 as raw 16-bit patterns),
// accumulation is always fp32, C is float32 or bf16 (rounded to nearest even
// once, at the end), bias is float32.
//
// Variants (each also a fallback the others rely on):
//   simt   CUDA cores, any layout/alignment/size, fp32 or bf16 inputs.
//   mma    bf16 tensor cores, mma.sync m16n8k16 + ldmatrix + 4-stage cp.async
//          pipeline; any layout, sizes of any shape; needs lda, ldb (and the
//          batch strides) multiples of 8 and 16-byte aligned A and B.
//   wgmma  bf16 tensor cores on sm_90a: TMA loads into 128B-swizzled shared
//          memory, mbarriers, one producer warpgroup and two consumer
//          warpgroups issuing wgmma m64n256k16; needs A and B K-contiguous
//          (a_kfast, !b_nfast), the same stride rules as mma, and a compute
//          capability 9.0 device. Any M, N, K (TMA fills out-of-range tiles
//          with zeros; stores are predicated).
//   auto   bf16: wgmma where it can run and the problem is large, else mma
//          where it can run, else simt; fp32: simt.
#pragma once

#include <cstdint>
#include <string>

#include "core/cuda_device.h"

namespace ember::cuda {

enum class GemmVariant { automatic, simt, mma, wgmma };
enum class GemmDType { f32, bf16 };

struct GemmCudaArgs {
  int64_t batch = 1, m = 0, n = 0, k = 0;
  GemmDType in_type = GemmDType::f32;
  const void* a = nullptr;
  int64_t lda = 0, bsa = 0;
  bool a_kfast = true;
  const void* b = nullptr;
  int64_t ldb = 0, bsb = 0;
  bool b_nfast = true;
  void* c = nullptr;
  int64_t ldc = 0, bsc = 0;
  GemmDType out_type = GemmDType::f32;
  float alpha = 1.0f, beta = 0.0f;
  const float* bias = nullptr;
  bool relu = false;
};

// Why `variant` cannot run `g` on the current device ("" when it can).
std::string gemm_cuda_unsupported(const GemmCudaArgs& g, GemmVariant variant);

// The kernel family `variant` resolves to for `g` ("simt", "mma", "wgmma", or "none" when
// there is nothing to compute); throws std::invalid_argument when it cannot run `g`.
const char* gemm_cuda_resolve(const GemmCudaArgs& g, GemmVariant variant);

// Runs the variant (resolving automatic first) and returns the name of the kernel family
// that ran ("simt", "mma", "wgmma"). Throws std::invalid_argument when the variant cannot
// run these arguments (the message says why).
const char* gemm_cuda(const GemmCudaArgs& g, GemmVariant variant, stream_t stream);

// Variant entry points (gemm_cuda.cu dispatches; each checks nothing).
void gemm_simt(const GemmCudaArgs& g, stream_t stream);
void gemm_mma(const GemmCudaArgs& g, stream_t stream);
void gemm_wgmma(const GemmCudaArgs& g, stream_t stream);
// Whether this build contains the wgmma kernel (compiled for sm_90a).
bool gemm_wgmma_built();

}  // namespace ember::cuda
