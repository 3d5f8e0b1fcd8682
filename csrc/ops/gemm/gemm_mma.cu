// bf16 GEMM on tensor cores with mma.sync (sm_80 and later).
//
// Strategy: a 256-thread block computes a 128 x 128 tile of C, K in steps of
// 32. A four-stage cp.async pipeline keeps three K-steps of A and B in
// flight (16-byte copies, zero-filled past the matrix edges, so ragged M, N
// and K need no separate path). Each operand tile is kept in shared memory in
// its own memory order -- K-contiguous tiles as 128 rows of 32, M/N-
// contiguous tiles as 32 rows of 128 -- with 16-byte chunks XOR-swizzled by
// row so that ldmatrix reads are free of bank conflicts; ldmatrix (.trans for
// M/N-contiguous tiles) produces the m16n8k16 fragments either way. The 8
// warps tile the block 2 x 4 (64 x 32 each: 4 x 4 mma tiles, 64 fp32
// accumulators per thread). Tiles are visited in bands of 8 tile rows for L2
// reuse.
//
// What moves: A and B panels once per block (re-reads by other blocks come
// from L2), C once (read only when beta != 0). Accumulation in fp32; the
// epilogue applies alpha, beta, bias and ReLU and rounds once to C's type.
#include <cuda_bf16.h>

#include "core/cuda_launch.cuh"
#include "ops/gemm/gemm_cuda.h"
#include "ops/gemm/gemm_epilogue.cuh"

namespace ember::cuda {
namespace {

constexpr int BM = 128, BN = 128, BK = 32, STAGES = 4, THREADS = 256;
constexpr int TILE_ELEMS = BM * BK;  // per operand per stage (BM == BN)
constexpr size_t SMEM_BYTES = static_cast<size_t>(STAGES) * 2 * TILE_ELEMS * sizeof(uint16_t);

// Element offsets inside a stage's tile.
// K-major tile: 128 rows (m or n) of 32 k; chunk (8 elements) c of row r at slot c ^ ((r >> 1) & 3).
__device__ __forceinline__ int kmaj(int r, int k) { return r * BK + ((((k >> 3) ^ ((r >> 1) & 3))) << 3) + (k & 7); }
// MN-major tile: 32 rows (k) of 128 (m or n); chunk c of row k at slot c ^ (k & 7).
__device__ __forceinline__ int mnmaj(int k, int c) { return k * BM + ((((c >> 3) ^ (k & 7))) << 3) + (c & 7); }

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte async copy; bytes beyond `src_bytes` (0..16) are zero-filled.
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

struct MmaParams {
  const uint16_t* a;
  const uint16_t* b;
  int64_t M, N, K, lda, ldb, bsa, bsb;
  Epilogue epi;
};

// Queues the copies of K-step `kt` into stage `st`.
template <bool AK, bool BNF>
__device__ __forceinline__ void load_stage(const MmaParams& p, const uint16_t* a, const uint16_t* b, uint16_t* sa,
                                           uint16_t* sb, int64_t m0, int64_t n0, int64_t kt, int tid) {
  const int64_t k0 = kt * BK;
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int q = tid + i * THREADS;  // 512 chunks of 8 elements per operand
    // A
    {
      int64_t gm, gk;
      int off, valid;
      if (AK) {  // 128 rows (m) x 4 chunks (k)
        const int r = q >> 2, c = (q & 3) << 3;
        gm = m0 + r, gk = k0 + c;
        off = kmaj(r, c);
        const int64_t left = p.K - gk;
        valid = gm < p.M ? static_cast<int>(left >= 8 ? 8 : (left > 0 ? left : 0)) : 0;
      } else {  // 32 rows (k) x 16 chunks (m)
        const int kk = q >> 4, c = (q & 15) << 3;
        gm = m0 + c, gk = k0 + kk;
        off = mnmaj(kk, c);
        const int64_t left = p.M - gm;
        valid = gk < p.K ? static_cast<int>(left >= 8 ? 8 : (left > 0 ? left : 0)) : 0;
      }
      const uint16_t* src = valid ? (AK ? a + gm * p.lda + gk : a + gk * p.lda + gm) : a;
      cp_async16(smem_u32(sa + off), src, valid * 2);
    }
    // B
    {
      int64_t gn, gk;
      int off, valid;
      if (!BNF) {  // K-contiguous: 128 rows (n) x 4 chunks (k)
        const int r = q >> 2, c = (q & 3) << 3;
        gn = n0 + r, gk = k0 + c;
        off = kmaj(r, c);
        const int64_t left = p.K - gk;
        valid = gn < p.N ? static_cast<int>(left >= 8 ? 8 : (left > 0 ? left : 0)) : 0;
      } else {  // N-contiguous: 32 rows (k) x 16 chunks (n)
        const int kk = q >> 4, c = (q & 15) << 3;
        gn = n0 + c, gk = k0 + kk;
        off = mnmaj(kk, c);
        const int64_t left = p.N - gn;
        valid = gk < p.K ? static_cast<int>(left >= 8 ? 8 : (left > 0 ? left : 0)) : 0;
      }
      const uint16_t* src = valid ? (BNF ? b + gk * p.ldb + gn : b + gn * p.ldb + gk) : b;
      cp_async16(smem_u32(sb + off), src, valid * 2);
    }
  }
}

template <bool AK, bool BNF>
__global__ void __launch_bounds__(THREADS) gemm_mma_kernel(const MmaParams p) {
  extern __shared__ __align__(128) uint16_t smem[];
  uint16_t* sA = smem;                          // STAGES tiles of A
  uint16_t* sB = smem + STAGES * TILE_ELEMS;    // STAGES tiles of B
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int64_t tiles_m = (p.M + BM - 1) / BM, tiles_n = (p.N + BN - 1) / BN;
  int64_t tm, tn;
  swizzle_tile<8>(blockIdx.x, tiles_m, tiles_n, tm, tn);
  const int64_t m0 = tm * BM, n0 = tn * BN, z = blockIdx.z;
  const uint16_t* a = p.a + z * p.bsa;
  const uint16_t* b = p.b + z * p.bsb;
  const int wm = warp / 4, wn = warp % 4;  // warp tile: rows wm*64.., cols wn*32..

  float acc[4][4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

  const int64_t ktiles = (p.K + BK - 1) / BK;
#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < ktiles) load_stage<AK, BNF>(p, a, b, sA + s * TILE_ELEMS, sB + s * TILE_ELEMS, m0, n0, s, tid);
    cp_async_commit();
  }

  for (int64_t kt = 0; kt < ktiles; ++kt) {
    cp_async_wait<STAGES - 2>();
    __syncthreads();  // stage kt landed for everyone; stage kt-1 is no longer read
    {
      const int64_t nk = kt + STAGES - 1;
      const int st = static_cast<int>(nk % STAGES);
      if (nk < ktiles) load_stage<AK, BNF>(p, a, b, sA + st * TILE_ELEMS, sB + st * TILE_ELEMS, m0, n0, nk, tid);
      cp_async_commit();
    }
    const int st = static_cast<int>(kt % STAGES);
    const uint16_t* ta = sA + st * TILE_ELEMS;
    const uint16_t* tb = sB + st * TILE_ELEMS;
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) {
      uint32_t af[4][4], bf[4][2];
#pragma unroll
      for (int mt = 0; mt < 4; ++mt) {
        const int rbase = wm * 64 + mt * 16;
        if (AK) {
          const int r = rbase + (lane & 15), k = kk + ((lane >> 4) << 3);
          ldmatrix_x4(af[mt], smem_u32(ta + kmaj(r, k)));
        } else {
          const int idx = lane >> 3;
          const int k = kk + (lane & 7) + ((idx >> 1) << 3), m = rbase + ((idx & 1) << 3);
          ldmatrix_x4_trans(af[mt], smem_u32(ta + mnmaj(k, m)));
        }
      }
#pragma unroll
      for (int np = 0; np < 2; ++np) {
        const int cbase = wn * 32 + np * 16;
        const int idx = lane >> 3;
        uint32_t r[4];
        if (!BNF) {
          const int n = cbase + ((idx >> 1) << 3) + (lane & 7), k = kk + ((idx & 1) << 3);
          ldmatrix_x4(r, smem_u32(tb + kmaj(n, k)));
        } else {
          const int k = kk + ((idx & 1) << 3) + (lane & 7), n = cbase + ((idx >> 1) << 3);
          ldmatrix_x4_trans(r, smem_u32(tb + mnmaj(k, n)));
        }
        bf[2 * np][0] = r[0];
        bf[2 * np][1] = r[1];
        bf[2 * np + 1][0] = r[2];
        bf[2 * np + 1][1] = r[3];
      }
#pragma unroll
      for (int mt = 0; mt < 4; ++mt)
#pragma unroll
        for (int nt = 0; nt < 4; ++nt) mma_bf16(acc[mt][nt], af[mt], bf[nt][0], bf[nt][1]);
    }
  }
  cp_async_wait<0>();

#pragma unroll
  for (int mt = 0; mt < 4; ++mt)
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) {
      const int64_t row = m0 + wm * 64 + mt * 16 + (lane >> 2);
      const int64_t col = n0 + wn * 32 + nt * 8 + ((lane & 3) << 1);
      p.epi.store2(z, row, col, acc[mt][nt][0], acc[mt][nt][1]);
      p.epi.store2(z, row + 8, col, acc[mt][nt][2], acc[mt][nt][3]);
    }
}

