// ember._C.Decoder: one token per sequence through a pre-norm decoder-only Transformer (the GPT
// of ember/gpt.py) in a single call, with the keys and values of the positions before it
// cached here. Per block: LayerNorm, the stacked query/key/value projection, attention of the
// new position over the cached ones, the output projection and its residual, LayerNorm, the
// feed-forward (GELU or ReLU) and its residual; then the final LayerNorm and the output head.
// Each matrix is float32 (the GEMM's small-M path, which streams the weight once) or packed
// int8/int4 (the quantized kernels' matrix-vector path), so a quantized model's step reads its
// weights once, at memory speed, with no Python between the kernels.
//
// The arrays are checked once, when the decoder is made, and kept alive by it: they are read
// where they are at each step (a model updated in place is seen). Keys are cached transposed
// (head size x positions), so that the attention kernel's decode step reads 16 positions per
// vector for the scores and whole rows of values for their weighted sum.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <cmath>
#include <limits>
#include <mutex>
#include <string>
#include <vector>

#include "bindings/common.h"
#include "ops/attention/attention.h"
#include "ops/eltwise/eltwise.h"
#include "ops/gemm/gemm.h"
#include "ops/layer_norm/layer_norm.h"
#include "ops/qmatmul/qmatmul.h"

namespace ember::bindings {
namespace {

// A matrix product y = x @ W^T + bias with W float32 (N x K) or packed int8 / int4.
struct Linear {
  int bits = 32;
  int64_t n = 0, k = 0;
  const float* w = nullptr;
  const float* bias = nullptr;
  qmatmul::Int8Weight q8{};
  qmatmul::Int8GWeight q8g{};    // bits 8, group_size > 0
  qmatmul::Int4Weight q4{};
  qmatmul::Int4CbWeight q4cb{};  // bits 4, group_size 0
};

struct Norm {
  const float* weight = nullptr;
  const float* bias = nullptr;
  double eps = 1e-5;
};

struct Block {
  Norm norm1, norm2;
  Linear qkv, out, ff1, ff2;
};

class Decoder {
 public:
  Decoder(int64_t batch, int64_t block_size, int64_t heads, const py::handle& wte, const py::handle& wpe,
          const std::vector<py::tuple>& blocks, const py::tuple& norm, const py::tuple& head,
          const std::string& activation)
      : batch_(batch), block_size_(block_size), heads_(heads) {
    EMBER_CHECK_VALUE(batch >= 1 && block_size >= 1 && heads >= 1,
                      "batch, block_size and heads must be >= 1, got ", batch, ", ", block_size, ", ", heads);
    EMBER_CHECK_VALUE(activation == "gelu" || activation == "relu", "activation must be 'gelu' or 'relu', got '",
                      activation, "'");
    gelu_ = activation == "gelu";
    const ArrayView e = keep(wte, "wte", {DType::float32, {-1, -1}});
    vocab_ = e.shape[0], d_ = e.shape[1];
    EMBER_CHECK_VALUE(d_ % heads == 0, "the width ", d_, " must be a multiple of heads ", heads);
    wte_ = e.ptr<const float>();
    wpe_ = keep(wpe, "wpe", {DType::float32, {block_size, d_}}).ptr<const float>();
    EMBER_CHECK_VALUE(!blocks.empty(), "blocks must hold at least one block");
    for (size_t i = 0; i < blocks.size(); ++i) {
      const py::tuple& t = blocks[i];
      const std::string at = "block " + std::to_string(i);
      EMBER_CHECK_VALUE(t.size() == 6, at, " must be (norm1, qkv, out, norm2, linear1, linear2)");
      Block b;
      b.norm1 = make_norm(t[0], at + " norm1");
      b.qkv = make_linear(t[1], at + " qkv", 3 * d_, d_);
      b.out = make_linear(t[2], at + " out", d_, d_);
      b.norm2 = make_norm(t[3], at + " norm2");
      b.ff1 = make_linear(t[4], at + " linear1", -1, d_);
      b.ff2 = make_linear(t[5], at + " linear2", d_, b.ff1.n);
      ff_ = std::max(ff_, b.ff1.n);
      blocks_.push_back(b);
    }
    norm_ = make_norm(norm, "the final norm");
    head_ = make_linear(head, "head", vocab_, d_);
    hd_ = d_ / heads;
    stride_ = (block_size + 15) / 16 * 16;
    const int64_t per_layer = checked_mul(checked_mul(batch, heads, "the cache"), checked_mul(stride_, hd_, "the cache"),
                                          "the cache");
    keys_.assign(static_cast<size_t>(checked_mul(per_layer, static_cast<int64_t>(blocks_.size()), "the cache")), 0.f);
    values_.assign(keys_.size(), 0.f);
    x_.resize(static_cast<size_t>(batch * d_));
    h_.resize(x_.size());
    t_.resize(static_cast<size_t>(batch * std::max(3 * d_, ff_)));
    stats_.resize(static_cast<size_t>(2 * batch));
    scores_.resize(static_cast<size_t>(batch * heads * stride_));
  }

