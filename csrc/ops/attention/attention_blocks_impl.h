// The attention kernels, written once over 16-float vectors (core/simd.h) and compiled per ISA
// by attention_blocks_<isa>.cpp.
//
// Every product is one register-tiled kernel, mm: C (rows x n) = alpha A B (+ C), A read as
// stored or transposed, n a multiple of 16; each ISA's file picks the tile that fits its
// registers (6 rows by 64 columns of accumulators with AVX-512's 32). Operands are copied into zero-padded blocks
// (head sizes rounded up to 16) so that mm never sees a ragged edge; a copy costs 1/64 of the
// products that read it.
//
// Forward, per block of kBlockQ queries of one head: for each block of kBlockK keys, S = scale
// Q K^T (K transposed into the block), the mask and the causal triangle applied, then the
// online softmax -- the row's running max m and sum l, the accumulator O rescaled by exp(m_old
// - m) -- and O += P V. Key blocks past the causal diagonal are never visited. Written: out =
// O / l and lse = m + log l. Never held: more than one S block.
//
// Backward, per (batch, kv head), for each head of its group and each block of keys, over the
// blocks of queries that see them: P = exp(S - lse) recomputed, dV += P^T dO, dP = dO V^T, dS =
// P (dP - D) with D_i = dO_i . out_i, dQ += scale dS K (a whole-head accumulator), dK += scale
// dS^T Q. dK and dV of a key block stay in the block's accumulators until all queries have
// passed; dQ is written once per head. Dropout multiplies P by the keep factor where it enters
// O or dV, and dP by it where it enters dS.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "core/simd.h"
#include "ops/attention/attention.h"

namespace ember::attention {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// C[r][0, 16 NV) = alpha sum_p A[r][p] B[p][0, 16 NV) (+ C) for MR rows; A read as stored
// (A[r][p] at a[r lda + p]) or, when TA, transposed (at a[p lda + r]). The accumulators are
// native vectors (core/simd.h's vfn), which stay in registers on every ISA.
template <int MR, int NV, bool TA>
inline void mm_tile(int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc,
                    float alpha, bool accumulate) {
  constexpr int N = NV * 16 / kLanes;
  vfn acc[MR][N];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < N; ++v) acc[r][v] = vfn{};
  for (int64_t p = 0; p < k; ++p) {
    vfn bv[N];
    for (int v = 0; v < N; ++v) bv[v] = loadn(b + p * ldb + kLanes * v);
    for (int r = 0; r < MR; ++r) {
      const vfn av = splatn(TA ? a[p * lda + r] : a[r * lda + p]);
      for (int v = 0; v < N; ++v) acc[r][v] += av * bv[v];
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < N; ++v) {
      vfn out = acc[r][v] * alpha;
      if (accumulate) out += loadn(c + r * ldc + kLanes * v);
      storen(c + r * ldc + kLanes * v, out);
    }
}

// The register tile of an ISA: Rows rows by Vectors 16-float vectors of C in registers.
template <int Rows, int Vectors>
struct Tile {
  static constexpr int rows = Rows, vectors = Vectors;
};

template <class T, int NV, bool TA>
inline void mm_columns(int64_t rows, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                       int64_t ldc, float alpha, bool accumulate) {
  int64_t r = 0;
  for (; r + T::rows <= rows; r += T::rows)
    mm_tile<T::rows, NV, TA>(k, TA ? a + r : a + r * lda, lda, b, ldb, c + r * ldc, ldc, alpha, accumulate);
  // The rows left over, in tiles of 4, 2 and 1: a one-row tile does a load per multiply-add.
  if (T::rows > 4 && r + 4 <= rows) {
    mm_tile<4, NV, TA>(k, TA ? a + r : a + r * lda, lda, b, ldb, c + r * ldc, ldc, alpha, accumulate);
    r += 4;
  }
  if (T::rows > 2 && r + 2 <= rows) {
    mm_tile<2, NV, TA>(k, TA ? a + r : a + r * lda, lda, b, ldb, c + r * ldc, ldc, alpha, accumulate);
    r += 2;
  }
  for (; r < rows; ++r) mm_tile<1, NV, TA>(k, TA ? a + r : a + r * lda, lda, b, ldb, c + r * ldc, ldc, alpha, accumulate);
}

// C (rows x n) = alpha op(A) B (+ C), op(A) rows x k (A itself, or when TA the transpose of the
// k x rows matrix stored at a); n a multiple of 16. T is the register tile.
template <class T, bool TA = false>
inline void mm(int64_t rows, int64_t k, int64_t n, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
               int64_t ldc, float alpha, bool accumulate) {
  constexpr int64_t width = 16 * T::vectors;
  int64_t j = 0;
  for (; j + width <= n; j += width)
    mm_columns<T, T::vectors, TA>(rows, k, a, lda, b + j, ldb, c + j, ldc, alpha, accumulate);
  for (; j < n; j += 16) mm_columns<T, 1, TA>(rows, k, a, lda, b + j, ldb, c + j, ldc, alpha, accumulate);
}

// x where x > m or x is NaN, else m: a running max that keeps a NaN once it has seen one.
// V: the native vector, or 16 floats (run on native parts).
template <class V>
inline V sticky_max(V m, V x) {
  return lanewise([](auto m, auto x) { return (x > m) | (x != x) ? x : m; }, m, x);
}

// dst (rows x ld, zero past cols) = src rows of `cols` floats `stride` apart.
inline void copy_rows(float* dst, int64_t ld, const float* src, int64_t stride, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(dst + r * ld, src + r * stride, sizeof(float) * cols);
    std::fill(dst + r * ld + cols, dst + (r + 1) * ld, 0.0f);
  }
}

