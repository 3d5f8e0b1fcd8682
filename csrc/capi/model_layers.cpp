// The layers of the C API's models (see model.h). Each mirrors its Python layer's arithmetic:
// the same kernel where Python calls one, the same float32 operations in the same order where
// Python computes with NumPy (-ffp-contract=off keeps them unfused), so that the convolution,
// linear, pooling, ReLU, LeakyReLU, GELU, BatchNorm and quantized layers agree bit for bit;
// the exponentials of Sigmoid, SiLU, Tanh and Softmax and the means of LayerNorm agree to a few
// units in the last place (NumPy has its own).
#include <cmath>
#include <cstring>
#include <limits>

#include "capi/geometry.h"
#include "capi/model.h"
#include "capi/qweight.h"
#include "ops/eltwise/eltwise.h"
#include "ops/gemm/gemm.h"

namespace ember::capi::model {
namespace {

using Kind = json::Value::Kind;

// Thrown for a description or weights that do not make a valid layer: the file is damaged.
template <class... Parts>
[[noreturn]] void damaged(const std::string& path, const std::string& name, const Parts&... parts) {
  throw IoError(detail::concat(path, ": module '", name, "': ", parts...));
}

int64_t elements(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

std::string shape_str(const Shape& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + (s.size() == 1 ? ",)" : ")");
}

// Reads a module's config, each bad value an IoError naming the module and the key.
struct Config {
  const json::Value& v;
  const std::string& path;
  const std::string& name;

  const json::Value* get(const char* key) const { return v.find(key); }
  [[noreturn]] void bad(const char* key, const char* want) const { damaged(path, name, "config ", key, " must be ", want); }

  int64_t integer(const char* key, int64_t lo, int64_t fallback = std::numeric_limits<int64_t>::min()) const {
    const json::Value* x = get(key);
    if (x == nullptr && fallback != std::numeric_limits<int64_t>::min()) return fallback;
    if (x == nullptr || !x->is(Kind::number) || !x->integral || x->integer < lo || x->integer >= (int64_t(1) << 40))
      bad(key, lo < 0 ? "an int" : lo == 0 ? "an int >= 0" : "an int >= 1");
    return x->integer;
  }
  // An int or a pair of ints ([a, b]).
  std::pair<int64_t, int64_t> pair(const char* key, int64_t lo, const json::Value* x = nullptr) const {
    if (x == nullptr) x = get(key);
    auto one = [&](const json::Value* e) {
      if (e == nullptr || !e->is(Kind::number) || !e->integral || e->integer < lo || e->integer >= (int64_t(1) << 40))
        bad(key, lo == 0 ? "an int >= 0 or a pair of them" : "an int >= 1 or a pair of them");
      return e->integer;
    };
    if (x != nullptr && x->is(Kind::array)) {
      if (x->items.size() != 2) bad(key, "an int or a pair of ints");
      return {one(&x->items[0]), one(&x->items[1])};
    }
    const int64_t a = one(x);
    return {a, a};
  }
  bool boolean(const char* key, bool fallback) const {
    const json::Value* x = get(key);
    if (x == nullptr) return fallback;
    if (!x->is(Kind::boolean)) bad(key, "true or false");
    return x->boolean;
  }
  double number(const char* key, double fallback) const {
    const json::Value* x = get(key);
    if (x == nullptr) return fallback;
    if (!x->is(Kind::number) || !std::isfinite(x->number)) bad(key, "a finite number");
    return x->number;
  }
};

// ------------------------------------------------------------------ layers

struct Conv2d : Layer {
  ember_conv2d_shape geo{};
  std::vector<float> weight, bias;

  Shape shape(const Shape& in) const override {
    if (in.size() != 4 || in[1] != geo.c)
      reject(detail::concat("expects an (N, ", geo.c, ", H, W) input, got ", shape_str(in)));
    ember_conv2d_shape s = geo;
    s.n = in[0], s.h = in[2], s.w = in[3];
    try {
      const conv2d::Geometry g = conv_geometry(&s);
      return {in[0], geo.o, g.oh, g.ow};
    } catch (const std::invalid_argument& e) {
      reject(e.what());
    }
  }
  void run(const Shape& in, const Shape&, const float* x, float* y) const override {
    ember_conv2d_shape s = geo;
    s.n = in[0], s.h = in[2], s.w = in[3];
    const conv2d::Geometry g = conv_geometry(&s);
    if (g.n * g.o * g.oh * g.ow == 0) return;
    conv2d::conv2d_fwd(g, x, weight.data(), bias.empty() ? nullptr : bias.data(), false, y, active_isa(), threads());
  }
};

// Linear and QuantLinear: over the last dimension, any leading ones.
struct Dense : Layer {
  int64_t in_features = 0, out_features = 0;
  static int64_t rows(const Shape& in) { return elements(Shape(in.begin(), in.end() - 1)); }
  Shape shape(const Shape& in) const override {
    if (in.empty() || in.back() != in_features)
      reject(detail::concat("expects inputs of ", in_features, " features (last dimension), got ", shape_str(in)));
    Shape out = in;
    out.back() = out_features;
    return out;
  }
};

struct Linear : Dense {
  std::vector<float> weight, bias;
  void run(const Shape& in, const Shape&, const float* x, float* y) const override {
    const int64_t m = rows(in);
    gemm::GemmArgs g;
    g.a = MatrixF32{x, m, in_features, in_features, 1};
    g.b = MatrixF32{weight.data(), in_features, out_features, 1, in_features};  // weight^T
    g.c = {y, m, out_features, out_features};
    g.bias = bias.empty() ? nullptr : bias.data();
    gemm::gemm_cpu(g, active_isa(), threads());
  }
};

struct QuantLinear : Dense {
  std::unique_ptr<ember_qweight> weight;
  std::vector<float> bias;
  void run(const Shape& in, const Shape&, const float* x, float* y) const override {
    if (!weight->matmul(x, rows(in), in_features, bias.empty() ? nullptr : bias.data(), y, out_features))
      reject("its input holds NaN or infinity, which int8 activations cannot represent");
  }
};

struct Pool : Layer {
  enum Mode { max, avg } mode = max;
  ember_pool2d_shape geo{};
  bool count_include_pad = true;

  pool2d::Geometry geometry(const Shape& in) const {
    if (in.size() != 4) reject(detail::concat("expects an (N, C, H, W) input, got ", shape_str(in)));
    ember_pool2d_shape s = geo;
    s.n = in[0], s.c = in[1], s.h = in[2], s.w = in[3];
    try {
      const pool2d::Geometry g = pool_geometry(&s, mode == max);
      if (mode == max || !count_include_pad) pool2d::check_windows_reach_input(g);
      return g;
    } catch (const std::invalid_argument& e) {
      reject(e.what());
    }
  }
  Shape shape(const Shape& in) const override {
    const pool2d::Geometry g = geometry(in);
    return {in[0], in[1], g.oh, g.ow};
  }
  void run(const Shape& in, const Shape& out, const float* x, float* y) const override {
    if (elements(out) == 0) return;
    const pool2d::Geometry g = geometry(in);
    if (mode == max)
      pool2d::max_pool2d_fwd(g, x, y, nullptr, active_isa(), threads());
    else
      pool2d::avg_pool2d_fwd(g, count_include_pad, x, y, threads());
  }
};

struct AdaptiveAvgPool : Layer {
  int64_t oh = 0, ow = 0;  // 0: the input's size (PyTorch's None)
  Shape shape(const Shape& in) const override {
    if (in.size() != 4 || in[2] < 1 || in[3] < 1)
      reject(detail::concat("expects an (N, C, H, W) input with H, W >= 1, got ", shape_str(in)));
    return {in[0], in[1], oh ? oh : in[2], ow ? ow : in[3]};
  }
  void run(const Shape& in, const Shape& out, const float* x, float* y) const override {
    if (elements(out) == 0) return;
    pool2d::adaptive_avg_pool2d_fwd(adaptive_geometry(in[0], in[1], in[2], in[3], out[2], out[3]), x, y, threads());
  }
};

struct Activation : Layer {
  enum Fn { relu, leaky_relu, sigmoid, tanh, gelu, silu } fn = relu;
  float slope = 0.01f;
  Shape shape(const Shape& in) const override { return in; }

  static float sigmoid_of(float a) {  // Python's: e = exp(-|a|); a >= 0 ? 1 / (1 + e) : e / (1 + e)
    const float e = std::exp(-std::fabs(a));
    return a >= 0 ? 1.0f / (1.0f + e) : e / (1.0f + e);
  }
  void run(const Shape& in, const Shape&, const float* x, float* y) const override {
    const int64_t n = elements(in);
    switch (fn) {
      case relu: eltwise::relu_fwd(x, y, n, threads()); return;
      case leaky_relu:
        for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0 ? x[i] : x[i] * slope;
        return;
      case sigmoid:
        for (int64_t i = 0; i < n; ++i) y[i] = sigmoid_of(x[i]);
        return;
      case tanh:
        for (int64_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]);
        return;
      case silu:
        for (int64_t i = 0; i < n; ++i) y[i] = x[i] * sigmoid_of(x[i]);
        return;
      case gelu: {  // Python's: a * (0.5 * (1 + erf(a / sqrt(2)))), erf on the same kernel
        std::vector<float> t(static_cast<size_t>(n));
        const float root2 = static_cast<float>(std::sqrt(2.0));
        for (int64_t i = 0; i < n; ++i) t[i] = x[i] / root2;
        eltwise::erf(t.data(), t.data(), n, threads());
        for (int64_t i = 0; i < n; ++i) y[i] = x[i] * (0.5f * (1.0f + t[i]));
        return;
      }
    }
  }
};

// The index of dimension `dim` (negative: from the end) of a rank-`rank` input.
int64_t axis(const Layer& l, int64_t dim, size_t rank) {
  const int64_t r = static_cast<int64_t>(rank);
  if (dim < -r || dim >= r) l.reject(detail::concat("dim ", dim, " is out of range for a ", r, "-d input"));
  return dim < 0 ? dim + r : dim;
}

struct Softmax : Layer {
  int64_t dim = -1;
  Shape shape(const Shape& in) const override {
    axis(*this, dim, in.size());
    return in;
  }
  void run(const Shape& in, const Shape&, const float* x, float* y) const override {
    const int64_t d = axis(*this, dim, in.size());
    int64_t outer = 1, inner = 1;
    for (int64_t i = 0; i < d; ++i) outer *= in[i];
    for (size_t i = static_cast<size_t>(d) + 1; i < in.size(); ++i) inner *= in[i];
    const int64_t len = in[d];
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t i = 0; i < inner; ++i) {
        const float* xs = x + o * len * inner + i;
        float* ys = y + o * len * inner + i;
        float m = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < len; ++j) m = xs[j * inner] > m || std::isnan(xs[j * inner]) ? xs[j * inner] : m;
        double sum = 0;
        for (int64_t j = 0; j < len; ++j) sum += ys[j * inner] = std::exp(xs[j * inner] - m);
        const float s = static_cast<float>(sum);
        for (int64_t j = 0; j < len; ++j) ys[j * inner] /= s;
      }
  }
};

