// The GEMM driver: Goto/BLIS blocking and packing around the micro-kernels.
//
// Loop nest, per thread, over the thread's own block of C (rows m0..m1,
// columns n0..n1):
//
//   for mc in M step MC:            A block (MC x KC) packed once, L3-resident
//     for kc in K step KC:
//       pack A[mc, kc]
//       for nc in N step NC:        B panel (KC x NC) packed once, L2-resident
//         pack B[kc, nc]
//         for ir in MC step MR:     A sliver (MR x KC) stays in L1 ...
//           for jr in NC step NR:   ... while B slivers stream from L2
//             micro-kernel(MR x NR tile of C)
//
// Packing is skipped where it cannot pay for itself: A is read in place when
// it has a unit stride and few column slivers will reuse it (tall-skinny
// shapes such as the im2col of a first conv layer, which then also get taller
// tiles); B is read in place when its rows are short and dense. Block sizes
// are balanced (equal blocks, not full blocks plus a sliver).
//
// M <= 8 takes separate paths: each element of B is used at most 8 times, so
// the product is a stream over B. With unit-column-stride B the rows of B
// stream past an L1-resident accumulator block; with a transposed B (the
// x @ W^T of a Linear layer) the rows of B^T are dot products along K. Either
// way B is read exactly once and never packed.
//
// Threads own disjoint blocks of C laid out as a tm x tn grid chosen to
// balance the tiles and to minimise duplicated packing; a thread packs its own
// panels (no barriers, no shared buffers). Each C element is summed in the
// same order whatever the thread count, so results do not depend on it.
// Packing buffers are per thread, grow-only and reused across calls, so a
// call allocates nothing once warm. Nothing of size M x K x N is ever
// materialised; C is written only by the epilogues.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/check.h"
#include "core/registry.h"
#include "core/scratch.h"
#include "core/threads.h"
#include "ops/gemm/gemm.h"
#include "ops/gemm/gemm_ukernel.h"