template <bool AK, bool BNF>
void launch(const MmaParams& p, int64_t batch, stream_t stream) {
  auto kernel = gemm_mma_kernel<AK, BNF>;
  check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(SMEM_BYTES)),
             "gemm_mma_kernel: cudaFuncSetAttribute");
  const int64_t tiles = ((p.M + BM - 1) / BM) * ((p.N + BN - 1) / BN);
  kernel<<<dim3(static_cast<unsigned>(tiles), 1, static_cast<unsigned>(batch)), THREADS, SMEM_BYTES, stream>>>(p);
  check_launch("gemm_mma_kernel");
}

}  // namespace

void gemm_mma(const GemmCudaArgs& g, stream_t stream) {
  MmaParams p;
  p.a = static_cast<const uint16_t*>(g.a);
  p.b = static_cast<const uint16_t*>(g.b);
  p.M = g.m, p.N = g.n, p.K = g.k, p.lda = g.lda, p.ldb = g.ldb, p.bsa = g.bsa, p.bsb = g.bsb;
  const size_t esz = g.out_type == GemmDType::bf16 ? 2 : 4;
  p.epi = Epilogue{g.c, g.ldc, g.bsc, g.m, g.n, g.alpha, g.beta, g.bias, g.relu, g.out_type == GemmDType::bf16,
                   (reinterpret_cast<uintptr_t>(g.c) % (2 * esz)) == 0 && g.ldc % 2 == 0 && g.bsc % 2 == 0};
  if (g.a_kfast)
    g.b_nfast ? launch<true, true>(p, g.batch, stream) : launch<true, false>(p, g.batch, stream);
  else
    g.b_nfast ? launch<false, true>(p, g.batch, stream) : launch<false, false>(p, g.batch, stream);
}

}  // namespace ember::cuda
