// bf16 GEMM on Hopper tensor cores: TMA + wgmma, warp-specialised (sm_90a).
//
// Strategy: a 384-thread block computes a 128 x 256 tile of C, K in steps of
// 64. Warpgroup 0 is the producer: one thread issues TMA bulk-tensor copies
// of the next 128 x 64 slice of A and 256 x 64 slice of B into a 4-stage ring
// of 128-byte-swizzled shared memory, each stage guarded by a "full"
// mbarrier (completed by the copies' transaction bytes) and an "empty"
// mbarrier (completed when both consumers are done with it). Warpgroups 1
// and 2 are consumers: each waits for a full stage, issues four
// wgmma.mma_async m64n256k16 (its 64 rows of A against all 256 columns of
// B, both read straight from the swizzled shared memory through matrix
// descriptors), waits for them and releases the stage. setmaxnreg moves
// registers from the producer (40) to the consumers (232), whose 128 fp32
// accumulators each hold a 64 x 256 slab. Tiles are visited in bands of 8
// tile rows for L2 reuse.
//
// Edges: TMA fills the parts of a box outside the matrix with zeros, so
// ragged M, N and K need nothing else; the epilogue predicates its stores.
// What moves: A and B once per block through TMA, C once (read only when
// beta != 0), written from the accumulators with the shared epilogue.
// Requirements (checked by the dispatcher): A and B K-contiguous, row
// strides and batch strides multiples of 8 elements, 16-byte aligned bases.
#include <cuda.h>
#include <cuda_bf16.h>

#include "core/cuda_launch.cuh"
#include "ops/gemm/gemm_cuda.h"
#include "ops/gemm/gemm_epilogue.cuh"

namespace ember::cuda {
namespace {

constexpr int WBM = 128, WBN = 256, WBK = 64, WSTAGES = 4;
constexpr int WTHREADS = 384;
constexpr int A_STAGE_BYTES = WBM * WBK * 2;  // 16 KiB
constexpr int B_STAGE_BYTES = WBN * WBK * 2;  // 32 KiB
constexpr size_t WSMEM_BYTES = static_cast<size_t>(WSTAGES) * (A_STAGE_BYTES + B_STAGE_BYTES) + 2 * WSTAGES * 8 +
                               1024;  // + barriers + room to align the base to 1024 bytes

struct WgParams {
  int64_t M, N, K;
  bool a_bcast, b_bcast;  // batch stride 0: every batch entry reads entry 0
  Epilogue epi;
};

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count));
}
__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
// Waits for the phase of `parity` to complete. A correct kernel never waits long; if the
// barrier is not reached within about two seconds (a lost TMA transaction, a miscounted
// arrival) the kernel traps, so the launch fails with an error instead of hanging the GPU.
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  const long long start = clock64();
  for (;;) {
    uint32_t done;
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
        "selp.u32 %0, 1, 0, p;\n"
        "}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
    if (done) return;
    if (clock64() - start > (1ll << 32)) __trap();
  }
}

__device__ __forceinline__ void tma_load_3d(uint32_t dst, const CUtensorMap* map, uint32_t bar, int c0, int c1,
                                            int c2) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5}], "
      "[%2];\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(bar), "r"(c0), "r"(c1), "r"(c2)
      : "memory");
}