  int64_t position() const { return pos_; }
  void reset() {
    py::gil_scoped_release release;
    const std::lock_guard<std::mutex> lock(busy_);
    pos_ = 0;
  }

  // The logits (batch x vocabulary) of the next token after `tokens` (one per sequence) at the
  // current position, whose keys and values join the cache.
  py::array step(const py::handle& tokens_obj) {
    const ArrayView t = array_arg(tokens_obj, "tokens", {DType::int64, {batch_}});
    const std::vector<int64_t> tok(t.ptr<const int64_t>(), t.ptr<const int64_t>() + batch_);
    for (int64_t r = 0; r < batch_; ++r)
      EMBER_CHECK_VALUE(tok[r] >= 0 && tok[r] < vocab_, "tokens must be in [0, ", vocab_, "), got ", tok[r]);
    py::array_t<float> logits({batch_, vocab_});
    float* out = logits.mutable_data();
    const Active active;
    {
      py::gil_scoped_release release;
      const std::lock_guard<std::mutex> lock(busy_);
      EMBER_CHECK_VALUE(pos_ < block_size_, "the cache is full: all ", block_size_,
                        " positions are taken (reset() and start again from a shorter context)");
      EMBER_CHECK_VALUE(run(tok.data(), out, active),
                        "the activations overflowed to NaN or infinity; the quantized kernels cannot take them");
      ++pos_;
    }
    return std::move(logits);
  }

 private:
  ArrayView keep(const py::handle& obj, const std::string& name, const Spec& spec) {
    ArrayView v = array_arg(obj, name.c_str(), spec);
    refs_.push_back(py::reinterpret_borrow<py::object>(obj));
    if (v.keep) refs_.push_back(v.keep);
    return v;
  }

  const float* optional(const py::handle& obj, const std::string& name, int64_t n) {
    return obj.is_none() ? nullptr : keep(obj, name, {DType::float32, {n}}).ptr<const float>();
  }

  static py::tuple tuple_arg(const py::handle& obj, const std::string& at) {
    EMBER_CHECK_TYPE(py::isinstance<py::tuple>(obj), at, " must be a tuple, got ", type_name(obj));
    return py::reinterpret_borrow<py::tuple>(obj);
  }

  template <class T>
  static T number(const py::handle& obj, const std::string& at) {
    try {
      return py::cast<T>(obj);
    } catch (const py::cast_error&) {
      throw TypeError(detail::concat(at, " must be a number, got ", type_name(obj)));
    }
  }

  Norm make_norm(const py::handle& obj, const std::string& at) {
    const py::tuple t = tuple_arg(obj, at);
    EMBER_CHECK_VALUE(t.size() == 3, at, " must be (weight or None, bias or None, eps)");
    Norm n;
    n.weight = optional(t[0], at + " weight", d_);
    n.bias = optional(t[1], at + " bias", d_);
    n.eps = number<double>(t[2], at + " eps");
    EMBER_CHECK_VALUE(n.eps >= 0 && std::isfinite(n.eps), at, " eps must be finite and >= 0, got ", n.eps);
    return n;
  }

