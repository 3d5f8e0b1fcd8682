// ember._C.InferencePlan: a run of the float32 inference path's steps (nn/inference.py) --
// convolutions and linears (a following ReLU fused), ReLU, max/average/adaptive pooling and
// reshapes -- checked once for one input shape and then run in a single call, with the GIL
// released across all of them and the intermediate results in memory of its own. It calls the
// kernels exactly as conv2d_fwd, gemm, relu_fwd and the pooling bindings do, so its outputs are
// theirs bit for bit; what it saves is a Python call, an array and a round of argument checks
// per step. The weights are arguments of each run, read where they are at that call.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <memory>
#include <vector>

#include "bindings/common.h"
#include "bindings/geometry.h"
#include "ops/conv2d/conv2d.h"
#include "ops/eltwise/eltwise.h"
#include "ops/gemm/gemm.h"
#include "ops/pool2d/pool2d.h"

namespace ember::bindings {
namespace {

// The step kinds, numbered as nn/inference.py numbers them.
enum Kind : int { kConv, kLinear, kRelu, kMaxPool, kAvgPool, kAdaptive, kReshape };

using Extents = std::vector<int64_t>;

int64_t elements(const Extents& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

std::string str(const Extents& s);

// Every extent >= 0 and the float32 bytes of the whole countable in int64 (which elements() and
// every size computed from the extents then rely on).
void check_extents(const Extents& s, const char* what, size_t i) {
  int64_t bytes = int64_t(sizeof(float));
  for (int64_t d : s) {
    EMBER_CHECK_VALUE(d >= 0, "step ", i, ": ", what, " ", str(s), " has a negative extent");
    EMBER_CHECK_VALUE(!__builtin_mul_overflow(bytes, d, &bytes), "step ", i, ": ", what, " ", str(s),
                      " is too large");
  }
}

std::string str(const Extents& s) {
  Dims d;
  d.resize(static_cast<int>(s.size()));
  std::copy(s.begin(), s.end(), d.begin());
  return shape_str(d);
}

// A float32 array's description with these extents and no memory, for the geometry checks.
ArrayView shaped(const char* name, const Extents& s) {
  ArrayView v;
  v.name = name;
  v.dtype = DType::float32;
  v.shape.resize(static_cast<int>(s.size()));
  std::copy(s.begin(), s.end(), v.shape.begin());
  return v;
}

struct Step {
  Kind kind = kReshape;
  bool relu = false;  // a ReLU fused into a convolution's or a linear's epilogue
  Extents out;
  Extents weight;  // a convolution's or a linear's weight shape
  conv2d::Geometry conv{};
  pool2d::Geometry pool{};
  bool count_include_pad = true;
  int64_t rows = 0, in_features = 0;  // a linear's matrix product: rows x in_features @ weight^T
};

class InferencePlan {
 public:
  InferencePlan(const Extents& input, const std::vector<py::tuple>& steps) : input_(input) {
    check_extents(input, "the input shape", 0);
    Extents in = input;
    bool computes = false;
    for (size_t i = 0; i < steps.size(); ++i) {
      EMBER_CHECK_VALUE(steps[i].size() == 5, "step ", i, " must be (kind, args, out_shape, relu, weight_shape)");
      Step s = make_step(in, steps[i]);
      EMBER_CHECK_VALUE(s.kind == kReshape || in.size() < 7, "step ", i, ": at most 6 dimensions");
      if (s.kind != kReshape) {
        if (computes) scratch_ = std::max(scratch_, elements(in));  // the previous result is an intermediate
        computes = true;
        last_ = i;
      }
      weighted_ += s.kind == kConv || s.kind == kLinear;
      in = s.out;
      steps_.push_back(std::move(s));
    }
    EMBER_CHECK_VALUE(computes, "a plan needs a step that computes (not only reshapes)");
    output_ = in;
  }

  // The output for x (the plan's input shape, C-contiguous float32) and params: a weight and a
  // bias (or None) per convolution and linear, in the steps' order.
  py::array run(const py::handle& x_obj, const py::sequence& params) const {
    const ArrayView x = array_arg(x_obj, "input", {DType::float32, Shape::any(), Layout::contiguous});
    EMBER_CHECK_VALUE(Extents(x.shape.begin(), x.shape.end()) == input_, "input has shape ", shape_str(x.shape),
                      " but the plan was made for ", str(input_));
    EMBER_CHECK_VALUE(params.size() == 2 * weighted_, "params must hold ", 2 * weighted_,
                      " arrays (a weight and a bias or None per convolution and linear), got ", params.size());
    std::vector<const float*> args(2 * weighted_, nullptr);
    for (size_t i = 0, p = 0; i < steps_.size(); ++i) {
      const Step& s = steps_[i];
      if (s.kind != kConv && s.kind != kLinear) continue;
      const ArrayView w = array_arg(params[p], "weight", {DType::float32, Shape::any(), Layout::contiguous});
      EMBER_CHECK_VALUE(Extents(w.shape.begin(), w.shape.end()) == s.weight, "the weight of step ", i,
                        " has shape ", shape_str(w.shape), " but the plan was made for ", str(s.weight));
      args[p] = w.ptr<const float>();
      const py::handle b = params[p + 1];
      if (!b.is_none()) args[p + 1] = array_arg(b, "bias", {DType::float32, {s.weight[0]}}).ptr<const float>();
      p += 2;
    }
    py::array_t<float> y(output_);
    float* out = y.mutable_data();
    // Two buffers for the intermediate results (one more float: never a null pointer, even empty).
    const std::unique_ptr<float[]> scratch(new float[2 * static_cast<size_t>(scratch_) + 1]);
    const Active active;
    {
      py::gil_scoped_release release;
      const float* cur = x.ptr<const float>();
      int buffer = 0;  // which buffer the next intermediate result goes to
      for (size_t i = 0, p = 0; i < steps_.size(); ++i) {
        const Step& s = steps_[i];
        if (s.kind == kReshape) continue;
        float* dst = i == last_ ? out : scratch.get() + buffer * scratch_;
        const float* w = nullptr;
        const float* bias = nullptr;
        if (s.kind == kConv || s.kind == kLinear) w = args[p], bias = args[p + 1], p += 2;
        if (elements(s.out) > 0) execute(s, cur, w, bias, dst, active);
        cur = dst;
        buffer ^= 1;
      }
    }
    return std::move(y);
  }

 private:
  static Extents ints(const py::handle& obj, const char* what, size_t i) {
    try {
      return py::cast<Extents>(obj);
    } catch (const py::cast_error&) {
      throw TypeError(detail::concat("step ", i, ": ", what, " must be a tuple of ints"));
    }
  }

  Step make_step(const Extents& in, const py::tuple& t) const {
    const size_t i = steps_.size();
    Step s;
    s.kind = static_cast<Kind>(py::cast<int>(t[0]));
    const Extents a = ints(t[1], "args", i);
    s.out = ints(t[2], "out_shape", i);
    s.relu = py::cast<bool>(t[3]);
    if (!t[4].is_none()) s.weight = ints(t[4], "weight_shape", i);
    check_extents(s.out, "out_shape", i);
    check_extents(s.weight, "weight_shape", i);
    auto nargs = [&](size_t n) { EMBER_CHECK_VALUE(a.size() == n, "step ", i, " takes ", n, " args, got ", a.size()); };
    auto rank4 = [&](const Extents& e, const char* what) {
      EMBER_CHECK_VALUE(e.size() == 4, "step ", i, ": ", what, " must be 4-D, got ", str(e));
    };
    switch (s.kind) {
      case kConv:
        nargs(7);
        rank4(in, "its input"), rank4(s.weight, "its weight"), rank4(s.out, "its output");
        s.conv = conv_geometry(shaped("input", in), shaped("weight", s.weight), shaped("out", s.out), a[0], a[1],
                               a[2], a[3], a[4], a[5], a[6]);
        break;
      case kLinear: {
        nargs(2);
        // total == rows * part, without a product that could overflow
        auto rows_of = [&](int64_t total, int64_t part) {
          return part == 0 ? total == 0 : total % part == 0 && total / part == a[0];
        };
        EMBER_CHECK_VALUE(s.weight.size() == 2 && s.weight[1] == a[1] && a[0] >= 0 && rows_of(elements(in), a[1]) &&
                              rows_of(elements(s.out), s.weight[0]),
                          "step ", i, ": a linear of weight ", str(s.weight), " cannot take ", str(in), " to ",
                          str(s.out));
        s.rows = a[0], s.in_features = a[1];
        break;
      }
      case kRelu:
        nargs(0);
        EMBER_CHECK_VALUE(s.out == in, "step ", i, ": ReLU keeps the shape ", str(in), ", got ", str(s.out));
        break;
      case kMaxPool:
      case kAvgPool:
        nargs(s.kind == kMaxPool ? 8 : 7);
        rank4(in, "its input"), rank4(s.out, "its output");
        s.pool = pool_geometry(shaped("input", in), shaped("out", s.out), a[0], a[1], a[2], a[3], a[4], a[5],
                               s.kind == kMaxPool ? a[6] : 1, s.kind == kMaxPool ? a[7] : 1);
        pool2d::check_output(s.pool);
        s.count_include_pad = s.kind == kMaxPool || a[6] != 0;
        if (s.kind == kMaxPool || !s.count_include_pad) pool2d::check_windows_reach_input(s.pool);
        break;
      case kAdaptive:
        nargs(0);
        rank4(in, "its input"), rank4(s.out, "its output");
        EMBER_CHECK_VALUE(s.out[0] == in[0] && s.out[1] == in[1], "step ", i, ": pooling keeps N and C of ",
                          str(in), ", got ", str(s.out));
        s.pool = adaptive_pool_geometry(shaped("input", in), shaped("out", s.out));
        break;
      case kReshape:
        nargs(0);
        EMBER_CHECK_VALUE(elements(s.out) == elements(in), "step ", i, ": cannot reshape ", str(in), " to ",
                          str(s.out));
        break;
      default:
        throw std::invalid_argument(detail::concat("step ", i, " has an unknown kind ", static_cast<int>(s.kind)));
    }
    EMBER_CHECK_VALUE(!s.relu || s.kind == kConv || s.kind == kLinear, "step ", i,
                      ": only a convolution or a linear fuses a ReLU");
    return s;
  }

  static void execute(const Step& s, const float* x, const float* w, const float* bias, float* y,
                      const Active& active) {
    switch (s.kind) {
      case kConv:
        conv2d::conv2d_fwd(s.conv, x, w, bias, s.relu, y, active.isa, active.nthreads);
        return;
      case kLinear: {
        const int64_t n = s.weight[0];
        gemm::GemmArgs g;
        g.a = MatrixF32{x, s.rows, s.in_features, s.in_features, 1};
        g.b = MatrixF32{w, s.in_features, n, 1, s.in_features};  // weight^T
        g.c = {y, s.rows, n, n};
        g.bias = bias, g.relu = s.relu;
        gemm::gemm_cpu(g, active.isa, active.nthreads);
        return;
      }
      case kRelu:
        eltwise::relu_fwd(x, y, elements(s.out), active.nthreads);
        return;
      case kMaxPool:
        pool2d::max_pool2d_fwd(s.pool, x, y, nullptr, active.isa, active.nthreads);
        return;
      case kAvgPool:
        pool2d::avg_pool2d_fwd(s.pool, s.count_include_pad, x, y, active.nthreads);
        return;
      case kAdaptive:
        pool2d::adaptive_avg_pool2d_fwd(s.pool, x, y, active.nthreads);
        return;
      case kReshape:
        return;
    }
  }

  Extents input_, output_;
  std::vector<Step> steps_;
  int64_t scratch_ = 0;  // floats in each of the two intermediate buffers
  size_t weighted_ = 0;  // convolutions and linears
  size_t last_ = 0;      // the last step that computes: it writes the output
};

}  // namespace

void bind_inference(py::module_& m) {
  py::class_<InferencePlan>(m, "InferencePlan",
                            "Steps of a Sequential's float32 inference path for one input shape, run in one call.\n"
                            "Each step is (kind, args, out_shape, relu, weight_shape): kind 0 conv2d (args: stride,\n"
                            "top/left padding, dilation, groups), 1 linear (rows, in_features), 2 ReLU, 3 max pool\n"
                            "(kernel, stride, padding, dilation), 4 average pool (kernel, stride, padding,\n"
                            "count_include_pad), 5 adaptive average pool, 6 reshape. Every shape is checked here.")
      .def(py::init([](const Extents& input_shape, const std::vector<py::tuple>& steps) {
             return prefixed("InferencePlan", [&] { return std::make_unique<InferencePlan>(input_shape, steps); });
           }),
           py::arg("input_shape"), py::arg("steps"))
      .def(
          "run",
          [](const InferencePlan& plan, const py::handle& input, const py::sequence& params) {
            return prefixed("InferencePlan.run", [&] { return plan.run(input, params); });
          },
          "The output for input (float32, the plan's input shape) with params: a weight and a bias (or None)\n"
          "per convolution and linear, in order. Raises ValueError or TypeError for anything else.",
          py::arg("input"), py::arg("params"));
}

}  // namespace ember::bindings
