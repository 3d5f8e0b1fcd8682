// ember._C.conv2d_fwd, conv2d_bwd_data, conv2d_bwd_weight and their references.
// ember.kernels.conv2d validates the parameters and allocates the outputs (kernels/_geometry.py);
// these check everything again before touching memory.
#include "bindings/common.h"
#include "bindings/geometry.h"
#include "ops/conv2d/conv2d.h"

namespace ember::bindings {
namespace {

template <class T>
ArrayView nchw(const py::handle& obj, const char* name, Access access = Access::read) {
  return array_arg(obj, name, {dtype_of<T>(), {-1, -1, -1, -1}, Layout::contiguous, access});
}

template <bool Ref, class T>
void fwd_t(const py::handle& x_obj, const py::handle& w_obj, const py::handle& bias_obj, const py::handle& y_obj,
           int64_t sh, int64_t sw, int64_t pt, int64_t pl, int64_t dh, int64_t dw, int64_t groups, bool relu) {
  const ArrayView x = nchw<T>(x_obj, "input"), w = nchw<T>(w_obj, "weight");
  const ArrayView y = nchw<T>(y_obj, "out", Access::write);
  const conv2d::Geometry g = conv_geometry(x, w, y, sh, sw, pt, pl, dh, dw, groups);
  check_apart(y, x);
  check_apart(y, w);
  const T* bias = nullptr;
  if (!bias_obj.is_none()) {
    const ArrayView b = array_arg(bias_obj, "bias", {dtype_of<T>(), {g.o}});
    check_apart(y, b);
    bias = b.template ptr<const T>();
  }
  const Active active;
  py::gil_scoped_release release;
  if constexpr (Ref)
    conv2d::conv2d_fwd_ref(g, x.ptr<const T>(), w.ptr<const T>(), bias, relu, y.ptr<T>());
  else
    conv2d::conv2d_fwd(g, x.ptr<const T>(), w.ptr<const T>(), bias, relu, y.ptr<T>(), active.isa, active.nthreads);
}

// The forward with bf16 products (float32 arrays in and out, groups == 1).
void fwd_bf16(const py::handle& x_obj, const py::handle& w_obj, const py::handle& bias_obj, const py::handle& y_obj,
              int64_t sh, int64_t sw, int64_t pt, int64_t pl, int64_t dh, int64_t dw, int64_t groups, bool relu) {
  const ArrayView x = nchw<float>(x_obj, "input"), w = nchw<float>(w_obj, "weight");
  const ArrayView y = nchw<float>(y_obj, "out", Access::write);
  const conv2d::Geometry g = conv_geometry(x, w, y, sh, sw, pt, pl, dh, dw, groups);
  EMBER_CHECK_VALUE(groups == 1, "the bf16 convolution takes groups=1 only, got groups=", groups);
  check_apart(y, x);
  check_apart(y, w);
  const float* bias = nullptr;
  if (!bias_obj.is_none()) {
    const ArrayView b = array_arg(bias_obj, "bias", {DType::float32, {g.o}});
    check_apart(y, b);
    bias = b.ptr<const float>();
  }
  const Active active;
  py::gil_scoped_release release;
  conv2d::conv2d_fwd_bf16(g, x.ptr<const float>(), w.ptr<const float>(), bias, relu, y.ptr<float>(), active.isa,
                          active.nthreads);
}

// The input gradient with bf16 products (float32 arrays; unit stride, groups == 1).
void bwd_data_bf16(const py::handle& dy_obj, const py::handle& w_obj, const py::handle& dx_obj, int64_t sh, int64_t sw,
                   int64_t pt, int64_t pl, int64_t dh, int64_t dw, int64_t groups) {
  const ArrayView dy = nchw<float>(dy_obj, "grad_output"), w = nchw<float>(w_obj, "weight");
  const ArrayView dx = nchw<float>(dx_obj, "out", Access::write);
  const conv2d::Geometry g = conv_geometry(dx, w, dy, sh, sw, pt, pl, dh, dw, groups);
  check_apart(dx, dy);
  check_apart(dx, w);
  EMBER_CHECK_VALUE(groups == 1 && sh == 1 && sw == 1 && pt <= (g.kh - 1) * dh && pl <= (g.kw - 1) * dw,
                    "the bf16 input gradient takes groups=1, unit stride and padding within the kernel's reach only");
  const Active active;
  py::gil_scoped_release release;
  conv2d::conv2d_bwd_data_bf16(g, dy.ptr<const float>(), w.ptr<const float>(), dx.ptr<float>(), active.isa,
                               active.nthreads);
}

template <bool Ref>
void fwd(const py::handle& input, const py::handle& weight, const py::handle& bias, const py::handle& out,
         int64_t sh, int64_t sw, int64_t pt, int64_t pl, int64_t dh, int64_t dw, int64_t groups, bool relu) {
  if (runs_float64<Ref>(input, "input", "conv2d_fwd"))
    return fwd_t<true, double>(input, weight, bias, out, sh, sw, pt, pl, dh, dw, groups, relu);
  fwd_t<Ref, float>(input, weight, bias, out, sh, sw, pt, pl, dh, dw, groups, relu);
}

template <bool Ref, class T>
void bwd_data_t(const py::handle& dy_obj, const py::handle& w_obj, const py::handle& dx_obj, int64_t sh, int64_t sw,
                int64_t pt, int64_t pl, int64_t dh, int64_t dw, int64_t groups) {
  const ArrayView dy = nchw<T>(dy_obj, "grad_output"), w = nchw<T>(w_obj, "weight");
  const ArrayView dx = nchw<T>(dx_obj, "out", Access::write);
  const conv2d::Geometry g = conv_geometry(dx, w, dy, sh, sw, pt, pl, dh, dw, groups);
  check_apart(dx, dy);
  check_apart(dx, w);
  const Active active;
  py::gil_scoped_release release;
  if constexpr (Ref)
    conv2d::conv2d_bwd_data_ref(g, dy.ptr<const T>(), w.ptr<const T>(), dx.ptr<T>());
  else
    conv2d::conv2d_bwd_data(g, dy.ptr<const T>(), w.ptr<const T>(), dx.ptr<T>(), active.isa, active.nthreads);
}

template <bool Ref>
void bwd_data(const py::handle& grad_output, const py::handle& weight, const py::handle& out, int64_t sh, int64_t sw,
              int64_t pt, int64_t pl, int64_t dh, int64_t dw, int64_t groups) {
  if (runs_float64<Ref>(grad_output, "grad_output", "conv2d_bwd_data"))
    return bwd_data_t<true, double>(grad_output, weight, out, sh, sw, pt, pl, dh, dw, groups);
  bwd_data_t<Ref, float>(grad_output, weight, out, sh, sw, pt, pl, dh, dw, groups);
}

// Bf16: the weight gradient with bf16 products (float32 arrays, groups == 1).
template <bool Ref, class T, bool Bf16 = false>
void bwd_weight_t(const py::handle& x_obj, const py::handle& dy_obj, const py::handle& dw_obj,
                  const py::handle& db_obj, int64_t sh, int64_t sw, int64_t pt, int64_t pl, int64_t dh, int64_t dw,
                  int64_t groups) {
  const ArrayView x = nchw<T>(x_obj, "input"), dy = nchw<T>(dy_obj, "grad_output");
  const ArrayView dwt = nchw<T>(dw_obj, "out", Access::write);
  const conv2d::Geometry g = conv_geometry(x, dwt, dy, sh, sw, pt, pl, dh, dw, groups);
  check_apart(dwt, x);
  check_apart(dwt, dy);
  T* db = nullptr;
  if (!db_obj.is_none()) {
    const ArrayView dbv = array_arg(db_obj, "out_bias", {dtype_of<T>(), {g.o}, Layout::contiguous, Access::write});
    for (const ArrayView* in : {&x, &dy, &dwt}) check_apart(dbv, *in);
    db = dbv.ptr<T>();
  }
  if constexpr (Bf16) EMBER_CHECK_VALUE(groups == 1, "the bf16 weight gradient takes groups=1 only, got ", groups);
  const Active active;
  py::gil_scoped_release release;
  if constexpr (Ref)
    conv2d::conv2d_bwd_weight_ref(g, x.ptr<const T>(), dy.ptr<const T>(), dwt.ptr<T>(), db);
  else if constexpr (Bf16)
    conv2d::conv2d_bwd_weight_bf16(g, x.ptr<const T>(), dy.ptr<const T>(), dwt.ptr<T>(), db, active.isa,
                                   active.nthreads);
  else
    conv2d::conv2d_bwd_weight(g, x.ptr<const T>(), dy.ptr<const T>(), dwt.ptr<T>(), db, active.isa,
                              active.nthreads);
}

template <bool Ref>
void bwd_weight(const py::handle& input, const py::handle& grad_output, const py::handle& out,
                const py::handle& out_bias, int64_t sh, int64_t sw, int64_t pt, int64_t pl, int64_t dh, int64_t dw,
                int64_t groups) {
  if (runs_float64<Ref>(input, "input", "conv2d_bwd_weight"))
    return bwd_weight_t<true, double>(input, grad_output, out, out_bias, sh, sw, pt, pl, dh, dw, groups);
  bwd_weight_t<Ref, float>(input, grad_output, out, out_bias, sh, sw, pt, pl, dh, dw, groups);
}

}  // namespace

// The geometry arguments every conv2d binding takes after its arrays.
#define EMBER_CONV_GEOMETRY_ARGS                                                                            \
  py::arg("stride_h"), py::arg("stride_w"), py::arg("pad_top"), py::arg("pad_left"), py::arg("dilation_h"), \
      py::arg("dilation_w"), py::arg("groups")

void bind_conv2d(py::module_& m) {
  def(m, "conv2d_fwd", &fwd<false>,
      "out = act(conv2d(input, weight) + bias), PyTorch's NCHW / OIHW layouts, every array C-contiguous\n"
      "float32; the bottom and right padding follow from out's OH x OW. act is ReLU when relu. The algorithm\n"
      "(depthwise, Winograd, per-tap GEMMs, few-channel direct, implicit GEMM) follows the shape.",
      py::arg("input"), py::arg("weight"), py::arg("bias"), py::arg("out"), EMBER_CONV_GEOMETRY_ARGS,
      py::arg("relu"));
  def(m, "conv2d_fwd_bf16", &fwd_bf16,
      "conv2d_fwd with bf16 products: input and weight (float32) rounded to bf16, each product summed in float32;\n"
      "groups must be 1. Same arguments as conv2d_fwd.",
      py::arg("input"), py::arg("weight"), py::arg("bias"), py::arg("out"), py::arg("stride_h"), py::arg("stride_w"),
      py::arg("pad_top"), py::arg("pad_left"), py::arg("dilation_h"), py::arg("dilation_w"), py::arg("groups"),
      py::arg("relu"));
  def(m, "conv2d_bwd_data_bf16", &bwd_data_bf16,
      "conv2d_bwd_data with bf16 products (grad_output and weight rounded to bf16, sums in float32); groups=1,\n"
      "unit stride, padding at most (kernel - 1) * dilation. Same arguments as conv2d_bwd_data.",
      py::arg("grad_output"), py::arg("weight"), py::arg("out"), EMBER_CONV_GEOMETRY_ARGS);
  def(m, "conv2d_bwd_weight_bf16", &bwd_weight_t<false, float, true>,
      "conv2d_bwd_weight with bf16 products (input and grad_output rounded to bf16, sums in float32; the bias\n"
      "gradient from the float32 grad_output); groups=1. Same arguments as conv2d_bwd_weight.",
      py::arg("input"), py::arg("grad_output"), py::arg("out"), py::arg("out_bias"), EMBER_CONV_GEOMETRY_ARGS);
  def(m, "conv2d_fwd_ref", &fwd<true>,
      "The reference conv2d_fwd (plain loops, double accumulation); float32 or float64.", py::arg("input"),
      py::arg("weight"), py::arg("bias"), py::arg("out"), EMBER_CONV_GEOMETRY_ARGS, py::arg("relu"));
  def(m, "conv2d_bwd_data", &bwd_data<false>,
      "out = the input gradient of conv2d_fwd for grad_output (N O OH OW) and weight; out is N C H W.",
      py::arg("grad_output"), py::arg("weight"), py::arg("out"), EMBER_CONV_GEOMETRY_ARGS);
  def(m, "conv2d_bwd_data_ref", &bwd_data<true>,
      "The reference conv2d_bwd_data (plain loops, double accumulation); float32 or float64.",
      py::arg("grad_output"), py::arg("weight"), py::arg("out"), EMBER_CONV_GEOMETRY_ARGS);
  def(m, "conv2d_bwd_weight", &bwd_weight<false>,
      "out = the weight gradient of conv2d_fwd for input and grad_output (O C/groups KH KW), and out_bias\n"
      "(O values, or None) the bias gradient. Summed per thread, so the order depends on the thread count.",
      py::arg("input"), py::arg("grad_output"), py::arg("out"), py::arg("out_bias"), EMBER_CONV_GEOMETRY_ARGS);
  def(m, "conv2d_bwd_weight_ref", &bwd_weight<true>,
      "The reference conv2d_bwd_weight (plain loops, double accumulation); float32 or float64.", py::arg("input"),
      py::arg("grad_output"), py::arg("out"), py::arg("out_bias"), EMBER_CONV_GEOMETRY_ARGS);
}

#undef EMBER_CONV_GEOMETRY_ARGS

}  // namespace ember::bindings
