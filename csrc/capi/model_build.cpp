// Making a model's layers from a checkpoint: the module description read key by key, the
// weights taken by name, every claim checked (see model.h; the layers: model_layers.h).
#include <cstring>
#include <limits>

#include "capi/model_layers.h"

namespace ember::capi::model {
namespace {

using Kind = json::Value::Kind;
using layers::shape_str;

// Thrown for a description or weights that do not make a valid layer: the file is damaged.
template <class... Parts>
[[noreturn]] void damaged(const std::string& path, const std::string& name, const Parts&... parts) {
  throw IoError(detail::concat(path, ": module '", name, "': ", parts...));
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

using namespace layers;

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
  if (bits != 8 && bits != 4) cfg.bad("bits", "8 or 4");
  if (cfg.boolean("codebook", false))
    throw Unsupported(detail::concat(w.path(), ": module '", name.substr(0, name.size() - 1),
                                     "' holds int4 weights in the codebook format, which this library does not ",
                                     "run; quantize with codebook=False (int4 in groups or int8) for the C API"));
  const json::Value* group = cfg.get("group_size");
  // int8 with a group size is int8 in groups; without one (null), one scale per channel
  const bool grouped8 = bits == 8 && group && group->integral;
  const int64_t group_size = bits == 4 || grouped8 ? cfg.integer("group_size", 1) : 0;
  try {
    l->weight = std::make_unique<ember_qweight>(static_cast<int>(bits), l->out_features, l->in_features, group_size,
                                                grouped8);
  } catch (const std::invalid_argument& e) {
    damaged(w.path(), cfg.name, e.what());
  }
  ember_qweight& q = *l->weight;
  q.data = w.raw(name + "weight_data", bits == 8 && !grouped8 ? "I8" : "U8", static_cast<int64_t>(q.data.size()));
  if (grouped8) {  // the 16-bit scales as little-endian bytes
    const std::vector<unsigned char> bytes =
        w.raw(name + "weight_scales", "U8", static_cast<int64_t>(2 * q.scales16.size()));
    std::memcpy(q.scales16.data(), bytes.data(), bytes.size());
  } else {
    q.scales = w.floats(name + "weight_scales", {static_cast<int64_t>(q.scales.size())});
  }
  if (bits == 8 && !grouped8) {
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
    throw Unsupported(detail::concat(w.path(), ": module '", name.substr(0, name.size() - 1),
                                     "' (BatchNorm without running statistics) normalises by each batch's own ",
                                     "statistics; inference here needs the running ones"));
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
    if (cfg.boolean("bias", true)) l->bias = w.floats(name + "bias", l->normalized);
  }
  return l;
}

}  // namespace

void build(const json::Value& d, const std::string& name, Weights& w, std::vector<std::unique_ptr<Layer>>& out) {
  const std::string where = name.empty() ? "the model" : name;
  if (const json::Value* same = d.find("same_as"); same != nullptr)
    throw Unsupported(detail::concat(w.path(), ": module '", where, "' is module '",
                                     same->is(Kind::string) ? same->string : "?",
                                     "' applied again: the C API runs models whose layers each appear once"));
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
    throw Unsupported(detail::concat(w.path(), ": module '", where, "' (", c,
                                     ") has sub-modules: the C API runs nn.Sequential models of Ember's layers"));
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
    const json::Value* dim = cfg.get("dim");
    f->implicit = dim != nullptr && dim->is(Kind::null);
    if (!f->implicit) f->dim = cfg.integer("dim", INT64_MIN / 2, -1);
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
    throw Unsupported(detail::concat(w.path(), ": module '", where, "' is a ", c,
                                     ", which the C API cannot run (it runs nn.Sequential models of Conv2d, Linear, ",
                                     "QuantLinear, pooling, BatchNorm, LayerNorm, activations, Softmax, Flatten and ",
                                     "Dropout)"));
  }
  l->name = where, l->kind = c;
  out.push_back(std::move(l));
}

}  // namespace ember::capi::model
