// ember._cuda bindings: conv2d_fwd, conv2d_bwd_data, conv2d_bwd_weight (NCHW / OIHW float32).
// The same arguments and checks as ember._C's, on device arrays.
#include "bindings/cuda_common.h"
#include "bindings/geometry.h"
#include "ops/conv2d/conv2d_cuda.h"

namespace ember::cuda_bind {
namespace {

using ember::conv2d::Geometry;

// The shared checks (bindings/geometry.h), then this module's limits: the kernels index with
// 32-bit integers inside images and GEMM dimensions.
Geometry cuda_geometry(const ArrayView& x, const ArrayView& w, const ArrayView& y, int64_t sh, int64_t sw, int64_t pt,
                       int64_t pl, int64_t dh, int64_t dw, int64_t groups) {
  const Geometry g = bindings::conv_geometry(x, w, y, sh, sw, pt, pl, dh, dw, groups);
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
  ArrayView x = dense(x_obj, "input", DType::float32, {-1, -1, -1, -1});
  ArrayView w = dense(w_obj, "weight", DType::float32, {-1, -1, -1, -1});
  ArrayView y = dense(y_obj, "out", DType::float32, {-1, -1, -1, -1}, Access::write);
  const Geometry g = cuda_geometry(x, w, y, sh, sw, pt, pl, dh, dw, groups);
  check_apart(y, x);
  check_apart(y, w);
  ArrayView b;
  const float* bias = nullptr;
  if (optional_device_array(bias_obj, "bias", b)) {
    check_dtype(b, {DType::float32});
    check_shape(b, {g.o});
    check_layout(b, Layout::contiguous);
    check_apart(y, b);
    bias = b.ptr<const float>();
  }
  const auto s = stream_arg(stream);
  py::gil_scoped_release release;
  ember::cuda::conv2d_fwd(g, x.ptr<const float>(), w.ptr<const float>(), bias, relu, y.ptr<float>(), s);
}

void py_conv2d_bwd_data(py::handle dy_obj, py::handle w_obj, py::handle dx_obj, int64_t sh, int64_t sw, int64_t pt,
                        int64_t pl, int64_t dh, int64_t dw, int64_t groups, py::handle stream) {
  ArrayView dy = dense(dy_obj, "grad_output", DType::float32, {-1, -1, -1, -1});
  ArrayView w = dense(w_obj, "weight", DType::float32, {-1, -1, -1, -1});
  ArrayView dx = dense(dx_obj, "out", DType::float32, {-1, -1, -1, -1}, Access::write);
  const Geometry g = cuda_geometry(dx, w, dy, sh, sw, pt, pl, dh, dw, groups);
  check_apart(dx, dy);
  check_apart(dx, w);
  const auto s = stream_arg(stream);
  py::gil_scoped_release release;
  ember::cuda::conv2d_bwd_data(g, dy.ptr<const float>(), w.ptr<const float>(), dx.ptr<float>(), s);
}

void py_conv2d_bwd_weight(py::handle x_obj, py::handle dy_obj, py::handle dw_obj, py::handle db_obj, int64_t sh,
                          int64_t sw, int64_t pt, int64_t pl, int64_t dh, int64_t dw, int64_t groups,
                          py::handle scratch_obj, py::handle stream) {
  ArrayView x = dense(x_obj, "input", DType::float32, {-1, -1, -1, -1});
  ArrayView dy = dense(dy_obj, "grad_output", DType::float32, {-1, -1, -1, -1});
  ArrayView dwt = dense(dw_obj, "out", DType::float32, {-1, -1, -1, -1}, Access::write);
  const Geometry g = cuda_geometry(x, dwt, dy, sh, sw, pt, pl, dh, dw, groups);
  check_apart(dwt, x);
  check_apart(dwt, dy);
  ArrayView dba, scr;
  float* db = nullptr;
  if (optional_device_array(db_obj, "out_bias", dba)) {
    check_dtype(dba, {DType::float32});
    check_shape(dba, {g.o});
    check_layout(dba, Layout::contiguous);
    check_writable(dba);
    check_apart(dba, x);
    check_apart(dba, dy);
    check_apart(dba, dwt);
    db = dba.ptr<float>();
  }
  float* scratch = nullptr;
  if (optional_device_array(scratch_obj, "scratch", scr)) {
    check_dtype(scr, {DType::float32});
    check_layout(scr, Layout::contiguous);
    check_writable(scr);
    const int64_t need = ember::cuda::conv2d_bwd_weight_scratch(g);
    EMBER_CHECK_VALUE(scr.size() >= need, "scratch has ", scr.size(), " elements; this problem needs ", need);
    for (const ArrayView* a : {&x, &dy, &dwt}) check_apart(scr, *a);
    if (db) check_apart(scr, dba);
    scratch = scr.ptr<float>();
  }
  const auto s = stream_arg(stream);
  py::gil_scoped_release release;
  ember::cuda::conv2d_bwd_weight(g, x.ptr<const float>(), dy.ptr<const float>(), dwt.ptr<float>(), db, scratch, s);
}

int64_t py_scratch_size(py::handle x_obj, py::handle dy_obj, py::handle dw_obj, int64_t sh, int64_t sw, int64_t pt,
                        int64_t pl, int64_t dh, int64_t dw, int64_t groups) {
  ArrayView x = dense(x_obj, "input", DType::float32, {-1, -1, -1, -1});
  ArrayView dy = dense(dy_obj, "grad_output", DType::float32, {-1, -1, -1, -1});
  ArrayView dwt = dense(dw_obj, "out", DType::float32, {-1, -1, -1, -1});
  return ember::cuda::conv2d_bwd_weight_scratch(cuda_geometry(x, dwt, dy, sh, sw, pt, pl, dh, dw, groups));
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