// Shared-memory matrix descriptor: K-major operand, 128-byte swizzle, 8-row groups 1024 bytes apart.
__device__ __forceinline__ uint64_t smem_desc(uint32_t addr) {
  uint64_t d = 0;
  d |= static_cast<uint64_t>((addr & 0x3FFFF) >> 4);
  d |= static_cast<uint64_t>(16 >> 4) << 16;    // leading byte offset (unused with this swizzle)
  d |= static_cast<uint64_t>(1024 >> 4) << 32;  // stride byte offset: next 8-row group
  d |= static_cast<uint64_t>(1) << 62;          // 128-byte swizzle
  return d;
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_wait0() { asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory"); }

#define EMBER_R8(i) "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), \
                    "+f"(d[i + 6]), "+f"(d[i + 7])

// d (64 x 256 fp32 slab, 128 registers per thread) += A (64 x 16) * B (16 x 256).
__device__ __forceinline__ void wgmma_m64n256k16(float (&d)[128], uint64_t da, uint64_t db) {
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "setp.ne.b32 p, %130, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, "
      "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "
      "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, "
      "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, "
      "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}, "
      "%128, %129, p, 1, 1, 0, 0;\n"
      "}\n"
      : EMBER_R8(0), EMBER_R8(8), EMBER_R8(16), EMBER_R8(24), EMBER_R8(32), EMBER_R8(40), EMBER_R8(48),
        EMBER_R8(56), EMBER_R8(64), EMBER_R8(72), EMBER_R8(80), EMBER_R8(88), EMBER_R8(96), EMBER_R8(104),
        EMBER_R8(112), EMBER_R8(120)
      : "l"(da), "l"(db), "r"(1));
}
#undef EMBER_R8

#endif  // __CUDA_ARCH_FEAT_SM90_ALL

__global__ void __launch_bounds__(WTHREADS, 1)
    gemm_wgmma_kernel(const __grid_constant__ CUtensorMap map_a, const __grid_constant__ CUtensorMap map_b,
                      const WgParams p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ uint8_t smem_raw[];
  const uint32_t raw = smem_u32(smem_raw);
  const uint32_t base = (raw + 1023u) & ~1023u;
  const uint32_t sa = base;                                  // WSTAGES x A_STAGE_BYTES
  const uint32_t sb = sa + WSTAGES * A_STAGE_BYTES;          // WSTAGES x B_STAGE_BYTES
  const uint32_t bars = sb + WSTAGES * B_STAGE_BYTES;        // full[WSTAGES], empty[WSTAGES]
  auto full = [&](int s) { return bars + 8u * s; };
  auto empty = [&](int s) { return bars + 8u * (WSTAGES + s); };

  const int64_t tiles_m = (p.M + WBM - 1) / WBM, tiles_n = (p.N + WBN - 1) / WBN;
  int64_t tm, tn;
  swizzle_tile<8>(blockIdx.x, tiles_m, tiles_n, tm, tn);
  const int m0 = static_cast<int>(tm * WBM), n0 = static_cast<int>(tn * WBN);
  const int z = blockIdx.z;
  const int ktiles = static_cast<int>((p.K + WBK - 1) / WBK);

  if (threadIdx.x == 0) {
    for (int s = 0; s < WSTAGES; ++s) {
      mbar_init(full(s), 1);
      mbar_init(empty(s), 256);  // every consumer thread arrives
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
  }
  __syncthreads();

  const int wg = threadIdx.x / 128;
  if (wg == 0) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n");
    if (threadIdx.x == 0) {
      const int za = p.a_bcast ? 0 : z, zb = p.b_bcast ? 0 : z;
      for (int kt = 0; kt < ktiles; ++kt) {
        const int s = kt % WSTAGES, use = kt / WSTAGES;
        if (use > 0) mbar_wait(empty(s), (use - 1) & 1);
        mbar_expect_tx(full(s), A_STAGE_BYTES + B_STAGE_BYTES);
        tma_load_3d(sa + s * A_STAGE_BYTES, &map_a, full(s), kt * WBK, m0, za);
        tma_load_3d(sb + s * B_STAGE_BYTES, &map_b, full(s), kt * WBK, n0, zb);
      }
    }
  } else {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n");
    const int cw = wg - 1;  // this consumer's 64 rows: m0 + cw * 64 ..
    float d[128];
#pragma unroll
    for (int i = 0; i < 128; ++i) d[i] = 0.0f;
    for (int kt = 0; kt < ktiles; ++kt) {
      const int s = kt % WSTAGES, use = kt / WSTAGES;
      mbar_wait(full(s), use & 1);
      const uint32_t a_tile = sa + s * A_STAGE_BYTES + cw * 64 * 128;  // 64 rows of 128 bytes
      const uint32_t b_tile = sb + s * B_STAGE_BYTES;
      wgmma_fence();
#pragma unroll
      for (int k = 0; k < WBK / 16; ++k) wgmma_m64n256k16(d, smem_desc(a_tile + k * 32), smem_desc(b_tile + k * 32));
      wgmma_commit();
      wgmma_wait0();
      mbar_arrive(empty(s));
    }
    const int t = threadIdx.x % 128, warp = t / 32, lane = t % 32;
    const int64_t row = m0 + cw * 64 + warp * 16 + lane / 4;
#pragma unroll
    for (int j = 0; j < 32; ++j) {
      const int64_t col = n0 + j * 8 + (lane % 4) * 2;
      p.epi.store2(z, row, col, d[4 * j], d[4 * j + 1]);
      p.epi.store2(z, row + 8, col, d[4 * j + 2], d[4 * j + 3]);
    }
  }
#endif
}

// cuTensorMapEncodeTiled from the driver, without linking libcuda (the runtime hands it out).
using EncodeTiled = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                 const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                                 CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

EncodeTiled encode_tiled() {
  static EncodeTiled fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult q{};
    const cudaError_t err = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q);
    if (err != cudaSuccess || q != cudaDriverEntryPointSuccess || !f) {
      cudaGetLastError();
      return static_cast<EncodeTiled>(nullptr);
    }
    return reinterpret_cast<EncodeTiled>(f);
  }();
  if (!fn) throw std::runtime_error("gemm (wgmma): the driver does not provide cuTensorMapEncodeTiled");
  return fn;
}

