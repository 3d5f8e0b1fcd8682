// ember._cuda bindings: max_pool2d_fwd/bwd, avg_pool2d_fwd/bwd, adaptive_avg_pool2d_fwd/bwd.
// The same arguments and checks as ember._C's pooling, on device arrays.
#include "bindings/cuda_common.h"
#include "bindings/geometry.h"
#include "ops/pool2d/pool2d_cuda.h"

namespace ember::cuda_bind {
namespace {

using bindings::pool_geometry;
using ember::pool2d::Geometry;

void py_max_pool2d_fwd(py::handle x_obj, py::handle y_obj, py::handle idx_obj, int64_t kh, int64_t kw, int64_t sh,
                       int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw, py::handle stream) {
  ArrayView x = dense(x_obj, "input", DType::float32, {-1, -1, -1, -1});
  ArrayView y = dense(y_obj, "out", DType::float32, {-1, -1, -1, -1}, Access::write);
  const Geometry g = pool_geometry(x, y, kh, kw, sh, sw, ph, pw, dh, dw);
  pool2d::check_output(g);
  pool2d::check_windows_reach_input(g);
  check_apart(y, x);
  ArrayView ia;
  int64_t* idx = nullptr;
  if (optional_device_array(idx_obj, "out_indices", ia)) {
    check_dtype(ia, {DType::int64});
    check_shape(ia, {y.shape[0], y.shape[1], y.shape[2], y.shape[3]});
    check_layout(ia, Layout::contiguous);
    check_writable(ia);
    check_apart(ia, x);
    check_apart(ia, y);
    idx = ia.ptr<int64_t>();
  }
  const auto s = stream_arg(stream);
  py::gil_scoped_release release;
  ember::cuda::max_pool2d_fwd(g, x.ptr<const float>(), y.ptr<float>(), idx, s);
}

void py_max_pool2d_bwd(py::handle dy_obj, py::handle idx_obj, py::handle dx_obj, py::handle stream) {
  ArrayView dx = dense(dx_obj, "out", DType::float32, {-1, -1, -1, -1}, Access::write);
  ArrayView dy = dense(dy_obj, "grad_output", DType::float32, {dx.shape[0], dx.shape[1], -1, -1});
  ArrayView idx = dense(idx_obj, "indices", DType::int64, {dy.shape[0], dy.shape[1], dy.shape[2], dy.shape[3]});
  check_apart(dx, dy);
  check_apart(dx, idx);
  const Geometry g = pool_geometry(dx, dy, 1, 1, 1, 1, 0, 0, 1, 1);
  const auto s = stream_arg(stream);
  py::gil_scoped_release release;
  ember::cuda::max_pool2d_bwd(g, dy.ptr<const float>(), idx.ptr<const int64_t>(), dx.ptr<float>(), s);
}

void py_avg_pool2d_fwd(py::handle x_obj, py::handle y_obj, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                       int64_t pw, bool count_include_pad, py::handle stream) {
  ArrayView x = dense(x_obj, "input", DType::float32, {-1, -1, -1, -1});
  ArrayView y = dense(y_obj, "out", DType::float32, {-1, -1, -1, -1}, Access::write);
  const Geometry g = pool_geometry(x, y, kh, kw, sh, sw, ph, pw, 1, 1);
  pool2d::check_output(g);
  if (!count_include_pad) pool2d::check_windows_reach_input(g);
  check_apart(y, x);
  const auto s = stream_arg(stream);
  py::gil_scoped_release release;
  ember::cuda::avg_pool2d_fwd(g, count_include_pad, x.ptr<const float>(), y.ptr<float>(), s);
}

void py_avg_pool2d_bwd(py::handle dy_obj, py::handle dx_obj, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                       int64_t ph, int64_t pw, bool count_include_pad, py::handle stream) {
  ArrayView dx = dense(dx_obj, "out", DType::float32, {-1, -1, -1, -1}, Access::write);
  ArrayView dy = dense(dy_obj, "grad_output", DType::float32, {dx.shape[0], dx.shape[1], -1, -1});
  const Geometry g = pool_geometry(dx, dy, kh, kw, sh, sw, ph, pw, 1, 1);
  pool2d::check_output(g);
  if (!count_include_pad) pool2d::check_windows_reach_input(g);
  check_apart(dx, dy);
  const auto s = stream_arg(stream);
  py::gil_scoped_release release;
  ember::cuda::avg_pool2d_bwd(g, count_include_pad, dy.ptr<const float>(), dx.ptr<float>(), s);
}

void py_adaptive_avg_pool2d_fwd(py::handle x_obj, py::handle y_obj, py::handle stream) {
  ArrayView x = dense(x_obj, "input", DType::float32, {-1, -1, -1, -1});
  ArrayView y = dense(y_obj, "out", DType::float32, {x.shape[0], x.shape[1], -1, -1}, Access::write);
  const Geometry g = bindings::adaptive_pool_geometry(x, y);
  check_apart(y, x);
  const auto s = stream_arg(stream);
  py::gil_scoped_release release;
  ember::cuda::adaptive_avg_pool2d_fwd(g, x.ptr<const float>(), y.ptr<float>(), s);
}

void py_adaptive_avg_pool2d_bwd(py::handle dy_obj, py::handle dx_obj, py::handle stream) {
  ArrayView dx = dense(dx_obj, "out", DType::float32, {-1, -1, -1, -1}, Access::write);
  ArrayView dy = dense(dy_obj, "grad_output", DType::float32, {dx.shape[0], dx.shape[1], -1, -1});
  const Geometry g = bindings::adaptive_pool_geometry(dx, dy);
  check_apart(dx, dy);
  const auto s = stream_arg(stream);
  py::gil_scoped_release release;
  ember::cuda::adaptive_avg_pool2d_bwd(g, dy.ptr<const float>(), dx.ptr<float>(), s);
}

}  // namespace

void register_pool2d(py::module_& m) {
  m.def("max_pool2d_fwd", &py_max_pool2d_fwd,
        "Max pooling of float32 NCHW input into out (N, C, OH, OW), PyTorch's rules (first maximum wins a tie,\n"
        "NaN wins, padding never chosen); out_indices (int64, out's shape, or None) receives each maximum's\n"
        "flat index h * W + w in its input plane. Asynchronous on `stream`.",
        py::arg("input"), py::arg("out"), py::arg("out_indices"), py::arg("kh"), py::arg("kw"), py::arg("sh"),
        py::arg("sw"), py::arg("ph"), py::arg("pw"), py::arg("dh"), py::arg("dw"), py::arg("stream") = 0);
  m.def("max_pool2d_bwd", &py_max_pool2d_bwd,
        "out = 0, then out[plane, indices] += grad_output, indices being max_pool2d_fwd's (entries outside the\n"
        "plane are skipped). Exact and deterministic when windows do not overlap; with overlapping windows\n"
        "an input chosen three or more times is summed with atomics (rounding may vary by an ulp).",
        py::arg("grad_output"), py::arg("indices"), py::arg("out"), py::arg("stream") = 0);
  m.def("avg_pool2d_fwd", &py_avg_pool2d_fwd,
        "Average pooling of float32 NCHW input into out, PyTorch's clipping and count_include_pad rules.",
        py::arg("input"), py::arg("out"), py::arg("kh"), py::arg("kw"), py::arg("sh"), py::arg("sw"), py::arg("ph"),
        py::arg("pw"), py::arg("count_include_pad"), py::arg("stream") = 0);
  m.def("avg_pool2d_bwd", &py_avg_pool2d_bwd,
        "Gradient of avg_pool2d_fwd: each input gathers the outputs whose windows cover it (deterministic).",
        py::arg("grad_output"), py::arg("out"), py::arg("kh"), py::arg("kw"), py::arg("sh"), py::arg("sw"),
        py::arg("ph"), py::arg("pw"), py::arg("count_include_pad"), py::arg("stream") = 0);
  m.def("adaptive_avg_pool2d_fwd", &py_adaptive_avg_pool2d_fwd,
        "Adaptive average pooling of float32 NCHW input into out (N, C, OH, OW): window i spans rows\n"
        "[floor(i H / OH), ceil((i + 1) H / OH)), likewise columns.",
        py::arg("input"), py::arg("out"), py::arg("stream") = 0);
  m.def("adaptive_avg_pool2d_bwd", &py_adaptive_avg_pool2d_bwd,
        "Gradient of adaptive_avg_pool2d_fwd: a deterministic gather into out (N, C, H, W).",
        py::arg("grad_output"), py::arg("out"), py::arg("stream") = 0);
}

}  // namespace ember::cuda_bind
