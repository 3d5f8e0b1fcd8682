// ember._cuda bindings: conv2d_fwd, conv2d_bwd_data, conv2d_bwd_weight (NCHW / OIHW float32).
// The same arguments and checks as ember._C's, on device arrays.
#include "bindings/cuda_common.h"
#include "ops/conv2d/conv2d_cuda.h"

namespace ember::cuda_bind {
namespace {

using ember::conv2d::Geometry;

Geometry conv_geometry(const DevArray& x, const DevArray& w, const DevArray& y, int64_t sh, int64_t sw, int64_t pt,
                       int64_t pl, int64_t dh, int64_t dw, int64_t groups) {
  EMBER_CHECK_VALUE(sh >= 1 && sw >= 1, "stride must be >= 1, got (", sh, ", ", sw, ")");
  EMBER_CHECK_VALUE(dh >= 1 && dw >= 1, "dilation must be >= 1, got (", dh, ", ", dw, ")");
  EMBER_CHECK_VALUE(pt >= 0 && pl >= 0, "padding must be >= 0, got (", pt, ", ", pl, ")");
  EMBER_CHECK_VALUE(groups >= 1, "groups must be >= 1, got ", groups);
  Geometry g{x.shape[0], x.shape[1], x.shape[2], x.shape[3], w.shape[0], y.shape[2], y.shape[3],
             w.shape[2], w.shape[3], sh, sw, pt, pl, dh, dw, groups};
  EMBER_CHECK_VALUE(g.c % groups == 0 && g.o % groups == 0, "groups=", groups, " must divide the input channels (",
                    g.c, ") and the output channels (", g.o, ")");
  EMBER_CHECK_VALUE(w.shape[1] * groups == g.c, "weight has shape ", w.shape_str(), ": dimension 1 must be ",
                    g.c / groups, " (input channels ", g.c, " / groups ", groups, ")");
  EMBER_CHECK_VALUE(y.shape[0] == g.n && y.shape[1] == g.o, "output has shape ", y.shape_str(), ": expected (", g.n,
                    ", ", g.o, ", OH, OW)");
  // The kernels index with 32-bit integers inside images and GEMM dimensions.
  constexpr int64_t lim = int64_t(1) << 31;
  require_below(g.n * g.oh * g.ow, lim, "N * OH * OW");
  require_below(g.n * g.h * g.w, lim, "N * H * W");
  require_below(g.c * g.kh * g.kw, lim, "C * KH * KW");
  require_below(g.o * g.kh * g.kw, lim, "O * KH * KW");
  require_below(g.oh * g.sh + g.kh * g.dh + g.pt + g.h, lim, "the vertical extent (OH * stride + KH * dilation)");
  require_below(g.ow * g.sw + g.kw * g.dw + g.pl + g.w, lim, "the horizontal extent (OW * stride + KW * dilation)");
  require_below(g.groups, 65536, "groups");
  return g;
}

void py_conv2d_fwd(py::handle x_obj, py::handle w_obj, py::handle bias_obj, py::handle y_obj, int64_t sh, int64_t sw,
                   int64_t pt, int64_t pl, int64_t dh, int64_t dw, int64_t groups, bool relu, py::handle stream) {
  DevArray x = dense(x_obj, "input", DType::f32, {-1, -1, -1, -1});
  DevArray w = dense(w_obj, "weight", DType::f32, {-1, -1, -1, -1});
  DevArray y = dense(y_obj, "out", DType::f32, {-1, -1, -1, -1}, true);
  const Geometry g = conv_geometry(x, w, y, sh, sw, pt, pl, dh, dw, groups);
  require_apart(y, "out", x, "input");
  require_apart(y, "out", w, "weight");
  DevArray b;
  const float* bias = nullptr;
  if (optional_device_array(bias_obj, "bias", b)) {
    require_dtype(b, "bias", {DType::f32});
    require_shape(b, "bias", {g.o});
    require_contiguous(b, "bias");
    require_apart(y, "out", b, "bias");
    bias = b.data<const float>();
  }
  const auto s = stream_arg(stream);
  py::gil_scoped_release release;
  ember::cuda::conv2d_fwd(g, x.data<const float>(), w.data<const float>(), bias, relu, y.data<float>(), s);
}

void py_conv2d_bwd_data(py::handle dy_obj, py::handle w_obj, py::handle dx_obj, int64_t sh, int64_t sw, int64_t pt,
                        int64_t pl, int64_t dh, int64_t dw, int64_t groups, py::handle stream) {
  DevArray dy = dense(dy_obj, "grad_output", DType::f32, {-1, -1, -1, -1});
  DevArray w = dense(w_obj, "weight", DType::f32, {-1, -1, -1, -1});
  DevArray dx = dense(dx_obj, "out", DType::f32, {-1, -1, -1, -1}, true);
  const Geometry g = conv_geometry(dx, w, dy, sh, sw, pt, pl, dh, dw, groups);
  require_apart(dx, "out", dy, "grad_output");
  require_apart(dx, "out", w, "weight");
  const auto s = stream_arg(stream);
  py::gil_scoped_release release;
  ember::cuda::conv2d_bwd_data(g, dy.data<const float>(), w.data<const float>(), dx.data<float>(), s);
}

void py_conv2d_bwd_weight(py::handle x_obj, py::handle dy_obj, py::handle dw_obj, py::handle db_obj, int64_t sh,
                          int64_t sw, int64_t pt, int64_t pl, int64_t dh, int64_t dw, int64_t groups,
                          py::handle scratch_obj, py::handle stream) {
  DevArray x = dense(x_obj, "input", DType::f32, {-1, -1, -1, -1});
  DevArray dy = dense(dy_obj, "grad_output", DType::f32, {-1, -1, -1, -1});
  DevArray dwt = dense(dw_obj, "out", DType::f32, {-1, -1, -1, -1}, true);
  const Geometry g = conv_geometry(x, dwt, dy, sh, sw, pt, pl, dh, dw, groups);
  require_apart(dwt, "out", x, "input");
  require_apart(dwt, "out", dy, "grad_output");
  DevArray dba, scr;
  float* db = nullptr;
  if (optional_device_array(db_obj, "out_bias", dba)) {
    require_dtype(dba, "out_bias", {DType::f32});
    require_shape(dba, "out_bias", {g.o});
    require_contiguous(dba, "out_bias");
    require_writable(dba, "out_bias");
    require_apart(dba, "out_bias", x, "input");
    require_apart(dba, "out_bias", dy, "grad_output");
    require_apart(dba, "out_bias", dwt, "out");
    db = dba.data<float>();
  }
  float* scratch = nullptr;
  if (optional_device_array(scratch_obj, "scratch", scr)) {
    require_dtype(scr, "scratch", {DType::f32});
    require_contiguous(scr, "scratch");
    require_writable(scr, "scratch");
    const int64_t need = ember::cuda::conv2d_bwd_weight_scratch(g);
    EMBER_CHECK_VALUE(scr.size() >= need, "scratch has ", scr.size(), " elements; this problem needs ", need);
    for (const auto& [a, name] : {std::pair<const DevArray*, const char*>{&x, "input"}, {&dy, "grad_output"},
                                  {&dwt, "out"}})
      require_apart(scr, "scratch", *a, name);
    if (db) require_apart(scr, "scratch", dba, "out_bias");
    scratch = scr.data<float>();
  }
  const auto s = stream_arg(stream);
  py::gil_scoped_release release;
  ember::cuda::conv2d_bwd_weight(g, x.data<const float>(), dy.data<const float>(), dwt.data<float>(), db, scratch, s);
}

int64_t py_scratch_size(py::handle x_obj, py::handle dy_obj, py::handle dw_obj, int64_t sh, int64_t sw, int64_t pt,
                        int64_t pl, int64_t dh, int64_t dw, int64_t groups) {
  DevArray x = dense(x_obj, "input", DType::f32, {-1, -1, -1, -1});
  DevArray dy = dense(dy_obj, "grad_output", DType::f32, {-1, -1, -1, -1});
  DevArray dwt = dense(dw_obj, "out", DType::f32, {-1, -1, -1, -1});
  return ember::cuda::conv2d_bwd_weight_scratch(conv_geometry(x, dwt, dy, sh, sw, pt, pl, dh, dw, groups));
}

}  // namespace

void register_conv2d(py::module_& m) {
  m.def("conv2d_fwd", &py_conv2d_fwd,
        "out = act(conv2d(input, weight) + bias), NCHW input, OIHW weight, float32 C-contiguous device arrays;\n"
        "stride (sh, sw), top/left padding (pt, pl; bottom/right implied by out's size), dilation (dh, dw),\n"
        "groups, ReLU when relu. An implicit GEMM (no im2col buffer); bias and ReLU fused.",
        py::arg("input"), py::arg("weight"), py::arg("bias"), py::arg("out"), py::arg("sh"), py::arg("sw"),
        py::arg("pt"), py::arg("pl"), py::arg("dh"), py::arg("dw"), py::arg("groups"), py::arg("relu"),
        py::arg("stream") = 0);
  m.def("conv2d_bwd_data", &py_conv2d_bwd_data,
        "out = the gradient of conv2d_fwd with respect to its input (N, C, H, W), from grad_output and weight.",
        py::arg("grad_output"), py::arg("weight"), py::arg("out"), py::arg("sh"), py::arg("sw"), py::arg("pt"),
        py::arg("pl"), py::arg("dh"), py::arg("dw"), py::arg("groups"), py::arg("stream") = 0);
  m.def("conv2d_bwd_weight", &py_conv2d_bwd_weight,
        "out = the gradient with respect to the weight (O, C/groups, KH, KW), out_bias (O,) the bias's (or\n"
        "None). Deterministic: the sum over N*OH*OW is split in slices summed in a fixed order. scratch: a\n"
        "float32 device array of at least conv2d_bwd_weight_scratch_size(...) elements, or None to let the call\n"
        "take that memory with cudaMallocAsync on `stream` and give it back.",
        py::arg("input"), py::arg("grad_output"), py::arg("out"), py::arg("out_bias"), py::arg("sh"), py::arg("sw"),
        py::arg("pt"), py::arg("pl"), py::arg("dh"), py::arg("dw"), py::arg("groups"), py::arg("scratch") = py::none(),
        py::arg("stream") = 0);
  m.def("conv2d_bwd_weight_scratch_size", &py_scratch_size,
        "Floats of scratch conv2d_bwd_weight needs for these arrays on the current device (0: none).",
        py::arg("input"), py::arg("grad_output"), py::arg("out"), py::arg("sh"), py::arg("sw"), py::arg("pt"),
        py::arg("pl"), py::arg("dh"), py::arg("dw"), py::arg("groups"));
}

}  // namespace ember::cuda_bind
