// ember._C.max_pool2d_fwd/bwd, avg_pool2d_fwd/bwd, adaptive_avg_pool2d_fwd/bwd and their references.
// ember.kernels.pool2d validates the parameters and allocates the outputs; these check everything again.
#include "bindings/common.h"
#include "bindings/geometry.h"
#include "ops/pool2d/pool2d.h"

namespace ember::bindings {
namespace {

template <class T>
ArrayView nchw(const py::handle& obj, const char* name, Shape shape = {-1, -1, -1, -1},
               Access access = Access::read) {
  return array_arg(obj, name, {dtype_of<T>(), shape, Layout::contiguous, access});
}

template <bool Ref, class T>
void max_fwd_t(const py::handle& x_obj, const py::handle& y_obj, const py::handle& idx_obj, int64_t kh, int64_t kw,
               int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw) {
  const ArrayView x = nchw<T>(x_obj, "input");
  const ArrayView y = nchw<T>(y_obj, "out", {-1, -1, -1, -1}, Access::write);
  const pool2d::Geometry g = pool_geometry(x, y, kh, kw, sh, sw, ph, pw, dh, dw);
  pool2d::check_output(g);
  pool2d::check_windows_reach_input(g);
  check_apart(y, x);
  int64_t* idx = nullptr;
  if (!idx_obj.is_none()) {
    const ArrayView iv = array_arg(idx_obj, "out_indices", {DType::int64, {y.shape[0], y.shape[1], g.oh, g.ow},
                                                            Layout::contiguous, Access::write});
    check_apart(iv, x);
    check_apart(iv, y);
    idx = iv.ptr<int64_t>();
  }
  const Active active;
  py::gil_scoped_release release;
  if constexpr (Ref)
    pool2d::max_pool2d_fwd_ref(g, x.ptr<const T>(), y.ptr<T>(), idx);
  else
    pool2d::max_pool2d_fwd(g, x.ptr<const T>(), y.ptr<T>(), idx, active.isa, active.nthreads);
}

template <bool Ref>
void max_fwd(const py::handle& input, const py::handle& out, const py::handle& out_indices, int64_t kh, int64_t kw,
             int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw) {
  if (runs_float64<Ref>(input, "input", "max_pool2d_fwd"))
    return max_fwd_t<true, double>(input, out, out_indices, kh, kw, sh, sw, ph, pw, dh, dw);
  max_fwd_t<Ref, float>(input, out, out_indices, kh, kw, sh, sw, ph, pw, dh, dw);
}

template <bool Ref, class T>
void max_bwd_t(const py::handle& dy_obj, const py::handle& idx_obj, const py::handle& dx_obj) {
  const ArrayView dx = nchw<T>(dx_obj, "out", {-1, -1, -1, -1}, Access::write);
  const ArrayView dy = nchw<T>(dy_obj, "grad_output", {dx.shape[0], dx.shape[1], -1, -1});
  const ArrayView idx = array_arg(idx_obj, "indices", {DType::int64, {dy.shape[0], dy.shape[1], dy.shape[2],
                                                                      dy.shape[3]}});
  pool2d::check_indices(idx.ptr<const int64_t>(), idx.size(), dx.shape[2] * dx.shape[3]);
  check_apart(dx, dy);
  check_apart(dx, idx);
  const pool2d::Geometry g = pool_geometry(dx, dy, 1, 1, 1, 1, 0, 0, 1, 1);
  const Active active;
  py::gil_scoped_release release;
  if constexpr (Ref)
    pool2d::max_pool2d_bwd_ref(g, dy.ptr<const T>(), idx.ptr<const int64_t>(), dx.ptr<T>());
  else
    pool2d::max_pool2d_bwd(g, dy.ptr<const T>(), idx.ptr<const int64_t>(), dx.ptr<T>(), active.nthreads);
}

template <bool Ref>
void max_bwd(const py::handle& grad_output, const py::handle& indices, const py::handle& out) {
  if (runs_float64<Ref>(grad_output, "grad_output", "max_pool2d_bwd"))
    return max_bwd_t<true, double>(grad_output, indices, out);
  max_bwd_t<Ref, float>(grad_output, indices, out);
}

template <bool Ref, class T>
void avg_fwd_t(const py::handle& x_obj, const py::handle& y_obj, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
               int64_t ph, int64_t pw, bool count_include_pad) {
  const ArrayView x = nchw<T>(x_obj, "input");
  const ArrayView y = nchw<T>(y_obj, "out", {-1, -1, -1, -1}, Access::write);
  const pool2d::Geometry g = pool_geometry(x, y, kh, kw, sh, sw, ph, pw, 1, 1);
  pool2d::check_output(g);
  if (!count_include_pad) pool2d::check_windows_reach_input(g);
  check_apart(y, x);
  const Active active;
  py::gil_scoped_release release;
  if constexpr (Ref)
    pool2d::avg_pool2d_fwd_ref(g, count_include_pad, x.ptr<const T>(), y.ptr<T>());
  else
    pool2d::avg_pool2d_fwd(g, count_include_pad, x.ptr<const T>(), y.ptr<T>(), active.nthreads);
}

template <bool Ref>
void avg_fwd(const py::handle& input, const py::handle& out, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
             int64_t ph, int64_t pw, bool count_include_pad) {
  if (runs_float64<Ref>(input, "input", "avg_pool2d_fwd"))
    return avg_fwd_t<true, double>(input, out, kh, kw, sh, sw, ph, pw, count_include_pad);
  avg_fwd_t<Ref, float>(input, out, kh, kw, sh, sw, ph, pw, count_include_pad);
}

template <bool Ref, class T>
void avg_bwd_t(const py::handle& dy_obj, const py::handle& dx_obj, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
               int64_t ph, int64_t pw, bool count_include_pad) {
  const ArrayView dx = nchw<T>(dx_obj, "out", {-1, -1, -1, -1}, Access::write);
  const ArrayView dy = nchw<T>(dy_obj, "grad_output", {dx.shape[0], dx.shape[1], -1, -1});
  const pool2d::Geometry g = pool_geometry(dx, dy, kh, kw, sh, sw, ph, pw, 1, 1);
  pool2d::check_output(g);
  if (!count_include_pad) pool2d::check_windows_reach_input(g);
  check_apart(dx, dy);
  const Active active;
  py::gil_scoped_release release;
  if constexpr (Ref)
    pool2d::avg_pool2d_bwd_ref(g, count_include_pad, dy.ptr<const T>(), dx.ptr<T>());
  else
    pool2d::avg_pool2d_bwd(g, count_include_pad, dy.ptr<const T>(), dx.ptr<T>(), active.nthreads);
}

template <bool Ref>
void avg_bwd(const py::handle& grad_output, const py::handle& out, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
             int64_t ph, int64_t pw, bool count_include_pad) {
  if (runs_float64<Ref>(grad_output, "grad_output", "avg_pool2d_bwd"))
    return avg_bwd_t<true, double>(grad_output, out, kh, kw, sh, sw, ph, pw, count_include_pad);
  avg_bwd_t<Ref, float>(grad_output, out, kh, kw, sh, sw, ph, pw, count_include_pad);
}

template <bool Ref, class T>
void adaptive_fwd_t(const py::handle& x_obj, const py::handle& y_obj) {
  const ArrayView x = nchw<T>(x_obj, "input");
  const ArrayView y = nchw<T>(y_obj, "out", {x.shape[0], x.shape[1], -1, -1}, Access::write);
  const pool2d::Geometry g = adaptive_pool_geometry(x, y);
  check_apart(y, x);
  const Active active;
  py::gil_scoped_release release;
  if constexpr (Ref)
    pool2d::adaptive_avg_pool2d_fwd_ref(g, x.ptr<const T>(), y.ptr<T>());
  else
    pool2d::adaptive_avg_pool2d_fwd(g, x.ptr<const T>(), y.ptr<T>(), active.nthreads);
}

template <bool Ref>
void adaptive_fwd(const py::handle& input, const py::handle& out) {
  if (runs_float64<Ref>(input, "input", "adaptive_avg_pool2d_fwd")) return adaptive_fwd_t<true, double>(input, out);
  adaptive_fwd_t<Ref, float>(input, out);
}

template <bool Ref, class T>
void adaptive_bwd_t(const py::handle& dy_obj, const py::handle& dx_obj) {
  const ArrayView dx = nchw<T>(dx_obj, "out", {-1, -1, -1, -1}, Access::write);
  const ArrayView dy = nchw<T>(dy_obj, "grad_output", {dx.shape[0], dx.shape[1], -1, -1});
  const pool2d::Geometry g = adaptive_pool_geometry(dx, dy);
  check_apart(dx, dy);
  const Active active;
  py::gil_scoped_release release;
  if constexpr (Ref)
    pool2d::adaptive_avg_pool2d_bwd_ref(g, dy.ptr<const T>(), dx.ptr<T>());
  else
    pool2d::adaptive_avg_pool2d_bwd(g, dy.ptr<const T>(), dx.ptr<T>(), active.nthreads);
}

template <bool Ref>
void adaptive_bwd(const py::handle& grad_output, const py::handle& out) {
  if (runs_float64<Ref>(grad_output, "grad_output", "adaptive_avg_pool2d_bwd"))
    return adaptive_bwd_t<true, double>(grad_output, out);
  adaptive_bwd_t<Ref, float>(grad_output, out);
}

}  // namespace

// The window arguments of the pooling bindings.
#define EMBER_POOL_WINDOW_ARGS                                                                              \
  py::arg("kernel_h"), py::arg("kernel_w"), py::arg("stride_h"), py::arg("stride_w"), py::arg("pad_h"), \
      py::arg("pad_w")

void bind_pool2d(py::module_& m) {
  const char* ref = "The reference of the function without _ref (plain loops); float32 or float64.";
  def(m, "max_pool2d_fwd", &max_fwd<false>,
      "out = the max over each window of input (N C H W, float32, C-contiguous), PyTorch's rules (padding\n"
      "never chosen, first maximum on ties, NaN wins); out_indices (int64, like out, or None) gets each\n"
      "maximum's flat index h * W + w within its plane.",
      py::arg("input"), py::arg("out"), py::arg("out_indices"), EMBER_POOL_WINDOW_ARGS, py::arg("dilation_h"),
      py::arg("dilation_w"));
  def(m, "max_pool2d_fwd_ref", &max_fwd<true>, ref, py::arg("input"), py::arg("out"), py::arg("out_indices"),
      EMBER_POOL_WINDOW_ARGS, py::arg("dilation_h"), py::arg("dilation_w"));
  def(m, "max_pool2d_bwd", &max_bwd<false>,
      "out (N C H W) = 0, then out[plane, indices] += grad_output for every output of max_pool2d_fwd.",
      py::arg("grad_output"), py::arg("indices"), py::arg("out"));
  def(m, "max_pool2d_bwd_ref", &max_bwd<true>, ref, py::arg("grad_output"), py::arg("indices"), py::arg("out"));
  def(m, "avg_pool2d_fwd", &avg_fwd<false>,
      "out = the mean of each window of input, PyTorch's clipping and divisor (count_include_pad).",
      py::arg("input"), py::arg("out"), EMBER_POOL_WINDOW_ARGS, py::arg("count_include_pad"));
  def(m, "avg_pool2d_fwd_ref", &avg_fwd<true>, ref, py::arg("input"), py::arg("out"), EMBER_POOL_WINDOW_ARGS,
      py::arg("count_include_pad"));
  def(m, "avg_pool2d_bwd", &avg_bwd<false>,
      "out (N C H W) = grad_output spread back over each window's valid elements, over its divisor.",
      py::arg("grad_output"), py::arg("out"), EMBER_POOL_WINDOW_ARGS, py::arg("count_include_pad"));
  def(m, "avg_pool2d_bwd_ref", &avg_bwd<true>, ref, py::arg("grad_output"), py::arg("out"), EMBER_POOL_WINDOW_ARGS,
      py::arg("count_include_pad"));
  def(m, "adaptive_avg_pool2d_fwd", &adaptive_fwd<false>,
      "out (N C OH OW) = the mean of input over PyTorch's adaptive windows (1 x 1: global average pooling).",
      py::arg("input"), py::arg("out"));
  def(m, "adaptive_avg_pool2d_fwd_ref", &adaptive_fwd<true>, ref, py::arg("input"), py::arg("out"));
  def(m, "adaptive_avg_pool2d_bwd", &adaptive_bwd<false>,
      "out (N C H W) = grad_output spread evenly over each adaptive window.", py::arg("grad_output"),
      py::arg("out"));
  def(m, "adaptive_avg_pool2d_bwd_ref", &adaptive_bwd<true>, ref, py::arg("grad_output"), py::arg("out"));
}

#undef EMBER_POOL_WINDOW_ARGS

}  // namespace ember::bindings