// dst (cols x ld) = the transpose of src (rows x cols, row stride `stride`), zero past rows.
inline void transpose(float* dst, int64_t ld, const float* src, int64_t stride, int64_t rows, int64_t cols) {
  for (int64_t c = 0; c < cols; ++c) {
    float* out = dst + c * ld;
    for (int64_t r = 0; r < rows; ++r) out[r] = src[r * stride + c];
    std::fill(out + rows, out + ld, 0.0f);
  }
}

// Row r's scores after the mask and the causal triangle: -inf past `cols` and where hidden.
inline void hide(const Problem& p, int64_t b, int64_t h, int64_t i, int64_t j0, int64_t cols, float* s) {
  if (p.mask) {
    const float* m = p.mask + b * p.mask_strides[0] + h * p.mask_strides[1] + i * p.mask_strides[2];
    for (int64_t c = 0; c < cols; ++c) s[c] += m[(j0 + c) * p.mask_strides[3]];
  }
  const int64_t visible = p.causal ? std::min(cols, std::max<int64_t>(0, i - j0 + 1)) : cols;
  std::fill(s + visible, s + kBlockK, kNegInf);
}

template <class T>
void fwd_block(const Problem& p, int64_t b, int64_t h, int64_t i0, const float* q, const float* k, const float* v,
               float* out, float* lse, float* work) {
  const int64_t dvp = padded(p.dv), rows = std::min(kBlockQ, p.tq - i0), nq = padded(rows);
  const float scale = static_cast<float>(p.scale);
  const int64_t g = h / (p.heads / p.kv_heads), row0 = (b * p.heads + h) * p.tq + i0;  // of lse
  const float* kg = p.k_rows.at(k, b, g, 0);
  const float* vg = p.v_rows.at(v, b, g, 0);
  const int64_t ldk = p.k_rows.row, ldv = p.v_rows.row;
  float* qt = work;  // fwd_work_floats: the blocks below, in this order
  float* st = qt + p.d * kBlockQ;
  float* o = st + kBlockK * kBlockQ;
  float* vb = o + kBlockQ * dvp;
  float* m = vb + kBlockK * dvp;
  float* l = m + kBlockQ;
  // Scores are held transposed, S^T (keys x queries): the softmax runs down its columns, 16
  // queries per vector, and neither K nor a block of P is ever transposed.
  transpose(qt, kBlockQ, p.q_rows.at(q, b, h, i0), p.q_rows.row, rows, p.d);
  std::fill(o, o + nq * dvp, 0.0f);
  std::fill(m, m + kBlockQ, kNegInf);
  std::fill(l, l + kBlockQ, 0.0f);
  const bool direct_v = p.dv == dvp;  // V's rows are whole vectors: read in place
  const int64_t end = p.causal ? std::min(p.tk, i0 + rows) : p.tk;  // keys past the last row's diagonal: unseen
  for (int64_t j0 = 0; j0 < end; j0 += kBlockK) {
    const int64_t cols = std::min(kBlockK, end - j0);
    mm<T>(cols, p.d, nq, kg + j0 * ldk, ldk, qt, kBlockQ, st, kBlockQ, scale, false);
    for (int64_t c = 0; c < cols; ++c) {
      float* sc = st + c * kBlockQ;  // key j0 + c against every query of the block
      if (p.mask) {
        const float* mk = p.mask + b * p.mask_strides[0] + h * p.mask_strides[1] + (j0 + c) * p.mask_strides[3];
        for (int64_t r = 0; r < rows; ++r) sc[r] += mk[(i0 + r) * p.mask_strides[2]];
      }
      if (p.causal) std::fill(sc, sc + std::min(rows, std::max<int64_t>(0, j0 + c - i0)), kNegInf);
    }
    for (int64_t t = 0; t < nq; t += kLanes) {  // native vectors: the selects below stay in registers
      vfn mx = loadn(m + t);
      for (int64_t c = 0; c < cols; ++c) mx = sticky_max(mx, loadn(st + c * kBlockQ + t));
      const vfn base = mx == splatn(kNegInf) ? vfn{} : mx;  // no key seen yet: every exp is 0
      const vfn alpha = exp_nonpositive(loadn(m + t) - base);
      vfn sum{};
      for (int64_t c = 0; c < cols; ++c) {
        const vfn e = exp_nonpositive(loadn(st + c * kBlockQ + t) - base);
        storen(st + c * kBlockQ + t, e);
        sum += e;
      }
      storen(l + t, loadn(l + t) * alpha + sum);
      storen(m + t, mx);
      for (int r = 0; r < kLanes; ++r) {
        if (alpha[r] == 1.0f) continue;
        const vfn ar = splatn(alpha[r]);
        float* orow = o + (t + r) * dvp;
        for (int64_t c = 0; c < dvp; c += kLanes) storen(orow + c, loadn(orow + c) * ar);
      }
    }
    if (p.dropout_p > 0) {
      const float keep = 1.0f / (1.0f - p.dropout_p);
      for (int64_t c = 0; c < cols; ++c)
        for (int64_t r = 0; r < rows; ++r)
          st[c * kBlockQ + r] = dropout_keep(p, b, h, i0 + r, j0 + c) ? st[c * kBlockQ + r] * keep : 0.0f;
    }
    const float* vblock = vg + j0 * ldv;
    int64_t ldb = ldv;
    if (!direct_v) {
      copy_rows(vb, dvp, vblock, ldv, cols, p.dv);
      vblock = vb, ldb = dvp;
    }
    mm<T, true>(nq, cols, dvp, st, kBlockQ, vblock, ldb, o, dvp, 1.0f, true);
  }
  for (int64_t r = 0; r < rows; ++r) {
    float* dst = p.o_rows.at(out, b, h, i0 + r);
    if (l[r] > 0 || std::isnan(l[r])) {
      const float inv = 1.0f / l[r];
      for (int64_t c = 0; c < p.dv; ++c) dst[c] = o[r * dvp + c] * inv;
      lse[row0 + r] = m[r] + std::log(l[r]);
    } else {  // a query that sees no key
      std::fill(dst, dst + p.dv, 0.0f);
      lse[row0 + r] = kNegInf;
    }
  }
}