// A 3-D map over a (batch x rows x K) bf16 tensor, K contiguous, boxes of 64 (K) x box_rows.
CUtensorMap make_map(const void* ptr, int64_t rows, int64_t k, int64_t ld, int64_t batch, int64_t bs,
                     uint32_t box_rows) {
  CUtensorMap map;
  const bool bcast = batch <= 1 || bs == 0;
  const cuuint64_t dims[3] = {static_cast<cuuint64_t>(k), static_cast<cuuint64_t>(rows),
                              static_cast<cuuint64_t>(bcast ? 1 : batch)};
  // The batch stride of a broadcast (or single) entry is never stepped; any legal value will do.
  const cuuint64_t bstride = bcast ? static_cast<cuuint64_t>(ld) * 2 * static_cast<cuuint64_t>(rows)
                                   : static_cast<cuuint64_t>(bs) * 2;
  const cuuint64_t strides[2] = {static_cast<cuuint64_t>(ld) * 2, bstride < 16 ? 16 : (bstride + 15) / 16 * 16};
  const cuuint32_t box[3] = {static_cast<cuuint32_t>(WBK), box_rows, 1};
  const cuuint32_t estr[3] = {1, 1, 1};
  const CUresult r = encode_tiled()(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, const_cast<void*>(ptr), dims, strides,
                                    box, estr, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                    CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    throw std::runtime_error("gemm (wgmma): cuTensorMapEncodeTiled failed with CUresult " + std::to_string(r));
  return map;
}

}  // namespace

bool gemm_wgmma_built() {
#if defined(EMBER_HAS_SM90A)
  return true;
#else
  return false;
#endif
}

void gemm_wgmma(const GemmCudaArgs& g, stream_t stream) {
  const CUtensorMap ma = make_map(g.a, g.m, g.k, g.lda, g.batch, g.bsa, WBM);
  const CUtensorMap mb = make_map(g.b, g.n, g.k, g.ldb, g.batch, g.bsb, WBN);
  WgParams p;
  p.M = g.m, p.N = g.n, p.K = g.k;
  p.a_bcast = g.batch <= 1 || g.bsa == 0;
  p.b_bcast = g.batch <= 1 || g.bsb == 0;
  const size_t esz = g.out_type == GemmDType::bf16 ? 2 : 4;
  p.epi = Epilogue{g.c, g.ldc, g.bsc, g.m, g.n, g.alpha, g.beta, g.bias, g.relu, g.out_type == GemmDType::bf16,
                   (reinterpret_cast<uintptr_t>(g.c) % (2 * esz)) == 0 && g.ldc % 2 == 0 && g.bsc % 2 == 0};
  check_cuda(cudaFuncSetAttribute(gemm_wgmma_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  static_cast<int>(WSMEM_BYTES)),
             "gemm_wgmma_kernel: cudaFuncSetAttribute");
  const int64_t tiles = ((g.m + WBM - 1) / WBM) * ((g.n + WBN - 1) / WBN);
  gemm_wgmma_kernel<<<dim3(static_cast<unsigned>(tiles), 1, static_cast<unsigned>(g.batch)), WTHREADS, WSMEM_BYTES,
                      stream>>>(ma, mb, p);
  check_launch("gemm_wgmma_kernel");
}

}  // namespace ember::cuda