struct BatchNorm : Layer {
  int64_t features = 0;
  bool two_d = true;
  float eps = 1e-5f;
  std::vector<float> weight, bias, mean, var;
  Shape shape(const Shape& in) const override {
    const bool ok = two_d ? in.size() == 4 : (in.size() == 2 || in.size() == 3);
    if (!ok || in[1] != features)
      reject(detail::concat("expects an (N, ", features, two_d ? ", H, W)" : ") or (N, C, L)", " input, got ",
                            shape_str(in)));
    return in;
  }
  // Python's (x - mean) / sqrt(var + eps) * weight + bias, each step rounded to float32.
  void run(const Shape& in, const Shape&, const float* x, float* y) const override {
    int64_t inner = 1;
    for (size_t i = 2; i < in.size(); ++i) inner *= in[i];
    for (int64_t n = 0; n < in[0]; ++n)
      for (int64_t c = 0; c < features; ++c) {
        const float m = mean[c], s = std::sqrt(var[c] + eps);
        const int64_t base = (n * features + c) * inner;
        for (int64_t i = base; i < base + inner; ++i) {
          float t = (x[i] - m) / s;
          if (!weight.empty()) t = t * weight[c] + bias[c];
          y[i] = t;
        }
      }
  }
};

struct LayerNorm : Layer {
  Shape normalized;
  float eps = 1e-5f;
  std::vector<float> weight, bias;
  Shape shape(const Shape& in) const override {
    const bool ok = in.size() >= normalized.size() &&
                    std::equal(normalized.begin(), normalized.end(), in.end() - normalized.size());
    if (!ok) reject(detail::concat("expects an input ending in ", shape_str(normalized), ", got ", shape_str(in)));
    return in;
  }
  void run(const Shape& in, const Shape&, const float* x, float* y) const override {
    const int64_t len = elements(normalized), rows = len ? elements(in) / len : 0;
    for (int64_t r = 0; r < rows; ++r) {
      const float* xs = x + r * len;
      float* ys = y + r * len;
      double sum = 0, sq = 0;
      for (int64_t j = 0; j < len; ++j) sum += xs[j];
      const float mean = static_cast<float>(sum / static_cast<double>(len));
      for (int64_t j = 0; j < len; ++j) sq += double(xs[j] - mean) * double(xs[j] - mean);
      const float sd = std::sqrt(static_cast<float>(sq / static_cast<double>(len)) + eps);
      for (int64_t j = 0; j < len; ++j) {
        float t = (xs[j] - mean) / sd;
        if (!weight.empty()) t = t * weight[j] + bias[j];
        ys[j] = t;
      }
    }
  }
};