template <class T>
void bwd_group(const Problem& p, int64_t b, int64_t g, const float* q, const float* k, const float* v,
               const float* out, const float* dout, const float* lse, float* dq, float* dk, float* dv, float* work) {
  const int64_t dp = padded(p.d), dvp = padded(p.dv), group = p.heads / p.kv_heads;
  const float scale = static_cast<float>(p.scale);
  const float* kg = p.k_rows.at(k, b, g, 0);
  const float* vg = p.v_rows.at(v, b, g, 0);
  float* dkg = p.k_rows.at(dk, b, g, 0);
  float* dvg = p.v_rows.at(dv, b, g, 0);
  const int64_t ldk = p.k_rows.row, ldv = p.v_rows.row, ldq = p.q_rows.row, ldo = p.o_rows.row;
  float* dqa = work;  // bwd_work_floats: the head's dQ and D, then the blocks below, in this order
  float* dd = dqa + p.tq * dp;
  float* qb = dd + p.tq;
  float* dob = qb + kBlockQ * dp;
  float* s = dob + kBlockQ * dvp;
  float* dpb = s + kBlockQ * kBlockK;
  float* kt = dpb + kBlockQ * kBlockK;
  float* kb = kt + dp * kBlockK;
  float* vt = kb + kBlockK * dp;
  float* dka = vt + dvp * kBlockK;
  float* dva = dka + kBlockK * dp;
  for (int64_t j = 0; j < p.tk; ++j) {
    std::fill(dkg + j * ldk, dkg + j * ldk + p.d, 0.0f);
    std::fill(dvg + j * ldv, dvg + j * ldv + p.dv, 0.0f);
  }
  const float keep = p.dropout_p > 0 ? 1.0f / (1.0f - p.dropout_p) : 1.0f;
  for (int64_t h = g * group; h < (g + 1) * group; ++h) {
    const int64_t head0 = (b * p.heads + h) * p.tq;  // of lse
    const float* qh = p.q_rows.at(q, b, h, 0);
    const float* oh = p.o_rows.at(out, b, h, 0);
    const float* doh = p.o_rows.at(dout, b, h, 0);
    float* dqh = p.q_rows.at(dq, b, h, 0);
    for (int64_t i = 0; i < p.tq; ++i) {  // D_i = dO_i . out_i
      double t = 0;
      for (int64_t c = 0; c < p.dv; ++c) t += double(doh[i * ldo + c]) * double(oh[i * ldo + c]);
      dd[i] = static_cast<float>(t);
    }
    std::fill(dqa, dqa + p.tq * dp, 0.0f);
    for (int64_t j0 = 0; j0 < p.tk; j0 += kBlockK) {
      const int64_t cols = std::min(kBlockK, p.tk - j0), colsp = padded(cols);
      transpose(kt, kBlockK, kg + j0 * ldk, ldk, cols, p.d);
      copy_rows(kb, dp, kg + j0 * ldk, ldk, cols, p.d);
      std::fill(kb + cols * dp, kb + colsp * dp, 0.0f);
      transpose(vt, kBlockK, vg + j0 * ldv, ldv, cols, p.dv);
      std::fill(dka, dka + colsp * dp, 0.0f);
      std::fill(dva, dva + colsp * dvp, 0.0f);
      for (int64_t i0 = p.causal ? j0 / kBlockQ * kBlockQ : 0; i0 < p.tq; i0 += kBlockQ) {
        const int64_t rows = std::min(kBlockQ, p.tq - i0);
        copy_rows(qb, dp, qh + i0 * ldq, ldq, rows, p.d);
        copy_rows(dob, dvp, doh + i0 * ldo, ldo, rows, p.dv);
        mm<T>(rows, p.d, colsp, qb, dp, kt, kBlockK, s, kBlockK, scale, false);
        mm<T>(rows, p.dv, colsp, dob, dvp, vt, kBlockK, dpb, kBlockK, 1.0f, false);
        for (int64_t r = 0; r < rows; ++r) {
          float* sr = s + r * kBlockK;
          float* dpr = dpb + r * kBlockK;
          hide(p, b, h, i0 + r, j0, cols, sr);
          const float li = lse[head0 + i0 + r];
          if (li == kNegInf) {  // a query that sees no key has no gradient
            std::fill(sr, sr + kBlockK, 0.0f);
            std::fill(dpr, dpr + kBlockK, 0.0f);
            continue;
          }
          const vfn vl = splatn(li), vd = splatn(dd[i0 + r]);
          for (int64_t c = 0; c < colsp; c += kLanes) storen(sr + c, exp_nonpositive(loadn(sr + c) - vl));
          if (p.dropout_p > 0) {
            for (int64_t c = 0; c < cols; ++c) {
              const float z = dropout_keep(p, b, h, i0 + r, j0 + c) ? keep : 0.0f;
              const float pr = sr[c];
              sr[c] = pr * z;                       // the kept probability: into dV
              dpr[c] = pr * (dpr[c] * z - dd[i0 + r]);  // dS
            }
            std::fill(dpr + cols, dpr + kBlockK, 0.0f);
          } else {
            for (int64_t c = 0; c < colsp; c += kLanes) {
              const vfn pr = loadn(sr + c);
              storen(dpr + c, pr * (loadn(dpr + c) - vd));
            }
          }
        }
        mm<T, true>(colsp, rows, dvp, s, kBlockK, dob, dvp, dva, dvp, 1.0f, true);  // dV += P^T dO
        mm<T>(rows, colsp, dp, dpb, kBlockK, kb, dp, dqa + i0 * dp, dp, scale, true);
        mm<T, true>(colsp, rows, dp, dpb, kBlockK, qb, dp, dka, dp, scale, true);  // dK += dS^T Q
      }
      for (int64_t c = 0; c < cols; ++c) {
        for (int64_t t = 0; t < p.d; ++t) dkg[(j0 + c) * ldk + t] += dka[c * dp + t];
        for (int64_t t = 0; t < p.dv; ++t) dvg[(j0 + c) * ldv + t] += dva[c * dvp + t];
      }
    }
    for (int64_t i = 0; i < p.tq; ++i) std::memcpy(dqh + i * ldq, dqa + i * dp, sizeof(float) * p.d);
  }
}