  // (weight, bias or None) for float32, or (bits, n, k, group_size, data, scales, colsum or
  // None, bias or None) for a packed weight (group_size 0: int8 per channel or, with bits 4, the
  // codebook format; int8 with group_size > 0: grouped int8);
  // n == -1 takes any number of outputs.
  Linear make_linear(const py::handle& obj, const std::string& at, int64_t n, int64_t k) {
    const py::tuple t = tuple_arg(obj, at);
    Linear l;
    if (t.size() == 2) {
      const ArrayView w = keep(t[0], at + " weight", {DType::float32, {n, k}});
      l.n = w.shape[0], l.k = k, l.w = w.ptr<const float>();
      l.bias = optional(t[1], at + " bias", l.n);
      return l;
    }
    EMBER_CHECK_VALUE(t.size() == 8, at, " must be (weight, bias) or (bits, n, k, group_size, data, scales, colsum, "
                                         "bias), group_size 0 for int8 per channel or the int4 codebook format");
    l.bits = number<int>(t[0], at + " bits");
    l.n = number<int64_t>(t[1], at + " n"), l.k = number<int64_t>(t[2], at + " k");
    const int64_t group = number<int64_t>(t[3], at + " group_size");
    EMBER_CHECK_VALUE(l.bits == 8 || l.bits == 4, at, ": bits must be 8 or 4, got ", l.bits);
    EMBER_CHECK_VALUE((n < 0 || l.n == n) && l.n >= 1 && l.k == k, at, " must be ", n < 0 ? -1 : n, " x ", k,
                      ", got ", l.n, " x ", l.k);
    EMBER_CHECK_VALUE(l.k <= qmatmul::kMaxK, at, ": a packed weight takes at most ", qmatmul::kMaxK,
                      " inputs (its integer sums must stay exact), got ", l.k);
    const bool codebook = l.bits == 4 && group == 0;
    EMBER_CHECK_VALUE(group == 0 || (group >= 8 && group % 8 == 0 && group <= 4096), at,
                      ": group_size must be 0 (", l.bits == 8 ? "int8 per channel" : "the codebook format",
                      ") or a multiple of 8 from 8 to 4096, got ", group);
    if (l.bits == 8 && group > 0) {
      const qmatmul::PackedSizes sizes = qmatmul::packed_sizes_int8g(l.n, l.k, group);
      const ArrayView data = keep(t[4], at + " data", {DType::uint8, {sizes.data}});
      const ArrayView scales = keep(t[5], at + " scales", {DType::uint16, {sizes.scales}});
      EMBER_CHECK_VALUE(t[6].is_none(), at, ": a grouped int8 weight has no colsum");
      l.q8g = {l.n, l.k, group, (l.k + group - 1) / group * group, data.ptr<const uint8_t>(),
               scales.ptr<const uint16_t>()};
      l.bias = optional(t[7], at + " bias", l.n);
      return l;
    }
    if (codebook) {
      const qmatmul::PackedSizes sizes = qmatmul::packed_sizes_cb(l.n, l.k);
      const ArrayView data = keep(t[4], at + " data", {DType::uint8, {sizes.data}});
      const ArrayView scales = keep(t[5], at + " scales", {DType::uint8, {sizes.scales}});
      EMBER_CHECK_VALUE(t[6].is_none(), at, ": an int4 weight has no colsum");
      l.q4cb = {l.n, l.k, (l.k + qmatmul::kSub - 1) / qmatmul::kSub * qmatmul::kSub, data.ptr<const uint8_t>(),
                scales.ptr<const uint8_t>()};
      l.bias = optional(t[7], at + " bias", l.n);
      return l;
    }
    const qmatmul::PackedSizes sizes = qmatmul::packed_sizes(l.n, l.k, l.bits, group);
    const ArrayView data =
        keep(t[4], at + " data", {l.bits == 8 ? DType::int8 : DType::uint8, {sizes.data}});
    const ArrayView scales = keep(t[5], at + " scales", {DType::float32, {sizes.scales}});
    if (l.bits == 8) {
      const ArrayView colsum = keep(t[6], at + " colsum", {DType::int32, {sizes.colsum}});
      l.q8 = {l.n, l.k, (l.k + 3) / 4 * 4, data.ptr<const int8_t>(), scales.ptr<const float>(),
              colsum.ptr<const int32_t>()};
    } else {
      EMBER_CHECK_VALUE(t[6].is_none(), at, ": an int4 weight has no colsum");
      l.q4 = {l.n, l.k, group, (l.k + group - 1) / group * group, data.ptr<const uint8_t>(), scales.ptr<const float>()};
    }
    l.bias = optional(t[7], at + " bias", l.n);
    return l;
  }