struct Flatten : Layer {
  int64_t start = 1, end = -1;
  bool view() const override { return true; }
  Shape shape(const Shape& in) const override {
    if (in.empty()) return {1};
    const int64_t s = axis(*this, start, in.size()), e = axis(*this, end, in.size());
    if (s > e) reject(detail::concat("start_dim ", start, " comes after end_dim ", end, " for a ", in.size(), "-d input"));
    Shape out(in.begin(), in.begin() + s);
    int64_t merged = 1;
    for (int64_t i = s; i <= e; ++i) merged *= in[i];
    out.push_back(merged);
    out.insert(out.end(), in.begin() + e + 1, in.end());
    return out;
  }
  void run(const Shape&, const Shape&, const float*, float*) const override {}
};

struct Passthrough : Layer {  // Dropout (in eval mode) and Identity
  bool view() const override { return true; }
  Shape shape(const Shape& in) const override { return in; }
  void run(const Shape&, const Shape&, const float*, float*) const override {}
};

}  // namespace

// ------------------------------------------------------------------ weights

const StoredTensor& Weights::find(const std::string& key) {
  const auto it = file_.tensors().find("model." + key);
  if (it == file_.tensors().end()) throw IoError(detail::concat(path(), " holds no tensor model.", key));
  taken_.insert(it->first);
  return it->second;
}