// The decode kernel's two products, NV native vectors at a time in registers, in the largest
// blocks that fit: scores s[j..] = scale sum_c q[c] kt[c][j..] (each row of the transposed keys
// read in order, so the hardware prefetches it), and out[c..] = sum_j p_j v_j[c..].
template <int NV>
inline void decode_scores(const float* q, const float* kt, int64_t stride, int64_t d, int64_t j, float scale,
                          float* s) {
  vfn acc[NV];
  for (int i = 0; i < NV; ++i) acc[i] = vfn{};
  for (int64_t c = 0; c < d; ++c) {
    const vfn qc = splatn(q[c]);
    const float* row = kt + c * stride + j;
    for (int i = 0; i < NV; ++i) acc[i] += qc * loadn(row + i * kLanes);
  }
  for (int i = 0; i < NV; ++i) storen(s + j + i * kLanes, acc[i] * scale);
}
template <int NV>
inline void decode_values(const float* p, float inv, const float* v, int64_t seen, int64_t dv, int64_t c, float* out) {
  vfn acc[NV];
  for (int i = 0; i < NV; ++i) acc[i] = vfn{};
  for (int64_t j = 0; j < seen; ++j) {
    const vfn pj = splatn(p[j] * inv);
    const float* vj = v + j * dv + c;
    for (int i = 0; i < NV; ++i) acc[i] += pj * loadn(vj + i * kLanes);
  }
  for (int i = 0; i < NV; ++i) storen(out + c + i * kLanes, acc[i]);
}
// run(NV, at) over [0, n) (a multiple of kLanes) in blocks of 8, 4, 2 and 1 native vectors.
template <class Run>
inline void in_vector_blocks(int64_t n, Run&& run) {
  int64_t at = 0;
  const auto blocks = [&](auto nv) {
    for (; at + decltype(nv)::value * kLanes <= n; at += decltype(nv)::value * kLanes) run(nv, at);
  };
  blocks(std::integral_constant<int, 8>{});
  blocks(std::integral_constant<int, 4>{});
  blocks(std::integral_constant<int, 2>{});
  blocks(std::integral_constant<int, 1>{});
}

