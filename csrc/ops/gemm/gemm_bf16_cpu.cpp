// gemm_bf16_cpu: the driver of the bf16 GEMM.
//
// With bf16 products in hardware (avx512_bf16, amx), op(B) and (unless it is
// row-major with K a multiple of 32: then it is read in place) op(A) are
// packed whole, once, into the tile layouts of gemm_bf16.h (the threads
// packing 32-row and 32-column strips in turn), and C is computed in 32 x 32
// blocks. Blocks are visited in panels of columns whose packed B (Kp x panel,
// 1 MB) stays in L2, rows of blocks split between the threads. For one 32-row
// strip of A, K is walked in chunks of 256: the chunk of the A strip (16 KB)
// stays in L1 while the panel's B chunks stream past it, each block's sums
// kept in a per-thread buffer between chunks; after the last chunk the
// epilogue writes the panel's blocks to C, once (C is read only when
// beta != 0).
//
// Measured on a Xeon with AMX (2 cores): a tile product of operands in L1
// runs at ~70% of the AMX peak, but tile loads from L2 at about a third of
// their speed from L1 -- hence the A chunk in L1. Prefetching B into L1 gained
// little; packing is ~15% of a 2048^3 product.
//
// Below those levels op(A) and op(B) are widened to fp32 (exact) and the fp32
// GEMM of the level computes the product.
#include <algorithm>
#include <vector>

#include "core/registry.h"
#include "core/scratch.h"
#include "core/threads.h"
#include "ops/gemm/gemm.h"
#include "ops/gemm/gemm_bf16.h"

namespace ember::gemm {
namespace {

int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

// Packed B per column panel: what one core's L2 holds beside an A strip.
constexpr int64_t kPanelBytes = 1 << 20;

// K-tiles per chunk: a chunk of a 32-row A strip (2 x 8 KB) stays in L1.
constexpr int64_t kChunkTiles = 8;

thread_local Scratch t_packed;
thread_local Scratch t_sums;

// C = act(beta * C + bias) when the product is zero (K == 0 or alpha == 0).
void without_product(const GemmBf16Args& g) {
  for (int64_t i = 0; i < g.c.rows; ++i) {
    float* c = g.c.data + i * g.c.ld;
    for (int64_t j = 0; j < g.c.cols; ++j) {
      float x = g.beta != 0.0f ? g.beta * c[j] : 0.0f;
      if (g.bias) x += g.bias[j];
      if (g.row_bias) x += g.row_bias[i];
      if (g.relu && x < 0.0f) x = 0.0f;
      c[j] = x;
    }
  }
}

thread_local Scratch t_wide_a;
thread_local Scratch t_wide_b;

// op(x) widened to a contiguous fp32 matrix in `store`, rows shared out among the threads.
MatrixF32 widened(const MatrixBF16& x, Scratch& store, int nthreads) {
  float* out = store.get(static_cast<size_t>(x.rows * x.cols));
  const int64_t min_rows = std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(x.cols, 1));
  const int nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(nthreads, x.rows / min_rows)));
  // A strided (transposed) operand's rows are gathered first, each thread into its own row.
  std::vector<uint16_t> gather(x.cs == 1 ? 0 : static_cast<size_t>(nt * x.cols));
  parallel_run(nt, [&](int tid) {
    for (int64_t i = x.rows * tid / nt; i < x.rows * (tid + 1) / nt; ++i) {
      const uint16_t* src = x.data + i * x.rs;
      if (x.cs != 1) {
        uint16_t* row = gather.data() + tid * x.cols;
        for (int64_t j = 0; j < x.cols; ++j) row[j] = src[j * x.cs];
        src = row;
      }
      f32_from_bf16(src, x.cols, out + i * x.cols);
    }
  });
  return {out, x.rows, x.cols, x.cols, 1};
}

void widen_and_gemm(const GemmBf16Args& g, Isa isa, int nthreads) {
  GemmArgs f;
  f.a = widened(g.a, t_wide_a, nthreads);
  f.b = widened(g.b, t_wide_b, nthreads);
  f.c = g.c;
  f.alpha = g.alpha;
  f.beta = g.beta;
  f.bias = g.bias;
  f.relu = g.relu;
  gemm_cpu(f, isa, nthreads);
}