bool Weights::has(const std::string& key) const { return file_.tensors().count("model." + key) != 0; }

std::vector<float> Weights::floats(const std::string& key, const Shape& shape) {
  const StoredTensor& t = find(key);
  if (t.shape != shape)
    throw IoError(detail::concat(path(), ": tensor model.", key, " has shape ", shape_str(t.shape), ", its layer needs ",
                                 shape_str(shape)));
  std::vector<float> out(static_cast<size_t>(t.elements));
  if (t.dtype == "F32") {
    std::memcpy(out.data(), t.data, out.size() * sizeof(float));
  } else if (t.dtype == "BF16") {  // the top half of a float32: widening is exact
    for (size_t i = 0; i < out.size(); ++i) {
      const uint32_t bits = uint32_t(t.data[2 * i]) << 16 | uint32_t(t.data[2 * i + 1]) << 24;
      std::memcpy(&out[i], &bits, sizeof(float));
    }
  } else {
    throw IoError(detail::concat(path(), ": tensor model.", key, " is ", t.dtype, ", not F32 or BF16"));
  }
  return out;
}

std::vector<unsigned char> Weights::raw(const std::string& key, const char* dtype, int64_t count) {
  const StoredTensor& t = find(key);
  if (t.dtype != dtype || t.elements != count)
    throw IoError(detail::concat(path(), ": tensor model.", key, " is ", t.dtype, " with ", t.elements,
                                 " values, its layer needs ", dtype, " with ", count));
  const int64_t bytes = count * (t.dtype == "I64" ? 8 : t.dtype == "I32" ? 4 : 1);
  return std::vector<unsigned char>(t.data, t.data + bytes);
}