// One query against a decoder's cache (attention.h: Kernels::decode): the scores of the
// positions (16 at a time, those past `seen` hidden), the softmax over them, then the values
// weighted in turn.
void decode(const float* q, const float* kt, const float* v, int64_t seen, int64_t stride, int64_t d, int64_t dv,
            float scale, float* s, float* out) {
  const int64_t n = (seen + 15) / 16 * 16;
  in_vector_blocks(n, [&](auto nv, int64_t j) { decode_scores<decltype(nv)::value>(q, kt, stride, d, j, scale, s); });
  std::fill(s + seen, s + n, kNegInf);  // the positions past the last one seen take no weight
  vf16 mx = splat(kNegInf);
  for (int64_t j = 0; j < n; j += 16) mx = sticky_max(mx, load16(s + j));
  float m = kNegInf;
  for (int r = 0; r < 16; ++r) m = mx[r] > m || mx[r] != mx[r] ? mx[r] : m;
  const vf16 base = splat(m == kNegInf ? 0.0f : m);
  vf16 sum = splat(0.0f);
  for (int64_t j = 0; j < n; j += 16) {
    const vf16 e = vexp_nonpositive(load16(s + j) - base);
    store16(s + j, e);
    sum += e;
  }
  float total = 0.0f;
  for (int r = 0; r < 16; ++r) total += sum[r];
  const float inv = 1.0f / total;
  const int64_t whole = dv / kLanes * kLanes;
  in_vector_blocks(whole, [&](auto nv, int64_t c) { decode_values<decltype(nv)::value>(s, inv, v, seen, dv, c, out); });
  for (int64_t c = whole; c < dv; ++c) {
    float acc = 0.0f;
    for (int64_t j = 0; j < seen; ++j) acc += s[j] * inv * v[j * dv + c];
    out[c] = acc;
  }
}

}  // namespace
}  // namespace ember::attention