namespace ember::gemm {
namespace {

// Below this many multiply-adds per thread, handing work to another thread
// costs more than it saves (64 K MACs is ~0.6 us of one Zen 4 core; a worker
// still spinning from the previous call starts in well under that).
constexpr int64_t kMinMacsPerThread = int64_t(1) << 16;
// Rows of B at most this long (in floats) are read in place rather than packed, while the rows
// of B the product reads span at most kInPlaceBMaxBytes: beyond that, the first tile to walk
// down B fetches it from L3 or memory at a stride the prefetcher follows poorly, and packing it
// (one sequential pass) costs less (measured on Zen 3: 64 x 7200 x 128 ran 1.3x faster packed).
constexpr int64_t kInPlaceBMaxRow = 256;
constexpr int64_t kInPlaceBMaxBytes = 512 * 1024;
// The small-M kernel's accumulator block (m x width floats) is kept this small
// so it stays in L1 while B streams past it.
constexpr int64_t kSmallMAccBytes = 16 * 1024;
// The small-M path is bound by reading B: a thread is worth waking for this
// many bytes of it (~10 us from L3).
constexpr int64_t kSmallMBytesPerThread = 256 * 1024;
// Relative cost of packing one element, in multiply-adds of the micro-kernel:
// an A sliver is a transpose, a B sliver mostly row copies. (Measured on
// Zen 4: splitting M between two threads, which packs B twice, beats
// splitting N, which packs A twice, on square shapes.)
constexpr int64_t kPackCostA = 12;
constexpr int64_t kPackCostB = 4;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// The largest block <= max_block (a multiple of `align`) that splits `extent`
// into the same number of blocks as max_block would, as evenly as possible.
int64_t balanced_block(int64_t extent, int64_t max_block, int64_t align) {
  max_block = std::max(align, max_block / align * align);
  const int64_t blocks = ceil_div(extent, max_block);
  return std::min(max_block, round_up(ceil_div(extent, blocks), align));
}

thread_local Scratch t_pack_a;
thread_local Scratch t_pack_b;
thread_local Scratch t_small_acc;
thread_local Scratch t_small_a;

// c[j] = act(alpha * acc[j] + beta * c[j] + bias[j]) for j < n; acc == null
// means a zero product, beta == 0 means c is not read, bias may be null.
void epilogue_row(const float* acc, float* c, int64_t n, float alpha, float beta, const float* bias, bool relu) {
  for (int64_t j = 0; j < n; ++j) {
    float x = acc ? alpha * acc[j] : 0.0f;
    if (beta != 0.0f) x += beta * c[j];
    if (bias) x += bias[j];
    if (relu && x < 0.0f) x = 0.0f;  // NaN compares false: it propagates
    c[j] = x;
  }
}

// Packs a block held as kc contiguous rows, one per k — element (p, j) at src[p * ld + j],
// p < kc, j < extent: a row-major B, or a transposed A — into slivers `width` wide (sliver s at
// out + s * kc, element (p, j) at [p * width + j], zero past extent). Row by row, each row of
// the block read in one sequential pass and dealt out to the slivers: walking a sliver at a time
// instead reads a few dozen bytes per row at a large stride, which the hardware prefetcher
// follows poorly (on Zen 3 it made packing cost most of the micro-kernel's time). An inline loop,
// not memcpy: a library call per few dozen bytes costs as much again.
void pack_rows(const float* src, int64_t ld, int64_t kc, int64_t extent, int width, float* out) {
  for (int64_t p = 0; p < kc; ++p) {
    const float* row = src + p * ld;
    for (int64_t s = 0; s < extent; s += width) {
      const int n = static_cast<int>(std::min<int64_t>(width, extent - s));
      float* dst = out + s * kc + p * width;
      for (int j = 0; j < n; ++j) dst[j] = row[s + j];
      for (int j = n; j < width; ++j) dst[j] = 0.0f;
    }
  }
}

// A[r0 : r0+rows, k0 : k0+kc] -> slivers of MR rows, element (i, p) of a
// sliver at out[p * MR + i]; rows past the end are zero.
void pack_a(const MatrixF32& A, int64_t r0, int64_t rows, int64_t k0, int64_t kc, const Ukernel& uk, float* out) {
  const int MR = uk.mr;
  if (A.cs == 1 && A.rs != 1 && uk.pack_a_n) {
    uk.pack_a_n(A.data + r0 * A.rs + k0, A.rs, rows, kc, out);
    return;
  }
  if (A.rs == 1) {  // a transposed A: its columns are the contiguous rows of A^T
    pack_rows(A.data + r0 + k0 * A.cs, A.cs, kc, rows, MR, out);
    return;
  }
  for (int64_t s = 0; s < rows; s += MR) {
    const int m = static_cast<int>(std::min<int64_t>(MR, rows - s));
    float* dst = out + s * kc;
    const float* src = A.data + (r0 + s) * A.rs + k0 * A.cs;
    for (int i = 0; i < m; ++i)
      for (int64_t p = 0; p < kc; ++p) dst[p * MR + i] = src[i * A.rs + p * A.cs];
    if (m < MR)
      for (int64_t p = 0; p < kc; ++p)
        for (int i = m; i < MR; ++i) dst[p * MR + i] = 0.0f;
  }
}

// B[k0 : k0+kc, c0 : c0+cols] -> slivers of NR columns, element (p, j) of a
// sliver at out[p * NR + j]; columns past the end are zero.
void pack_b(const GemmArgs& g, int64_t k0, int64_t kc, int64_t c0, int64_t cols, const Ukernel& uk, float* out) {
  const int NR = uk.nr;
  if (g.b_packer) {
    g.b_packer->pack(g.b_packer->ctx, k0, kc, c0, cols, NR, out);
    return;
  }
  const MatrixF32& B = g.b;
  if (B.rs == 1 && B.cs != 1 && uk.pack_b_t) {
    uk.pack_b_t(B.data + k0 + c0 * B.cs, B.cs, kc, cols, out);
    return;
  }
  if (B.cs == 1) {
    pack_rows(B.data + k0 * B.rs + c0, B.rs, kc, cols, NR, out);
    return;
  }
  for (int64_t s = 0; s < cols; s += NR) {
    const int n = static_cast<int>(std::min<int64_t>(NR, cols - s));
    float* dst = out + s * kc;
    const float* src = B.data + k0 * B.rs + (c0 + s) * B.cs;
    for (int j = 0; j < n; ++j)
      for (int64_t p = 0; p < kc; ++p) dst[p * NR + j] = src[p * B.rs + j * B.cs];
    if (n < NR)
      for (int64_t p = 0; p < kc; ++p)
        for (int j = n; j < NR; ++j) dst[p * NR + j] = 0.0f;
  }
}

struct Plan {
  bool pack_a;
  bool pack_b;
  int tm, tn;  // thread grid
};

Plan make_plan(const GemmArgs& g, const Ukernel& uk, int nthreads) {
  const int64_t M = g.c.rows, N = g.c.cols, K = g.a.cols;
  const bool a_in_place_ok = (g.a.cs == 1 || g.a.rs == 1);
  const bool small_m = M <= kSmallM;  // here only when B is packed anyway
  Plan plan;
  const bool b_long = std::abs(g.b.rs) > kInPlaceBMaxRow || 4 * K * std::abs(g.b.rs) > kInPlaceBMaxBytes;
  plan.pack_b = g.b_packer || g.b.cs != 1 || (!small_m && !g.b_in_place && b_long);

  const int64_t tiles_m = ceil_div(M, uk.mr), tiles_n = ceil_div(N, uk.nr);
  const double macs = static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
  const double useful = std::min(static_cast<double>(tiles_m * tiles_n), macs / kMinMacsPerThread);
  const int64_t nt = std::max<int64_t>(1, std::min<int64_t>(nthreads, static_cast<int64_t>(useful)));

  // Choose the grid: the slowest thread's tiles plus its packing.
  int64_t best_cost = -1;
  for (int64_t n_try = nt; n_try >= 1 && best_cost < 0; --n_try) {
    for (int64_t tn = 1; tn <= n_try; ++tn) {
      if (n_try % tn) continue;
      const int64_t tm = n_try / tn;
      if (tm > tiles_m || tn > tiles_n || (small_m && tm > 1)) continue;
      const int64_t rows = ceil_div(tiles_m, tm) * uk.mr, cols = ceil_div(tiles_n, tn) * uk.nr;
      const bool pack_a = g.a_packed || !a_in_place_ok || (!small_m && cols > 2 * uk.nr);
      int64_t cost = rows * cols * K;
      if (pack_a && !g.a_packed) cost += kPackCostA * rows * K;
      if (plan.pack_b) cost += kPackCostB * K * cols;
      if (best_cost < 0 || cost < best_cost) {
        best_cost = cost;
        plan.tm = static_cast<int>(tm);
        plan.tn = static_cast<int>(tn);
        plan.pack_a = pack_a;
      }
    }
  }
  return plan;
}

void run_block(const GemmArgs& g, const Ukernel& uk, const Plan& plan, int64_t m0, int64_t m1, int64_t n0,
               int64_t n1) {
  const int64_t K = g.a.cols;
  const int MR = uk.mr, NR = uk.nr;
  // Equal blocks rather than full blocks plus a sliver: a last K block of a
  // few dozen would pay the C tile's load and store for little work.
  // Unpacked A needs no M blocking.
  const int64_t MC = plan.pack_a ? balanced_block(m1 - m0, uk.mc, MR) : m1 - m0;
  const int64_t KC = balanced_block(K, uk.kc, 1);
  const int64_t NC = balanced_block(n1 - n0, uk.nc, NR);
  const int64_t ld = g.c.ld;
  const bool own_a = plan.pack_a && !g.a_packed;
  float* abuf = own_a ? t_pack_a.get(round_up(std::min(MC, m1 - m0), MR) * std::min(KC, K)) : nullptr;
  const float* apanel = abuf;  // the packed A block in use
  float* bbuf = plan.pack_b ? t_pack_b.get(round_up(std::min(NC, n1 - n0), NR) * std::min(KC, K)) : nullptr;

  for (int64_t mc0 = m0; mc0 < m1; mc0 += MC) {
    const int64_t mcl = std::min(MC, m1 - mc0);
    for (int64_t kc0 = 0; kc0 < K; kc0 += KC) {
      const int64_t kcl = std::min(KC, K - kc0);
      const bool last = kc0 + kcl == K;
      Epilogue ep{g.alpha, kc0 == 0 ? g.beta : 1.0f, nullptr, last && g.relu};
      if (own_a)
        pack_a(g.a, mc0, mcl, kc0, kcl, uk, abuf);
      else if (g.a_packed)  // pack_a_whole's layout: per K block, all row slivers
        apanel = g.a_packed + kc0 * round_up(g.c.rows, MR) + mc0 * kcl;
      for (int64_t nc0 = n0; nc0 < n1; nc0 += NC) {
        const int64_t ncl = std::min(NC, n1 - nc0);
        if (plan.pack_b) pack_b(g, kc0, kcl, nc0, ncl, uk, bbuf);
        if (!plan.pack_a && uk.narrow_panel && ncl <= uk.narrow_nr) {
          ep.bias = (last && g.bias) ? g.bias + nc0 : nullptr;
          const float* b = plan.pack_b ? bbuf : g.b.data + kc0 * g.b.rs + nc0;
          uk.narrow_panel(mcl, kcl, g.a.data + mc0 * g.a.rs + kc0 * g.a.cs, g.a.rs, g.a.cs, b,
                          plan.pack_b ? NR : g.b.rs, g.c.data + mc0 * ld + nc0, ld, static_cast<int>(ncl), ep);
          continue;
        }
        for (int64_t ir = 0; ir < mcl; ir += MR) {
          const int m = static_cast<int>(std::min<int64_t>(MR, mcl - ir));
          const float* a;
          int64_t rs_a, cs_a;
          ukernel_fn fn;
          if (plan.pack_a) {
            a = apanel + ir * kcl, rs_a = 1, cs_a = MR, fn = uk.packed;
          } else {
            a = g.a.data + (mc0 + ir) * g.a.rs + kc0 * g.a.cs, rs_a = g.a.rs, cs_a = g.a.cs, fn = uk.strided[m - 1];
          }
          float* crow = g.c.data + (mc0 + ir) * ld;
          for (int64_t jr = 0; jr < ncl; jr += NR) {
            const int n = static_cast<int>(std::min<int64_t>(NR, ncl - jr));
            const int64_t col = nc0 + jr;
            const float* b;
            int64_t rs_b;
            if (plan.pack_b) {
              b = bbuf + jr * kcl, rs_b = NR;
            } else {
              b = g.b.data + kc0 * g.b.rs + col, rs_b = g.b.rs;
            }
            ep.bias = (last && g.bias) ? g.bias + col : nullptr;
            fn(kcl, a, rs_a, cs_a, b, rs_b, crow + col, ld, m, n, ep);
          }
        }
      }
    }
  }
}

// K == 0 or alpha == 0: C = act(beta * C + bias) without reading A or B.
void scale_only(const GemmArgs& g) {
  for (int64_t i = 0; i < g.c.rows; ++i)
    epilogue_row(nullptr, g.c.data + i * g.c.ld, g.c.cols, g.alpha, g.beta, g.bias, g.relu);
}

// The small-M paths: threads split N in multiples of `chunk`; each thread
// computes its columns `width` at a time into an L1 accumulator block with
// block(first_column, columns, acc), and the epilogue combines that into C.
template <class Block>
void run_small_m_columns(const GemmArgs& g, int nthreads, int64_t chunk, int64_t width, Block&& block) {
  const int64_t M = g.c.rows, N = g.c.cols, K = g.a.cols;
  const int64_t chunks = ceil_div(N, chunk);
  const double b_bytes = 4.0 * static_cast<double>(N) * static_cast<double>(K);
  const int64_t nt = std::max<int64_t>(
      1, std::min<int64_t>({static_cast<int64_t>(nthreads), chunks, static_cast<int64_t>(b_bytes / kSmallMBytesPerThread)}));
  parallel_run(static_cast<int>(nt), [&](int tid) {
    const int64_t c0 = std::min(N, chunks * tid / nt * chunk), c1 = std::min(N, chunks * (tid + 1) / nt * chunk);
    if (c0 >= c1) return;
    float* acc = t_small_acc.get(static_cast<size_t>(M * width));
    for (int64_t s0 = c0; s0 < c1; s0 += width) {
      const int64_t w = std::min(width, c1 - s0);
      block(s0, w, acc);
      for (int64_t i = 0; i < M; ++i)
        epilogue_row(acc + i * w, g.c.data + i * g.c.ld + s0, w, g.alpha, g.beta, g.bias ? g.bias + s0 : nullptr,
                     g.relu);
    }
  });
}

// M <= kSmallM with unit-column-stride B: each thread walks K once over its
// columns, streaming rows of B past an accumulator block that stays in L1.
void run_small_m(const GemmArgs& g, const Ukernel& uk, int nthreads) {
  const int64_t M = g.c.rows, K = g.a.cols;
  constexpr int64_t kVec = 16;
  const int64_t width = std::max<int64_t>(kVec, kSmallMAccBytes / (4 * M) / kVec * kVec);
  run_small_m_columns(g, nthreads, kVec, width, [&](int64_t s0, int64_t w, float* acc) {
    std::memset(acc, 0, sizeof(float) * M * w);
    uk.smallm[M - 1](K, g.a.data, g.a.rs, g.a.cs, g.b.data + s0, g.b.rs, w, acc);
  });
}

// M <= kSmallM with op(B)^T row-major (a transposed weight): dot products
// along K. A is read in place when it has unit stride along K and copied once
// (it is at most kSmallM rows) otherwise.
void run_small_m_dot(const GemmArgs& g, const Ukernel& uk, int nthreads) {
  const int64_t M = g.c.rows, K = g.a.cols;
  const float* a = g.a.data;
  int64_t rs_a = g.a.rs;
  if (g.a.cs != 1) {
    float* copy = t_small_a.get(static_cast<size_t>(M * K));
    for (int64_t i = 0; i < M; ++i)
      for (int64_t p = 0; p < K; ++p) copy[i * K + p] = g.a.at(i, p);
    a = copy;
    rs_a = K;
  }
  constexpr int64_t kChunk = 8;
  const int64_t width = std::max<int64_t>(kChunk, kSmallMAccBytes / (4 * M));
  run_small_m_columns(g, nthreads, kChunk, width, [&](int64_t s0, int64_t w, float* acc) {
    uk.smallm_dot[M - 1](K, a, rs_a, g.b.data + s0 * g.b.cs, g.b.cs, w, acc);
  });
}

}  // namespace

int64_t packed_a_size(int64_t M, int64_t K, Isa isa) {
  return round_up(M, lookup<Ukernel>("gemm", isa).mr) * K;
}

void pack_a_whole(const MatrixF32& a, Isa isa, float* out) {
  const Ukernel& uk = lookup<Ukernel>("gemm", isa);
  const int64_t M = a.rows, K = a.cols, KC = balanced_block(K, uk.kc, 1);
  for (int64_t kc0 = 0; kc0 < K; kc0 += KC) {
    const int64_t kcl = std::min(KC, K - kc0);
    pack_a(a, 0, M, kc0, kcl, uk, out + kc0 * round_up(M, uk.mr));
  }
}

void gemm_cpu(const GemmArgs& g, Isa isa, int nthreads) {
  const int64_t M = g.c.rows, N = g.c.cols, K = g.a.cols;
  if (M == 0 || N == 0) return;
  if (K == 0 || g.alpha == 0.0f) {
    scale_only(g);
    return;
  }
  // A matrix-vector product written as A @ x (N = 1, a contiguous column out): the same sums as
  // x^T @ A^T, whose small-M paths stream A once at memory speed (the packed path would not).
  if (N == 1 && M > kSmallM && g.c.ld == 1 && !g.b_packer && !g.a_packed) {
    GemmArgs t = g;
    t.a = {g.b.data, 1, K, g.b.cs, g.b.rs};
    t.b = {g.a.data, K, M, g.a.cs, g.a.rs};
    t.c = {g.c.data, 1, M, M};
    std::vector<float> bias;  // the one bias value, now one per column
    if (g.bias) {
      bias.assign(static_cast<size_t>(M), g.bias[0]);
      t.bias = bias.data();
    }
    gemm_cpu(t, isa, nthreads);
    return;
  }
  const Ukernel& uk = lookup<Ukernel>("gemm", isa);
  if (M <= kSmallM && g.b.cs == 1 && !g.b_packer) {
    run_small_m(g, uk, nthreads);
    return;
  }
  if (M <= kSmallM && g.b.rs == 1 && !g.b_packer) {
    run_small_m_dot(g, uk, nthreads);
    return;
  }
  const Plan plan = make_plan(g, uk, nthreads);
  const int64_t tiles_m = ceil_div(M, uk.mr), tiles_n = ceil_div(N, uk.nr);
  parallel_run(plan.tm * plan.tn, [&](int tid) {
    const int64_t ti = tid / plan.tn, tj = tid % plan.tn;
    const int64_t m0 = std::min(M, tiles_m * ti / plan.tm * uk.mr);
    const int64_t m1 = std::min(M, tiles_m * (ti + 1) / plan.tm * uk.mr);
    const int64_t n0 = std::min(N, tiles_n * tj / plan.tn * uk.nr);
    const int64_t n1 = std::min(N, tiles_n * (tj + 1) / plan.tn * uk.nr);
    if (m0 >= m1 || n0 >= n1) return;
    run_block(g, uk, plan, m0, m1, n0, n1);  // a packing buffer that cannot grow throws, as parallel_run's
  });
}

}  // namespace ember::gemm