void Layer::reject(const std::string& why) const {
  throw std::invalid_argument(detail::concat("module '", name, "' (", kind, "): ", why));
}

// ------------------------------------------------------------------ building

namespace {

std::unique_ptr<Layer> conv2d_layer(const Config& cfg, const std::string& name, Weights& w) {
  auto l = std::make_unique<Conv2d>();
  ember_conv2d_shape& g = l->geo;
  g.c = cfg.integer("in_channels", 1), g.o = cfg.integer("out_channels", 1), g.groups = cfg.integer("groups", 1, 1);
  std::tie(g.kh, g.kw) = cfg.pair("kernel_size", 1);
  std::tie(g.stride_h, g.stride_w) = cfg.pair("stride", 1);
  std::tie(g.dilation_h, g.dilation_w) = cfg.pair("dilation", 1);
  if (g.c % g.groups || g.o % g.groups) cfg.bad("groups", "a divisor of in_channels and out_channels");
  const json::Value* padding = cfg.get("padding");
  if (padding != nullptr && padding->is(Kind::string) && padding->string == "valid") {
  } else if (padding != nullptr && padding->is(Kind::string) && padding->string == "same") {
    if (g.stride_h != 1 || g.stride_w != 1) cfg.bad("padding", "'same' only with stride 1");
    const int64_t th = g.dilation_h * (g.kh - 1), tw = g.dilation_w * (g.kw - 1);  // as Python splits it
    g.pad_top = th / 2, g.pad_bottom = th - th / 2, g.pad_left = tw / 2, g.pad_right = tw - tw / 2;
  } else {
    std::tie(g.pad_top, g.pad_left) = cfg.pair("padding", 0, padding);
    g.pad_bottom = g.pad_top, g.pad_right = g.pad_left;
  }
  l->weight = w.floats(name + "weight", {g.o, g.c / g.groups, g.kh, g.kw});
  if (cfg.boolean("bias", true)) l->bias = w.floats(name + "bias", {g.o});
  return l;
}

std::unique_ptr<Layer> linear_layer(const Config& cfg, const std::string& name, Weights& w) {
  auto l = std::make_unique<Linear>();
  l->in_features = cfg.integer("in_features", 0), l->out_features = cfg.integer("out_features", 0);
  l->weight = w.floats(name + "weight", {l->out_features, l->in_features});
  if (cfg.boolean("bias", true)) l->bias = w.floats(name + "bias", {l->out_features});
  return l;
}

// Checked as Python's QuantizedWeight checks a file's arrays (ember_qweight::check).
std::unique_ptr<Layer> quant_linear_layer(const Config& cfg, const std::string& name, Weights& w) {
  auto l = std::make_unique<QuantLinear>();
  l->in_features = cfg.integer("in_features", 1), l->out_features = cfg.integer("out_features", 1);
  const int64_t bits = cfg.integer("bits", 1);
  const json::Value* group = cfg.get("group_size");
  const int64_t group_size = bits == 4 ? cfg.integer("group_size", 1) : (group && group->integral ? group->integer : 0);
  try {
    l->weight = std::make_unique<ember_qweight>(static_cast<int>(bits), l->out_features, l->in_features, group_size);
  } catch (const std::invalid_argument& e) {
    damaged(w.path(), cfg.name, e.what());
  }
  ember_qweight& q = *l->weight;
  q.data = w.raw(name + "weight_data", bits == 8 ? "I8" : "U8", static_cast<int64_t>(q.data.size()));
  q.scales = w.floats(name + "weight_scales", {static_cast<int64_t>(q.scales.size())});
  if (bits == 8) {
    const std::vector<unsigned char> cs = w.raw(name + "weight_colsum", "I32", static_cast<int64_t>(q.colsum.size()));
    std::memcpy(q.colsum.data(), cs.data(), cs.size());
  }
  try {
    q.check();
  } catch (const std::invalid_argument& e) {
    damaged(w.path(), cfg.name, e.what());
  }
  if (w.has(name + "bias") || cfg.boolean("bias", true)) l->bias = w.floats(name + "bias", {l->out_features});
  return l;
}

std::unique_ptr<Layer> pool_layer(const Config& cfg, bool max) {
  auto l = std::make_unique<Pool>();
  l->mode = max ? Pool::max : Pool::avg;
  ember_pool2d_shape& g = l->geo;
  std::tie(g.kh, g.kw) = cfg.pair("kernel_size", 1);
  const json::Value* stride = cfg.get("stride");
  if (stride == nullptr || stride->is(Kind::null))
    g.stride_h = g.kh, g.stride_w = g.kw;
  else
    std::tie(g.stride_h, g.stride_w) = cfg.pair("stride", 1);
  std::tie(g.pad_h, g.pad_w) = cfg.pair("padding", 0);
  g.dilation_h = g.dilation_w = 1;
  if (max) std::tie(g.dilation_h, g.dilation_w) = cfg.pair("dilation", 1);
  g.ceil_mode = cfg.boolean("ceil_mode", false);
  l->count_include_pad = cfg.boolean("count_include_pad", true);
  return l;
}

std::unique_ptr<Layer> adaptive_layer(const Config& cfg) {
  auto l = std::make_unique<AdaptiveAvgPool>();
  const json::Value* size = cfg.get("output_size");
  auto one = [&](const json::Value& e) -> int64_t {
    if (e.is(Kind::null)) return 0;
    if (!e.is(Kind::number) || !e.integral || e.integer < 1 || e.integer >= (int64_t(1) << 40))
      cfg.bad("output_size", "an int >= 1 or a pair of them (or null)");
    return e.integer;
  };
  if (size == nullptr) cfg.bad("output_size", "given");
  if (size->is(Kind::array)) {
    if (size->items.size() != 2) cfg.bad("output_size", "an int or a pair");
    l->oh = one(size->items[0]), l->ow = one(size->items[1]);
  } else {
    l->oh = l->ow = one(*size);
    if (l->oh == 0) cfg.bad("output_size", "an int >= 1 or a pair");
  }
  return l;
}

std::unique_ptr<Layer> batch_norm_layer(const Config& cfg, const std::string& name, Weights& w, bool two_d) {
  auto l = std::make_unique<BatchNorm>();
  l->two_d = two_d;
  l->features = cfg.integer("num_features", 1);
  l->eps = static_cast<float>(cfg.number("eps", 1e-5));
  if (!cfg.boolean("track_running_stats", true))
    throw Unsupported(detail::concat("module '", name.substr(0, name.size() - 1), "' (BatchNorm without running ",
                                     "statistics) normalises by each batch's own statistics; inference here needs "
                                     "the running ones"));
  if (cfg.boolean("affine", true)) {
    l->weight = w.floats(name + "weight", {l->features});
    l->bias = w.floats(name + "bias", {l->features});
  }
  l->mean = w.floats(name + "running_mean", {l->features});
  l->var = w.floats(name + "running_var", {l->features});
  if (w.has(name + "num_batches_tracked")) w.raw(name + "num_batches_tracked", "I64", 1);
  return l;
}

std::unique_ptr<Layer> layer_norm_layer(const Config& cfg, const std::string& name, Weights& w) {
  auto l = std::make_unique<LayerNorm>();
  const json::Value* shape = cfg.get("normalized_shape");
  if (shape != nullptr && shape->is(Kind::array)) {
    for (const json::Value& d : shape->items) {
      if (!d.is(Kind::number) || !d.integral || d.integer < 1 || d.integer >= (int64_t(1) << 40))
        cfg.bad("normalized_shape", "an int >= 1 or a list of them");
      l->normalized.push_back(d.integer);
    }
    if (l->normalized.empty() || l->normalized.size() > 8) cfg.bad("normalized_shape", "1 to 8 sizes");
  } else {
    l->normalized = {cfg.integer("normalized_shape", 1)};
  }
  l->eps = static_cast<float>(cfg.number("eps", 1e-5));
  if (cfg.boolean("elementwise_affine", true)) {
    l->weight = w.floats(name + "weight", l->normalized);
    l->bias = w.floats(name + "bias", l->normalized);
  }
  return l;
}

}  // namespace

