// Scaled dot-product attention, forward and backward, PyTorch's semantics:
//
//   out[b, h, i] = sum_j P[b, h, i, j] v[b, g, j],   g = h / (heads / kv_heads)
//   P = dropout(softmax_j(scale * q[b, h, i] . k[b, g, j] + mask[b, h, i, j]))
//
// with key j hidden from query i where the mask is -inf and, when causal, where j > i (the
// top-left aligned triangle, as PyTorch's is_causal). A query that sees no key has out = 0 and
// contributes no gradient (PyTorch's fused kernels do the same). Dropout zeroes P[i, j] with
// probability p and scales the rest by 1 / (1 - p); which entries it zeroes is a pure function
// of (seed, b, h, i, j) -- dropout_keep below -- so the backward recomputes the same ones.
//
// Arrays are C-contiguous float32: q and out (batch, heads, tq, d) and (batch, heads, tq, dv), k
// (batch, kv_heads, tk, d), v (batch, kv_heads, tk, dv), the gradients alike; lse (batch,
// heads, tq) is the forward's log-sum-exp of each row of scores (-inf for a query that sees no
// key), all the backward needs besides the inputs and the output. The mask is an additive float
// array read through element strides over (batch, heads, tq, tk), 0 where it broadcasts.
//
// The fast path never holds more of the tq x tk scores than one block of queries by one block
// of keys (online softmax in the forward, FlashAttention's recomputation in the backward):
// its memory is O(tq + tk) per thread, not O(tq tk).
#pragma once

#include <cstdint>

#include "core/cpu_features.h"

namespace ember::attention {

// Where each row of an array starts: row i of head h of batch b at b * batch + h * head + i * row
// elements (its columns contiguous).
struct Rows {
  int64_t batch = 0, head = 0, row = 0;
  template <class T>
  T* at(T* base, int64_t b, int64_t h, int64_t i) const {
    return base + b * batch + h * head + i * row;
  }
};

struct Problem {
  int64_t batch = 0, heads = 0, kv_heads = 0;  // heads % kv_heads == 0 (grouped-query attention)
  int64_t tq = 0, tk = 0, d = 0, dv = 0;
  // The layouts of q (and dq), k (and dk), v (and dv), out (and dout) for the fast kernels;
  // set_contiguous() gives each its (batch, heads, length, size) C-contiguous layout. The
  // references read C-contiguous arrays only; lse is always (batch, heads, tq) contiguous.
  Rows q_rows, k_rows, v_rows, o_rows;
  void set_contiguous() {
    q_rows = {heads * tq * d, tq * d, d};
    k_rows = {kv_heads * tk * d, tk * d, d};
    v_rows = {kv_heads * tk * dv, tk * dv, dv};
    o_rows = {heads * tq * dv, tq * dv, dv};
  }
  double scale = 1.0;  // the fast kernels multiply by it rounded to float
  bool causal = false;
  const float* mask = nullptr;  // additive, or null
  int64_t mask_strides[4] = {0, 0, 0, 0};
  float dropout_p = 0.0f;  // in [0, 1)
  uint64_t seed = 0;
};

// Whether dropout keeps P[b, h, i, j]: a counter-based hash (SplitMix64's finaliser) of the seed
// and the entry's index, its top 24 bits compared with p.
inline bool dropout_keep(const Problem& p, int64_t b, int64_t h, int64_t i, int64_t j) {
  uint64_t z = p.seed + 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(((b * p.heads + h) * p.tq + i) * p.tk + j + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return static_cast<float>(z >> 40) * (1.0f / 16777216.0f) >= p.dropout_p;
}

// out and lse from q, k, v.
void attention_fwd(const Problem& p, const float* q, const float* k, const float* v, float* out, float* lse, Isa isa,
                   int nthreads);
// dq, dk, dv from dout and what the forward saw and gave (out, lse).
void attention_bwd(const Problem& p, const float* q, const float* k, const float* v, const float* out,
                   const float* dout, const float* lse, float* dq, float* dk, float* dv, Isa isa, int nthreads);
// The decode kernel (Kernels::decode) of this ISA.
using DecodeFn = void (*)(const float*, const float*, const float*, int64_t, int64_t, int64_t, int64_t, float, float*,
                          float*);
DecodeFn decode_kernel(Isa isa);

// The oracles: each row of scores whole, sums in double, no threads, no blocking. T is float or
// double (gradient checks run in double).
template <class T>
void attention_fwd_ref(const Problem& p, const T* q, const T* k, const T* v, T* out, T* lse);
template <class T>
void attention_bwd_ref(const Problem& p, const T* q, const T* k, const T* v, const T* dout, T* dq, T* dk, T* dv);

// The per-ISA kernels the drivers call (attention_blocks_<isa>.cpp). A forward task is one
// block of up to kBlockQ queries of one head; a backward task is one (batch, kv head): every
// head of its group, so that it alone writes that kv head's dk and dv.
constexpr int64_t kBlockQ = 64;
constexpr int64_t kBlockK = 64;

struct Kernels {
  void (*fwd_block)(const Problem& p, int64_t b, int64_t h, int64_t i0, const float* q, const float* k,
                    const float* v, float* out, float* lse, float* work);
  void (*bwd_group)(const Problem& p, int64_t b, int64_t g, const float* q, const float* k, const float* v,
                    const float* out, const float* dout, const float* lse, float* dq, float* dk, float* dv,
                    float* work);
  // One query against the first `seen` positions of a decoder's cache: out (dv floats) = the
  // softmax over j of scale q . k_j, applied to the values v_j. Keys are stored transposed --
  // key j's feature c at kt[c * stride + j], stride a multiple of 16 -- values as rows of dv;
  // `scores` holds stride floats of working memory.
  void (*decode)(const float* q, const float* kt, const float* v, int64_t seen, int64_t stride, int64_t d,
                 int64_t dv, float scale, float* scores, float* out);
};
extern const Kernels blocks_generic;
extern const Kernels blocks_avx2;
extern const Kernels blocks_avx512;

// A head size rounded up to whole 16-float vectors, as the kernels' blocks hold it.
constexpr int64_t padded(int64_t n) { return (n + 15) / 16 * 16; }
// Floats of working memory each task needs: a forward task's Q^T, S^T and O blocks, a V block
// and the rows' max and sum; a backward task's dQ accumulator and D for one head, its Q,
// dO, S and dP blocks, and a key block's K^T, K, V^T and dK, dV accumulators.
inline int64_t fwd_work_floats(const Problem& p) {
  const int64_t dp = padded(p.d), dvp = padded(p.dv);
  return dp * kBlockQ + kBlockK * kBlockQ + kBlockQ * dvp + kBlockK * dvp + 2 * kBlockQ;
}
inline int64_t bwd_work_floats(const Problem& p) {
  const int64_t dp = padded(p.d), dvp = padded(p.dv);
  return p.tq * dp + p.tq + kBlockQ * dp + kBlockQ * dvp + 2 * kBlockQ * kBlockK + dp * kBlockK + 2 * kBlockK * dp +
         dvp * kBlockK + kBlockK * dvp;
}

}  // namespace ember::attention
