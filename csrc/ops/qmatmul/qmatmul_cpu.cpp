// The quantized-matmul driver: quantize the activations (rows split across
// threads), then split the 16-channel blocks across threads; each thread walks
// its blocks in panels (about 256 KiB of weights, which stay in L2) and, for
// every panel, each block of up to 4 rows in turn: the weights come from memory
// once whatever M, and from L2 for every further block of rows.
#include <algorithm>
#include <atomic>

#include "core/registry.h"
#include "core/scratch.h"
#include "core/threads.h"
#include "ops/qmatmul/qmatmul.h"

namespace ember::qmatmul {
namespace {

constexpr int64_t kRowBlock = 4;
constexpr int64_t kPanelBytes = int64_t(256) << 10;

// The quantized activations, in one buffer per calling thread that is reused from call to call
// (fresh memory would cost a page fault per 4 KiB on every call).
struct Quantized {
  uint8_t* qu;
  int8_t* qs;
  float* scale;
  int32_t* sums;

  // Room for `rows` rows (>= m: wide kernels read whole tiles of rows) and 64 bytes past them.
  Quantized(int64_t rows, int64_t kp, int64_t groups) {
    thread_local Scratch buffer;
    const int64_t bytes_q = (rows * kp + 64 + 63) / 64 * 64, bytes_s = (rows * groups * 4 + 63) / 64 * 64;
    char* base = reinterpret_cast<char*>(buffer.get(static_cast<size_t>((2 * bytes_q + 2 * bytes_s) / 4)));
    qu = reinterpret_cast<uint8_t*>(base);
    qs = reinterpret_cast<int8_t*>(base + bytes_q);
    scale = reinterpret_cast<float*>(base + 2 * bytes_q);
    sums = reinterpret_cast<int32_t*>(base + 2 * bytes_q + bytes_s);
  }
};

// Quantizes all m rows; false if a value is not finite.
bool quantize_all(const Kernels& kern, const float* x, int64_t m, int64_t ldx, int64_t k, int64_t kp, int64_t group,
                  Quantized& qa, int nthreads) {
  const int64_t groups = kp / group;
  const int64_t nt = std::max<int64_t>(1, std::min<int64_t>(nthreads, m * k / (int64_t(1) << 15)));
  std::atomic<bool> finite{true};
  parallel_run(static_cast<int>(std::min<int64_t>(nt, m)), [&](int tid) {
    const int64_t parts = std::min<int64_t>(nt, m);
    const int64_t r0 = m * tid / parts, r1 = m * (tid + 1) / parts;
    if (r1 > r0 && !kern.quantize(x + r0 * ldx, r1 - r0, ldx, k, kp, group, qa.qu + r0 * kp, qa.qs + r0 * kp,
                                  qa.scale + r0 * groups, qa.sums + r0 * groups))
      finite = false;
  });
  return finite;
}

// sums_ld: the activation sums per row (groups, or the codebook format's sub-blocks).
template <class Weight, class Tile>
void run_tiles(const Quantized& qa, int64_t m, int64_t kp, int64_t groups, int64_t group, int64_t sums_ld,
               const Weight& w, int64_t block_bytes, Tile tile, const float* bias, float* y, int64_t ldy, int nthreads,
               int64_t row_block = kRowBlock, void (*begin)() = nullptr, void (*end)() = nullptr) {
  const int64_t blocks = (w.n + kBlock - 1) / kBlock;
  const int64_t panel = std::max<int64_t>(1, kPanelBytes / block_bytes);
  // Enough blocks per thread to be worth waking it.
  const int64_t nt = std::max<int64_t>(1, std::min<int64_t>(nthreads, blocks * block_bytes * std::max<int64_t>(m, 1) /
                                                                          (int64_t(1) << 16)));
  const int parts = static_cast<int>(std::min<int64_t>(nt, blocks));
  parallel_run(parts, [&](int tid) {
    const int64_t b0 = blocks * tid / parts, b1 = blocks * (tid + 1) / parts;
    if (begin) begin();
    for (int64_t p0 = b0; p0 < b1; p0 += panel) {
      const int64_t p1 = std::min(b1, p0 + panel);
      for (int64_t r0 = 0; r0 < m; r0 += row_block) {
        const QuantRows rows{qa.qu + r0 * kp, qa.qs + r0 * kp, qa.scale + r0 * groups, qa.sums + r0 * sums_ld, kp,
                             groups, group};
        tile(rows, std::min(row_block, m - r0), w, p0, p1, bias, y + r0 * ldy, ldy);
      }
    }
    if (end) end();
  });
}

}  // namespace

const WideKernels wide_none = {nullptr, nullptr, nullptr, nullptr};

bool qmatmul_int8(const float* x, int64_t m, int64_t ldx, const Int8Weight& w, const float* bias, float* y,
                  int64_t ldy, Isa isa, int nthreads) {
  if (m == 0 || w.n == 0) return true;
  const Kernels& kern = lookup<Kernels>("qmatmul", isa);
  const WideKernels& wide = lookup<WideKernels>("qmatmul_wide", isa);
  const bool use_wide = wide.int8_rows != nullptr && m >= kWideMinRows;
  Quantized qa(use_wide ? (m + kWideRows - 1) / kWideRows * kWideRows : m, w.kp, 1);
  if (!quantize_all(kern, x, m, ldx, w.k, w.kp, w.kp, qa, nthreads)) return false;
  if (use_wide)
    run_tiles(qa, m, w.kp, 1, w.kp, 1, w, w.kp * kBlock, wide.int8_rows, bias, y, ldy, nthreads, kWideRows,
              wide.thread_begin, wide.thread_end);
  else
    run_tiles(qa, m, w.kp, 1, w.kp, 1, w, w.kp * kBlock, kern.int8_tile, bias, y, ldy, nthreads);
  return true;
}

namespace {

// The grouped formats: activations quantized per row and group, then tile (the kernel set's member).
template <class Weight, class Tile>
bool grouped(const float* x, int64_t m, int64_t ldx, const Weight& w, int64_t block_bytes, Tile Kernels::*tile,
             const float* bias, float* y, int64_t ldy, Isa isa, int nthreads) {
  if (m == 0 || w.n == 0) return true;
  const Kernels& kern = lookup<Kernels>("qmatmul", isa);
  const int64_t groups = w.kp / w.group;
  Quantized qa(m, w.kp, groups);
  if (!quantize_all(kern, x, m, ldx, w.k, w.kp, w.group, qa, nthreads)) return false;
  run_tiles(qa, m, w.kp, groups, w.group, groups, w, block_bytes, kern.*tile, bias, y, ldy, nthreads);
  return true;
}

}  // namespace

bool qmatmul_int8g(const float* x, int64_t m, int64_t ldx, const Int8GWeight& w, const float* bias, float* y,
                   int64_t ldy, Isa isa, int nthreads) {
  return grouped(x, m, ldx, w, w.kp * kBlock, &Kernels::int8g_tile, bias, y, ldy, isa, nthreads);
}

bool qmatmul_int4(const float* x, int64_t m, int64_t ldx, const Int4Weight& w, const float* bias, float* y,
                  int64_t ldy, Isa isa, int nthreads) {
  return grouped(x, m, ldx, w, w.kp * kBlock / 2, &Kernels::int4_tile, bias, y, ldy, isa, nthreads);
}

bool qmatmul_int4cb(const float* x, int64_t m, int64_t ldx, const Int4CbWeight& w, const float* bias, float* y,
                    int64_t ldy, Isa isa, int nthreads) {
  if (m == 0 || w.n == 0) return true;
  const Kernels& kern = lookup<Kernels>("qmatmul", isa);
  const WideKernels& wide = lookup<WideKernels>("qmatmul_wide", isa);
  const bool use_wide = wide.int4cb_rows != nullptr && m >= kWideMinRows;
  // The activations' rows span whole super-blocks (their groups); the weight's, K padded to 16.
  const int64_t kp = w.kp_rows(), supers = w.supers(), subs = kp / kSub;
  Quantized qa(use_wide ? (m + kWideRows - 1) / kWideRows * kWideRows : m, kp, subs);
  if (!quantize_all(kern, x, m, ldx, w.k, kp, kSuper, qa, nthreads)) return false;
  const int64_t block_bytes = w.kp * kBlock / 2;
  if (use_wide) {  // signed by signed: no sums needed; all the rows in one call (the kernel expands
                   // each block's weights once for them)
    run_tiles(qa, m, kp, supers, kSuper, subs, w, block_bytes, wide.int4cb_rows, bias, y, ldy, nthreads, m,
              wide.thread_begin, wide.thread_end);
    return true;
  }
  // The sums per sub-block replace those per super-block.
  for (int64_t r = 0; r < m; ++r)
    for (int64_t j = 0; j < subs; ++j) {
      int32_t sum = 0;
      for (int64_t i = 0; i < kSub; ++i) sum += qa.qs[r * kp + j * kSub + i];
      qa.sums[r * subs + j] = sum;
    }
  run_tiles(qa, m, kp, supers, kSuper, subs, w, block_bytes, kern.int4cb_tile, bias, y, ldy, nthreads);
  return true;
}

}  // namespace ember::qmatmul