void build(const json::Value& d, const std::string& name, Weights& w, std::vector<std::unique_ptr<Layer>>& out) {
  const std::string where = name.empty() ? "the model" : name;
  const json::Value* cls = d.find("class");
  const json::Value* config = d.find("config");
  const json::Value* children = d.find("children");
  if (cls == nullptr || !cls->is(Kind::string) || config == nullptr || !config->is(Kind::object))
    damaged(w.path(), where, "the architecture lacks its class or config");
  const std::string& c = cls->string;
  const std::string prefix = name.empty() ? "" : name + ".";
  if (c == "nn.Sequential") {
    if (children == nullptr || !children->is(Kind::object)) damaged(w.path(), where, "nn.Sequential without children");
    for (const auto& [child, sub] : children->members) build(sub, prefix + child, w, out);
    return;
  }
  if (children != nullptr && !(children->is(Kind::object) && children->members.empty()))
    throw Unsupported(detail::concat("module '", where, "' (", c, ") has sub-modules: the C API runs nn.Sequential "
                                     "models of Ember's layers"));
  const Config cfg{*config, w.path(), where};
  std::unique_ptr<Layer> l;
  std::unique_ptr<Activation> act;
  if (c == "nn.Conv2d") l = conv2d_layer(cfg, prefix, w);
  else if (c == "nn.Linear") l = linear_layer(cfg, prefix, w);
  else if (c == "quant.QuantLinear") l = quant_linear_layer(cfg, prefix, w);
  else if (c == "nn.MaxPool2d") l = pool_layer(cfg, true);
  else if (c == "nn.AvgPool2d") l = pool_layer(cfg, false);
  else if (c == "nn.AdaptiveAvgPool2d") l = adaptive_layer(cfg);
  else if (c == "nn.BatchNorm2d" || c == "nn.BatchNorm1d") l = batch_norm_layer(cfg, prefix, w, c == "nn.BatchNorm2d");
  else if (c == "nn.LayerNorm") l = layer_norm_layer(cfg, prefix, w);
  else if (c == "nn.Dropout" || c == "nn.Identity") l = std::make_unique<Passthrough>();
  else if (c == "nn.Flatten") {
    auto f = std::make_unique<Flatten>();
    f->start = cfg.integer("start_dim", INT64_MIN / 2, 1), f->end = cfg.integer("end_dim", INT64_MIN / 2, -1);
    l = std::move(f);
  } else if (c == "nn.Softmax") {
    auto f = std::make_unique<Softmax>();
    f->dim = cfg.integer("dim", INT64_MIN / 2, -1);
    l = std::move(f);
  } else if (c == "nn.ReLU" || c == "nn.LeakyReLU" || c == "nn.Sigmoid" || c == "nn.Tanh" || c == "nn.GELU" ||
             c == "nn.SiLU") {
    act = std::make_unique<Activation>();
    act->fn = c == "nn.ReLU" ? Activation::relu : c == "nn.LeakyReLU" ? Activation::leaky_relu
              : c == "nn.Sigmoid" ? Activation::sigmoid : c == "nn.Tanh" ? Activation::tanh
              : c == "nn.GELU" ? Activation::gelu : Activation::silu;
    act->slope = static_cast<float>(cfg.number("negative_slope", 0.01));
    l = std::move(act);
  } else {
    throw Unsupported(detail::concat("module '", where, "' is a ", c, ", which the C API cannot run (it runs "
                                     "nn.Sequential models of Conv2d, Linear, QuantLinear, pooling, BatchNorm, "
                                     "LayerNorm, activations, Softmax, Flatten and Dropout)"));
  }
  l->name = where, l->kind = c;
  out.push_back(std::move(l));
}

}  // namespace ember::capi::model
