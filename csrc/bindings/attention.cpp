// ember._C.attention_fwd, attention_bwd and their references. ember.kernels.attention
// broadcasts the mask, allocates the outputs and draws the dropout seed; these check
// everything again.
#include <cmath>
#include <utility>

#include "bindings/common.h"
#include "ops/attention/attention.h"

namespace ember::bindings {
namespace {

template <class T>
ArrayView heads_arg(const py::handle& obj, const char* name, Shape shape, Access access = Access::read) {
  return array_arg(obj, name, {dtype_of<T>(), shape, Layout::contiguous, access});
}

// The scalars and the mask (None, or float32 (B, H, Tq, Tk) with any strides: zero where it
// broadcasts) of a problem whose shapes are set; `mask` is left the mask's view (empty for None),
// for the callers' overlap checks.
void set_options(attention::Problem& p, const py::handle& mask_obj, double scale, bool causal, double dropout_p,
                 int64_t seed, ArrayView& mask) {
  EMBER_CHECK_VALUE(std::isfinite(scale), "scale must be finite, got ", scale);
  EMBER_CHECK_VALUE(dropout_p >= 0 && dropout_p < 1, "dropout_p must be in [0, 1), got ", dropout_p);
  p.scale = scale, p.causal = causal;
  p.dropout_p = static_cast<float>(dropout_p), p.seed = static_cast<uint64_t>(seed);
  if (!mask_obj.is_none()) {
    EMBER_CHECK_VALUE(!causal, "attn_mask and is_causal cannot both be set");
    mask = array_arg(mask_obj, "attn_mask", {DType::float32, {p.batch, p.heads, p.tq, p.tk}, Layout::strided});
    p.mask = mask.ptr<const float>();
    for (int t = 0; t < 4; ++t) p.mask_strides[t] = mask.shape[t] == 1 ? 0 : mask.strides[t];
  }
}

// The problem from q (B, H, Tq, D), k (B, Hkv, Tk, D), v (B, Hkv, Tk, Dv), C-contiguous.
template <class T>
attention::Problem problem(const ArrayView& q, const ArrayView& k, const ArrayView& v, const py::handle& mask_obj,
                           double scale, bool causal, double dropout_p, int64_t seed, ArrayView& mask) {
  EMBER_CHECK_VALUE(k.shape[0] == q.shape[0] && k.shape[3] == q.shape[3], "key has shape ", shape_str(k.shape),
                    " but query has shape ", shape_str(q.shape), ": batch and head size must agree");
  EMBER_CHECK_VALUE(v.shape[0] == k.shape[0] && v.shape[1] == k.shape[1] && v.shape[2] == k.shape[2], "value has shape ",
                    shape_str(v.shape), " but key has shape ", shape_str(k.shape),
                    ": batch, heads and length must agree");
  EMBER_CHECK_VALUE(k.shape[1] >= 1 && q.shape[1] % k.shape[1] == 0, "query's ", q.shape[1],
                    " heads must be a multiple of key's ", k.shape[1]);
  attention::Problem p;
  p.batch = q.shape[0], p.heads = q.shape[1], p.kv_heads = k.shape[1];
  p.tq = q.shape[2], p.tk = k.shape[2], p.d = q.shape[3], p.dv = v.shape[3];
  set_options(p, mask_obj, scale, causal, dropout_p, seed, mask);
  p.set_contiguous();
  return p;
}

// Self-attention read from the stacked projection qkv (N, T, 3E) -- query | key | value, each E
// = heads x head size wide -- in place, its output written as (N, T, E): the layouts the
// projections before and after it use, so that neither side copies.
attention::Problem qkv_problem(const ArrayView& qkv, int64_t heads, const py::handle& mask_obj, double scale,
                               bool causal, double dropout_p, int64_t seed, ArrayView& mask) {
  const int64_t width = qkv.shape[2];
  EMBER_CHECK_VALUE(heads >= 1 && width % (3 * heads) == 0, "qkv's last dimension (", width,
                    ") must be 3 x heads x head size, with heads = ", heads);
  attention::Problem p;
  p.batch = qkv.shape[0], p.heads = p.kv_heads = heads, p.tq = p.tk = qkv.shape[1];
  p.d = p.dv = width / (3 * heads);
  set_options(p, mask_obj, scale, causal, dropout_p, seed, mask);
  p.q_rows = p.k_rows = p.v_rows = {p.tq * width, p.d, width};
  p.o_rows = {p.tq * heads * p.d, p.d, heads * p.d};
  return p;
}

template <bool Ref, class T>
void fwd_t(const py::handle& q_obj, const py::handle& k_obj, const py::handle& v_obj, const py::handle& mask_obj,
           const py::handle& out_obj, const py::handle& lse_obj, double scale, bool causal, double dropout_p,
           int64_t seed) {
  const ArrayView q = heads_arg<T>(q_obj, "query", {-1, -1, -1, -1});
  const ArrayView k = heads_arg<T>(k_obj, "key", {-1, -1, -1, -1});
  const ArrayView v = heads_arg<T>(v_obj, "value", {-1, -1, -1, -1});
  ArrayView mask;
  const attention::Problem p = problem<T>(q, k, v, mask_obj, scale, causal, dropout_p, seed, mask);
  const ArrayView out = heads_arg<T>(out_obj, "out", {p.batch, p.heads, p.tq, p.dv}, Access::write);
  const ArrayView lse = heads_arg<T>(lse_obj, "out_lse", {p.batch, p.heads, p.tq}, Access::write);
  for (const ArrayView* in : {&q, &k, &v, &std::as_const(mask)}) {
    check_apart(out, *in);
    check_apart(lse, *in);
  }
  check_apart(out, lse);
  const Active active;
  py::gil_scoped_release release;
  if constexpr (Ref)
    attention::attention_fwd_ref(p, q.ptr<const T>(), k.ptr<const T>(), v.ptr<const T>(), out.ptr<T>(), lse.ptr<T>());
  else
    attention::attention_fwd(p, q.ptr<const T>(), k.ptr<const T>(), v.ptr<const T>(), out.ptr<T>(), lse.ptr<T>(),
                             active.isa, active.nthreads);
}

template <bool Ref>
void fwd(const py::handle& query, const py::handle& key, const py::handle& value, const py::handle& attn_mask,
         const py::handle& out, const py::handle& out_lse, double scale, bool is_causal, double dropout_p,
         int64_t seed) {
  if (runs_float64<Ref>(query, "query", "attention_fwd"))
    return fwd_t<true, double>(query, key, value, attn_mask, out, out_lse, scale, is_causal, dropout_p, seed);
  fwd_t<Ref, float>(query, key, value, attn_mask, out, out_lse, scale, is_causal, dropout_p, seed);
}

// The gradients dq, dk, dv: written, never read; apart from every input and from one another.
void check_gradients(const ArrayView& dq, const ArrayView& dk, const ArrayView& dv,
                     std::initializer_list<const ArrayView*> inputs) {
  for (const ArrayView* in : inputs) {
    check_apart(dq, *in);
    check_apart(dk, *in);
    check_apart(dv, *in);
  }
  check_apart(dq, dk);
  check_apart(dq, dv);
  check_apart(dk, dv);
}

void bwd(const py::handle& q_obj, const py::handle& k_obj, const py::handle& v_obj, const py::handle& out_obj,
         const py::handle& dout_obj, const py::handle& lse_obj, const py::handle& mask_obj, const py::handle& dq_obj,
         const py::handle& dk_obj, const py::handle& dv_obj, double scale, bool causal, double dropout_p,
         int64_t seed) {
  const ArrayView q = heads_arg<float>(q_obj, "query", {-1, -1, -1, -1});
  const ArrayView k = heads_arg<float>(k_obj, "key", {-1, -1, -1, -1});
  const ArrayView v = heads_arg<float>(v_obj, "value", {-1, -1, -1, -1});
  ArrayView mask;
  const attention::Problem p = problem<float>(q, k, v, mask_obj, scale, causal, dropout_p, seed, mask);
  const ArrayView out = heads_arg<float>(out_obj, "out", {p.batch, p.heads, p.tq, p.dv});
  const ArrayView dout = heads_arg<float>(dout_obj, "grad_out", {p.batch, p.heads, p.tq, p.dv});
  const ArrayView lse = heads_arg<float>(lse_obj, "lse", {p.batch, p.heads, p.tq});
  const ArrayView dq = heads_arg<float>(dq_obj, "out_query", {p.batch, p.heads, p.tq, p.d}, Access::write);
  const ArrayView dk = heads_arg<float>(dk_obj, "out_key", {p.batch, p.kv_heads, p.tk, p.d}, Access::write);
  const ArrayView dv = heads_arg<float>(dv_obj, "out_value", {p.batch, p.kv_heads, p.tk, p.dv}, Access::write);
  check_gradients(dq, dk, dv, {&q, &k, &v, &out, &dout, &lse, &std::as_const(mask)});
  const Active active;
  py::gil_scoped_release release;
  attention::attention_bwd(p, q.ptr<const float>(), k.ptr<const float>(), v.ptr<const float>(),
                           out.ptr<const float>(), dout.ptr<const float>(), lse.ptr<const float>(), dq.ptr<float>(),
                           dk.ptr<float>(), dv.ptr<float>(), active.isa, active.nthreads);
}

template <class T>
void bwd_ref_t(const py::handle& q_obj, const py::handle& k_obj, const py::handle& v_obj, const py::handle& dout_obj,
               const py::handle& mask_obj, const py::handle& dq_obj, const py::handle& dk_obj,
               const py::handle& dv_obj, double scale, bool causal, double dropout_p, int64_t seed) {
  const ArrayView q = heads_arg<T>(q_obj, "query", {-1, -1, -1, -1});
  const ArrayView k = heads_arg<T>(k_obj, "key", {-1, -1, -1, -1});
  const ArrayView v = heads_arg<T>(v_obj, "value", {-1, -1, -1, -1});
  ArrayView mask;
  const attention::Problem p = problem<T>(q, k, v, mask_obj, scale, causal, dropout_p, seed, mask);
  const ArrayView dout = heads_arg<T>(dout_obj, "grad_out", {p.batch, p.heads, p.tq, p.dv});
  const ArrayView dq = heads_arg<T>(dq_obj, "out_query", {p.batch, p.heads, p.tq, p.d}, Access::write);
  const ArrayView dk = heads_arg<T>(dk_obj, "out_key", {p.batch, p.kv_heads, p.tk, p.d}, Access::write);
  const ArrayView dv = heads_arg<T>(dv_obj, "out_value", {p.batch, p.kv_heads, p.tk, p.dv}, Access::write);
  check_gradients(dq, dk, dv, {&q, &k, &v, &dout, &std::as_const(mask)});
  py::gil_scoped_release release;
  attention::attention_bwd_ref(p, q.ptr<const T>(), k.ptr<const T>(), v.ptr<const T>(), dout.ptr<const T>(),
                               dq.ptr<T>(), dk.ptr<T>(), dv.ptr<T>());
}

void bwd_ref(const py::handle& query, const py::handle& key, const py::handle& value, const py::handle& grad_out,
             const py::handle& attn_mask, const py::handle& out_query, const py::handle& out_key,
             const py::handle& out_value, double scale, bool is_causal, double dropout_p, int64_t seed) {
  if (dtype_of_arg(query) == DType::float64)
    return bwd_ref_t<double>(query, key, value, grad_out, attn_mask, out_query, out_key, out_value, scale, is_causal,
                             dropout_p, seed);
  bwd_ref_t<float>(query, key, value, grad_out, attn_mask, out_query, out_key, out_value, scale, is_causal, dropout_p,
                   seed);
}

void qkv_fwd(const py::handle& qkv_obj, int64_t heads, const py::handle& mask_obj, const py::handle& out_obj,
             const py::handle& lse_obj, double scale, bool causal, double dropout_p, int64_t seed) {
  const ArrayView qkv = heads_arg<float>(qkv_obj, "qkv", {-1, -1, -1});
  ArrayView mask;
  const attention::Problem p = qkv_problem(qkv, heads, mask_obj, scale, causal, dropout_p, seed, mask);
  const ArrayView out = heads_arg<float>(out_obj, "out", {p.batch, p.tq, p.heads * p.dv}, Access::write);
  const ArrayView lse = heads_arg<float>(lse_obj, "out_lse", {p.batch, p.heads, p.tq}, Access::write);
  for (const ArrayView* in : {&qkv, &std::as_const(mask)}) {
    check_apart(out, *in);
    check_apart(lse, *in);
  }
  check_apart(out, lse);
  const Active active;
  const float* base = qkv.ptr<const float>();
  const int64_t e = p.heads * p.d;
  py::gil_scoped_release release;
  attention::attention_fwd(p, base, base + e, base + 2 * e, out.ptr<float>(), lse.ptr<float>(), active.isa,
                           active.nthreads);
}

void qkv_bwd(const py::handle& qkv_obj, int64_t heads, const py::handle& out_obj, const py::handle& dout_obj,
             const py::handle& lse_obj, const py::handle& mask_obj, const py::handle& dqkv_obj, double scale,
             bool causal, double dropout_p, int64_t seed) {
  const ArrayView qkv = heads_arg<float>(qkv_obj, "qkv", {-1, -1, -1});
  ArrayView mask;
  const attention::Problem p = qkv_problem(qkv, heads, mask_obj, scale, causal, dropout_p, seed, mask);
  const ArrayView out = heads_arg<float>(out_obj, "out", {p.batch, p.tq, p.heads * p.dv});
  const ArrayView dout = heads_arg<float>(dout_obj, "grad_out", {p.batch, p.tq, p.heads * p.dv});
  const ArrayView lse = heads_arg<float>(lse_obj, "lse", {p.batch, p.heads, p.tq});
  const ArrayView dqkv = heads_arg<float>(dqkv_obj, "out_qkv", {p.batch, p.tq, qkv.shape[2]}, Access::write);
  for (const ArrayView* in : {&qkv, &out, &dout, &lse, &std::as_const(mask)}) check_apart(dqkv, *in);
  const Active active;
  const float* base = qkv.ptr<const float>();
  float* grad = dqkv.ptr<float>();
  const int64_t e = p.heads * p.d;
  py::gil_scoped_release release;
  attention::attention_bwd(p, base, base + e, base + 2 * e, out.ptr<const float>(), dout.ptr<const float>(),
                           lse.ptr<const float>(), grad, grad + e, grad + 2 * e, active.isa, active.nthreads);
}

}  // namespace

#define EMBER_ATTENTION_SCALARS py::arg("scale"), py::arg("is_causal"), py::arg("dropout_p"), py::arg("seed")

void bind_attention(py::module_& m) {
  def(m, "attention_fwd", &fwd<false>,
      "out = softmax(scale * query @ key^T + attn_mask, causal) @ value, with dropout, and out_lse = each row's\n"
      "log-sum-exp (-inf where a query sees no key, whose out is 0); the T x T scores are never stored.\n"
      "query (B, H, Tq, D), key (B, Hkv, Tk, D), value (B, Hkv, Tk, Dv), out (B, H, Tq, Dv), out_lse (B, H, Tq),\n"
      "C-contiguous float32, H a multiple of Hkv; attn_mask None or float32 (B, H, Tq, Tk), additive, any strides.",
      py::arg("query"), py::arg("key"), py::arg("value"), py::arg("attn_mask"), py::arg("out"), py::arg("out_lse"),
      EMBER_ATTENTION_SCALARS);
  def(m, "attention_fwd_ref", &fwd<true>,
      "The reference attention_fwd (whole rows, double sums); float32 or float64.", py::arg("query"), py::arg("key"),
      py::arg("value"), py::arg("attn_mask"), py::arg("out"), py::arg("out_lse"), EMBER_ATTENTION_SCALARS);
  def(m, "attention_bwd", &bwd,
      "out_query, out_key, out_value = the gradients of attention_fwd for grad_out, from its inputs, its out and\n"
      "its lse (the probabilities recomputed block by block).",
      py::arg("query"), py::arg("key"), py::arg("value"), py::arg("out"), py::arg("grad_out"), py::arg("lse"),
      py::arg("attn_mask"), py::arg("out_query"), py::arg("out_key"), py::arg("out_value"), EMBER_ATTENTION_SCALARS);
  def(m, "attention_qkv_fwd", &qkv_fwd,
      "attention_fwd of self-attention read in place from the stacked projection qkv (N, T, 3E: query, key and\n"
      "value, each E = heads x head size wide), out (N, T, E) its heads side by side, out_lse (N, heads, T).",
      py::arg("qkv"), py::arg("heads"), py::arg("attn_mask"), py::arg("out"), py::arg("out_lse"),
      EMBER_ATTENTION_SCALARS);
  def(m, "attention_qkv_bwd", &qkv_bwd,
      "attention_bwd of attention_qkv_fwd: out_qkv (N, T, 3E) = the gradients of query, key and value side by\n"
      "side, as qkv holds them.",
      py::arg("qkv"), py::arg("heads"), py::arg("out"), py::arg("grad_out"), py::arg("lse"), py::arg("attn_mask"),
      py::arg("out_qkv"), EMBER_ATTENTION_SCALARS);
  def(m, "attention_bwd_ref", &bwd_ref,
      "The reference attention_bwd (every probability recomputed in double); float32 or float64.", py::arg("query"),
      py::arg("key"), py::arg("value"), py::arg("grad_out"), py::arg("attn_mask"), py::arg("out_query"),
      py::arg("out_key"), py::arg("out_value"), EMBER_ATTENTION_SCALARS);
}

}  // namespace ember::bindings