  // y (rows x n) = x (rows x k) @ W^T + bias; false for a non-finite input to a quantized one.
  bool linear(const Linear& l, const float* x, float* y, const Active& a) const {
    if (l.bits == 8 && l.q8g.data)
      return qmatmul::qmatmul_int8g(x, batch_, l.k, l.q8g, l.bias, y, l.n, a.isa, a.nthreads);
    if (l.bits == 8) return qmatmul::qmatmul_int8(x, batch_, l.k, l.q8, l.bias, y, l.n, a.isa, a.nthreads);
    if (l.bits == 4 && l.q4cb.data)
      return qmatmul::qmatmul_int4cb(x, batch_, l.k, l.q4cb, l.bias, y, l.n, a.isa, a.nthreads);
    if (l.bits == 4) return qmatmul::qmatmul_int4(x, batch_, l.k, l.q4, l.bias, y, l.n, a.isa, a.nthreads);
    gemm::GemmArgs g;
    g.a = MatrixF32{x, batch_, l.k, l.k, 1};
    g.b = MatrixF32{l.w, l.k, l.n, 1, l.k};  // W^T
    g.c = {y, batch_, l.n, l.n};
    g.bias = l.bias;
    gemm::gemm_cpu(g, a.isa, a.nthreads);
    return true;
  }

  void norm(const Norm& n, const float* x, float* y, const Active& a) {
    layer_norm::layer_norm_fwd(x, n.weight, n.bias, batch_, d_, n.eps, y, stats_.data(), stats_.data() + batch_,
                               a.nthreads);
  }

  void add(const float* y) {
    for (size_t i = 0; i < x_.size(); ++i) x_[i] += y[i];
  }

  // The new position's query (qkv rows: q | k | v) against every cached position of layer
  // `layer`, after its key and value join the cache; the heads' outputs go to h_.
  void attend(int64_t layer, const float* qkv, const Active& a) {
    const attention::DecodeFn decode = attention::decode_kernel(a.isa);
    const int64_t per_head = stride_ * hd_;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd_));
    float* kc = keys_.data() + layer * batch_ * heads_ * per_head;
    float* vc = values_.data() + layer * batch_ * heads_ * per_head;
    parallel_ranges(batch_ * heads_, a.nthreads, 2, [&](int64_t lo, int64_t hi) {
      for (int64_t task = lo; task < hi; ++task) {
        const int64_t r = task / heads_, hh = task % heads_;
        const float* q = qkv + r * 3 * d_ + hh * hd_;
        float* kt = kc + task * per_head;  // hd_ x stride_: key j's feature c at c * stride_ + j
        float* v = vc + task * per_head;   // stride_ x hd_
        for (int64_t c = 0; c < hd_; ++c) kt[c * stride_ + pos_] = q[d_ + c];
        std::copy(q + 2 * d_, q + 2 * d_ + hd_, v + pos_ * hd_);
        decode(q, kt, v, pos_ + 1, stride_, hd_, hd_, scale, scores_.data() + task * stride_,
               h_.data() + r * d_ + hh * hd_);
      }
    });
  }

