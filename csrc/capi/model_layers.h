// The layers of the C API's models (see model.h), included by model_build.cpp, which makes them
// from a checkpoint. Each mirrors its Python layer's arithmetic: the same kernel where Python
// calls one, the same float32 operations in the same order where Python computes with NumPy
// (-ffp-contract=off keeps them unfused), so that the convolution, linear, pooling, ReLU,
// LeakyReLU, GELU, LayerNorm, BatchNorm and quantized layers agree bit for bit; the
// exponentials of Sigmoid, SiLU, Tanh and Softmax agree to a few units in the last place (NumPy
// has its own).
#pragma once

#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "capi/geometry.h"
#include "capi/model.h"
#include "capi/qweight.h"
#include "ops/eltwise/eltwise.h"
#include "ops/gemm/gemm.h"
#include "ops/layer_norm/layer_norm.h"

namespace ember::capi::model::layers {

inline int64_t elements(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

inline std::string shape_str(const Shape& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + (s.size() == 1 ? ",)" : ")");
}

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
      case gelu:  // Python's kernel
        eltwise::gelu_fwd(x, y, n, active_isa(), threads());
        return;
    }
  }
};

// The index of dimension `dim` (negative: from the end) of a rank-`rank` input.
inline int64_t axis(const Layer& l, int64_t dim, size_t rank) {
  const int64_t r = static_cast<int64_t>(rank);
  if (dim < -r || dim >= r) l.reject(detail::concat("dim ", dim, " is out of range for a ", r, "-d input"));
  return dim < 0 ? dim + r : dim;
}

struct Softmax : Layer {
  int64_t dim = -1;
  bool implicit = false;  // no dim given: PyTorch's legacy choice, 0 for 1- and 3-D input, else 1
  int64_t axis_of(const Shape& in) const {
    return implicit ? (in.size() <= 1 || in.size() == 3 ? 0 : 1) : axis(*this, dim, in.size());
  }
  Shape shape(const Shape& in) const override {
    axis_of(in);
    return in;
  }
  void run(const Shape& in, const Shape&, const float* x, float* y) const override {
    const int64_t d = axis_of(in);
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
  void run(const Shape& in, const Shape&, const float* x, float* y) const override {  // Python's kernel
    const int64_t len = elements(normalized), rows = len ? elements(in) / len : 0;
    std::vector<float> mean(static_cast<size_t>(rows)), rstd(static_cast<size_t>(rows));
    layer_norm::layer_norm_fwd(x, weight.empty() ? nullptr : weight.data(), bias.empty() ? nullptr : bias.data(), rows,
                               len, eps, y, mean.data(), rstd.data(), threads());
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


}  // namespace ember::capi::model::layers