void packed_gemm(const GemmBf16Args& g, const Bf16Kernels& k, int nthreads) {
  const int64_t M = g.c.rows, N = g.c.cols, K = g.a.cols;
  const int64_t Mp = round_up(M, 32), Np = round_up(N, 32), KT = round_up(K, 32) / 32;
  const int64_t MB = Mp / 32, NB = Np / 32;
  // A row-major with K a multiple of 32 is read in place, all but a last partial strip, unless the
  // kernel's loads would alias in L1 at its row stride.
  const bool a_in_place = !g.a_packer && g.a.cs == 1 && K % 32 == 0 &&
                          (k.a_alias_bytes == 0 || (g.a.rs * 2) % k.a_alias_bytes != 0);
  const int64_t a_full = a_in_place ? M / 32 : 0;  // strips read in place
  const int64_t a_strips = MB - a_full, b_strips = NB;
  uint16_t* packed = reinterpret_cast<uint16_t*>(
      t_packed.get(static_cast<size_t>((a_strips + b_strips) * KT * kBf16Tile + 1024)));
  uint16_t* pa = packed;
  uint16_t* pb = packed + 2 * a_strips * KT * kBf16Tile;
  const int64_t next = KT * kBf16Tile;
  // Enough blocks for every thread, or fewer threads.
  const int nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(nthreads, MB * NB)));
  // Each thread computes a range of rows of blocks (reading all of B) or, when B is the larger
  // operand or there are fewer rows of blocks than threads, a range of columns (reading all of A).
  const bool by_rows = MB >= nt && (NB < nt || M >= N);
  // Pack: strips of 32 rows of A (those not read in place) and of 32 columns of B, each shared out
  // evenly -- B's as the columns are, so that a thread computing columns finds the B it packed in
  // its own cache.
  parallel_run(nt, [&](int tid) {
    for (int64_t t = a_strips * tid / nt; t < a_strips * (tid + 1) / nt; ++t) {
      if (g.a_packer)
        g.a_packer->pack(g.a_packer->ctx, (a_full + t) * 32, 2, KT, pa + 2 * t * next);
      else
        k.pack_a(g.a, (a_full + t) * 32, 2, KT, pa + 2 * t * next);
    }
    for (int64_t t = b_strips * tid / nt; t < b_strips * (tid + 1) / nt; ++t) {
      if (g.b_packer)
        g.b_packer->pack(g.b_packer->ctx, t * 32, 2, KT, pb + 2 * t * next);
      else
        k.pack_b(g.b, t * 32, 2, KT, pb + 2 * t * next);
    }
  });
  auto a_strip = [&](int64_t mb) -> TileStrip {
    if (mb < a_full) return {g.a.data + mb * 32 * g.a.rs, 16 * g.a.rs, 32, g.a.rs};
    return {pa + 2 * (mb - a_full) * next, next, kBf16Tile, 32};
  };
  const int64_t panel = std::max<int64_t>(1, kPanelBytes / (KT * 2 * kBf16Tile * 2));  // blocks of 32 columns
  parallel_run(nt, [&](int tid) {
    float* sums = t_sums.get(static_cast<size_t>(panel * 32 * 32));
    if (k.thread_begin) k.thread_begin();
    const int64_t r0 = by_rows ? MB * tid / nt : 0, r1 = by_rows ? MB * (tid + 1) / nt : MB;
    const int64_t c0 = by_rows ? 0 : NB * tid / nt, c1 = by_rows ? NB : NB * (tid + 1) / nt;
    for (int64_t p0 = c0; p0 < c1; p0 += panel) {
      const int64_t p1 = std::min(c1, p0 + panel);
      for (int64_t mb = r0; mb < r1; ++mb) {
        const TileStrip a = a_strip(mb);
        // K in chunks: a chunk of the A strip stays in L1 while the panel's B strips stream past it
        // from L2 (AMX tile loads from L2 run at less than half their speed from L1).
        for (int64_t k0 = 0; k0 < KT; k0 += kChunkTiles) {
          const int64_t kt = std::min(kChunkTiles, KT - k0);
          const TileStrip ak = {a.p + k0 * a.kstep, a.next, a.kstep, a.ld};
          for (int64_t nb = p0; nb < p1; ++nb) {
            const TileStrip bk = {pb + 2 * nb * next + k0 * kBf16Tile, next, kBf16Tile, 32};
            k.block(ak, bk, kt, k0 > 0, sums + (nb - p0) * 1024);
          }
        }
        for (int64_t nb = p0; nb < p1; ++nb) {
          const int64_t i0 = mb * 32, j0 = nb * 32;
          k.store(g, sums + (nb - p0) * 1024, i0, j0, std::min<int64_t>(32, M - i0), std::min<int64_t>(32, N - j0));
        }
      }
    }
    if (k.thread_end) k.thread_end();
  });
}

}  // namespace

// Below this many elements per thread, waking another costs more than it saves.
constexpr int64_t kConvertPerThread = 1 << 16;

void bf16_from_f32_cpu(const float* x, int64_t n, uint16_t* out, Isa isa, int nthreads) {
  const Bf16Convert& c = lookup<Bf16Convert>("convert_bf16", isa);
  parallel_ranges(n, nthreads, kConvertPerThread, [&](int64_t lo, int64_t hi) { c.to_bf16(x + lo, hi - lo, out + lo); });
}

void f32_from_bf16_cpu(const uint16_t* x, int64_t n, float* out, Isa isa, int nthreads) {
  const Bf16Convert& c = lookup<Bf16Convert>("convert_bf16", isa);
  parallel_ranges(n, nthreads, kConvertPerThread, [&](int64_t lo, int64_t hi) { c.to_f32(x + lo, hi - lo, out + lo); });
}

void gemm_bf16_cpu(const GemmBf16Args& g, Isa isa, int nthreads) {
  const int64_t M = g.c.rows, N = g.c.cols, K = g.a.cols;
  if (M == 0 || N == 0) return;
  if (K == 0 || g.alpha == 0.0f) {
    without_product(g);
    return;
  }
  const Bf16Kernels& k = lookup<Bf16Kernels>("gemm_bf16", isa);
  if (k.block == nullptr)  // the callers that set b_packer or row_bias check for a block kernel first
    widen_and_gemm(g, isa, nthreads);
  else
    packed_gemm(g, k, nthreads);
}

const Bf16Kernels bf16_kernels_widened = {"bf16 widened to fp32", nullptr, nullptr, nullptr, nullptr, nullptr,
                                          nullptr, 0};

}  // namespace ember::gemm