  bool run(const int64_t* tok, float* logits, const Active& a) {
    for (int64_t r = 0; r < batch_; ++r)
      for (int64_t c = 0; c < d_; ++c) x_[r * d_ + c] = wte_[tok[r] * d_ + c] + wpe_[pos_ * d_ + c];
    float* t = t_.data();
    float* h = h_.data();
    for (size_t i = 0; i < blocks_.size(); ++i) {
      const Block& b = blocks_[i];
      norm(b.norm1, x_.data(), h, a);
      if (!linear(b.qkv, h, t, a)) return false;
      attend(static_cast<int64_t>(i), t, a);
      if (!linear(b.out, h, t, a)) return false;
      add(t);
      norm(b.norm2, x_.data(), h, a);
      if (!linear(b.ff1, h, t, a)) return false;
      const int64_t hidden = batch_ * b.ff1.n;
      if (gelu_) {
        eltwise::gelu_fwd(t, t, hidden, a.isa, a.nthreads);
      } else {
        eltwise::relu_fwd(t, t, hidden, a.nthreads);
      }
      // linear2 reads the hidden units from t and writes h (free again after linear1).
      if (!linear(b.ff2, t, h, a)) return false;
      add(h);
    }
    norm(norm_, x_.data(), h, a);
    return linear(head_, h, logits, a);
  }

  int64_t batch_, block_size_, heads_, vocab_ = 0, d_ = 0, hd_ = 0, ff_ = 0, pos_ = 0;
  int64_t stride_ = 0;  // the cache's positions, rounded up to 16
  bool gelu_ = true;
  const float* wte_ = nullptr;
  const float* wpe_ = nullptr;
  std::vector<Block> blocks_;
  Norm norm_;
  Linear head_;
  std::vector<float> keys_, values_, x_, h_, t_, stats_, scores_;
  std::vector<py::object> refs_;  // the arrays read at each step, kept alive
  std::mutex busy_;               // one step at a time (the GIL is released while it runs)
};

}  // namespace

void bind_decoder(py::module_& m) {
  py::class_<Decoder>(m, "Decoder",
                      "One token per sequence through a pre-norm decoder-only Transformer per step(), the keys\n"
                      "and values of earlier positions cached. Made from the token and position embeddings,\n"
                      "per block (norm1, qkv, out, norm2, linear1, linear2), the final norm and the head; a norm\n"
                      "is (weight or None, bias or None, eps), a matrix (weight, bias or None) in float32 or\n"
                      "(bits, n, k, group_size, data, scales, colsum or None, bias or None) packed as\n"
                      "ember.quant packs it (group_size 0: int8 per channel, or with bits 4 the codebook format). Every array is\n"
                      "checked here and kept alive by the decoder.")
      .def(py::init([](int64_t batch, int64_t block_size, int64_t heads, const py::handle& wte, const py::handle& wpe,
                       const std::vector<py::tuple>& blocks, const py::tuple& norm, const py::tuple& head,
                       const std::string& activation) {
             return prefixed("Decoder", [&] {
               return std::make_unique<Decoder>(batch, block_size, heads, wte, wpe, blocks, norm, head, activation);
             });
           }),
           py::arg("batch"), py::arg("block_size"), py::arg("heads"), py::arg("wte"), py::arg("wpe"),
           py::arg("blocks"), py::arg("norm"), py::arg("head"), py::arg("activation") = "gelu")
      .def_property_readonly("position", &Decoder::position, "Positions cached so far.")
      .def("reset", &Decoder::reset, "Empty the cache: the next step is position 0.")
      .def(
          "step",
          [](Decoder& d, const py::handle& tokens) {
            return prefixed("Decoder.step", [&] { return d.step(tokens); });
          },
          "The next token's logits (batch x vocabulary, float32) after tokens (int64, one per sequence)\n"
          "at the next position, which joins the cache.",
          py::arg("tokens"));
}

}  // namespace ember::bindings
