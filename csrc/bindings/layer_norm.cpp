// ember._C.layer_norm_fwd and layer_norm_bwd, rms_norm_fwd and rms_norm_bwd: (rows, n) arrays,
// float32 or float64.
// ember.kernels.layer_norm folds the leading dimensions into rows and allocates the outputs;
// these check everything again.
#include <cmath>

#include "bindings/common.h"
#include "ops/layer_norm/layer_norm.h"

namespace ember::bindings {
namespace {

// An optional vector of n values: an empty view (null data) for None.
template <class T>
ArrayView optional_vector(const py::handle& obj, const char* name, int64_t n) {
  if (obj.is_none()) return ArrayView();
  return array_arg(obj, name, {dtype_of<T>(), {n}});
}

// center: layer normalisation (with a mean, and a bias); else RMS normalisation (mean_obj and
// b_obj are None).
template <class T>
void fwd_t(const py::handle& x_obj, const py::handle& w_obj, const py::handle& b_obj, double eps,
           const py::handle& y_obj, const py::handle& mean_obj, const py::handle& rstd_obj, bool center) {
  const ArrayView x = array_arg(x_obj, "input", {dtype_of<T>(), {-1, -1}});
  const int64_t rows = x.shape[0], n = x.shape[1];
  EMBER_CHECK_VALUE(std::isfinite(eps) && eps >= 0, "eps must be finite and >= 0, got ", eps);
  const ArrayView w = optional_vector<T>(w_obj, "weight", n), b = optional_vector<T>(b_obj, "bias", n);
  const ArrayView y = array_arg(y_obj, "out", {dtype_of<T>(), {rows, n}, Layout::contiguous, Access::write});
  const ArrayView mean = center ? array_arg(mean_obj, "out_mean", {dtype_of<T>(), {rows}, Layout::contiguous,
                                                                   Access::write})
                                 : ArrayView();
  const ArrayView rstd = array_arg(rstd_obj, "out_rstd", {dtype_of<T>(), {rows}, Layout::contiguous, Access::write});
  check_disjoint({&y, &mean, &rstd});
  for (const ArrayView* out : {&y, &mean, &rstd})
    for (const ArrayView* in : {&x, &w, &b}) check_apart(*out, *in);
  const Active active;
  py::gil_scoped_release release;
  layer_norm::layer_norm_fwd(x.ptr<const T>(), w.ptr<const T>(), b.ptr<const T>(), rows, n, eps, y.ptr<T>(), mean.ptr<T>(), rstd.ptr<T>(),
                             active.nthreads, center);
}

void fwd(const py::handle& input, const py::handle& weight, const py::handle& bias, double eps, const py::handle& out,
         const py::handle& out_mean, const py::handle& out_rstd) {
  if (dtype_of_arg(input) == DType::float64)
    return fwd_t<double>(input, weight, bias, eps, out, out_mean, out_rstd, true);
  fwd_t<float>(input, weight, bias, eps, out, out_mean, out_rstd, true);
}

void rms_fwd(const py::handle& input, const py::handle& weight, double eps, const py::handle& out,
             const py::handle& out_rstd) {
  const py::none none;
  if (dtype_of_arg(input) == DType::float64) return fwd_t<double>(input, weight, none, eps, out, none, out_rstd, false);
  fwd_t<float>(input, weight, none, eps, out, none, out_rstd, false);
}

template <class T>
void bwd_t(const py::handle& dy_obj, const py::handle& x_obj, const py::handle& w_obj, const py::handle& mean_obj,
           const py::handle& rstd_obj, const py::handle& dx_obj, const py::handle& dw_obj, const py::handle& db_obj,
           bool center) {
  const ArrayView x = array_arg(x_obj, "input", {dtype_of<T>(), {-1, -1}});
  const int64_t rows = x.shape[0], n = x.shape[1];
  const ArrayView dy = array_arg(dy_obj, "grad_output", {dtype_of<T>(), {rows, n}});
  const ArrayView w = optional_vector<T>(w_obj, "weight", n);
  const ArrayView mean = center ? array_arg(mean_obj, "mean", {dtype_of<T>(), {rows}}) : ArrayView();
  const ArrayView rstd = array_arg(rstd_obj, "rstd", {dtype_of<T>(), {rows}});
  const ArrayView dx = array_arg(dx_obj, "out", {dtype_of<T>(), {rows, n}, Layout::contiguous, Access::write});
  ArrayView dw, db;
  if (!dw_obj.is_none())
    dw = array_arg(dw_obj, "out_weight", {dtype_of<T>(), {n}, Layout::contiguous, Access::write});
  if (!db_obj.is_none())
    db = array_arg(db_obj, "out_bias", {dtype_of<T>(), {n}, Layout::contiguous, Access::write});
  check_disjoint({&dx, &dw, &db});
  for (const ArrayView* out : std::initializer_list<const ArrayView*>{&dx, &dw, &db})
    for (const ArrayView* in : {&x, &dy, &w, &mean, &rstd}) check_apart(*out, *in);
  const Active active;
  py::gil_scoped_release release;
  layer_norm::layer_norm_bwd(dy.ptr<const T>(), x.ptr<const T>(), w.ptr<const T>(), mean.ptr<const T>(), rstd.ptr<const T>(), rows,
                             n, dx.ptr<T>(), dw.ptr<T>(), db.ptr<T>(), active.nthreads, center);
}

void bwd(const py::handle& grad_output, const py::handle& input, const py::handle& weight, const py::handle& mean,
         const py::handle& rstd, const py::handle& out, const py::handle& out_weight, const py::handle& out_bias) {
  if (dtype_of_arg(input) == DType::float64)
    return bwd_t<double>(grad_output, input, weight, mean, rstd, out, out_weight, out_bias, true);
  bwd_t<float>(grad_output, input, weight, mean, rstd, out, out_weight, out_bias, true);
}

void rms_bwd(const py::handle& grad_output, const py::handle& input, const py::handle& weight, const py::handle& rstd,
             const py::handle& out, const py::handle& out_weight) {
  const py::none none;
  if (dtype_of_arg(input) == DType::float64)
    return bwd_t<double>(grad_output, input, weight, none, rstd, out, out_weight, none, false);
  bwd_t<float>(grad_output, input, weight, none, rstd, out, out_weight, none, false);
}

}  // namespace

void bind_layer_norm(py::module_& m) {
  def(m, "layer_norm_fwd", &fwd,
      "out = (input - mean) * rstd * weight + bias over each row of input (rows, n), rstd = 1 / sqrt(var + eps),\n"
      "the sums in double; out_mean and out_rstd (rows,) get each row's mean and rstd. weight and bias (n,) may\n"
      "be None. float32 or float64, C-contiguous.",
      py::arg("input"), py::arg("weight"), py::arg("bias"), py::arg("eps"), py::arg("out"), py::arg("out_mean"),
      py::arg("out_rstd"));
  def(m, "layer_norm_bwd", &bwd,
      "out = the input gradient of layer_norm_fwd for grad_output, from its input, weight, mean and rstd;\n"
      "out_weight and out_bias (n,), if not None, get the weight and bias gradients.",
      py::arg("grad_output"), py::arg("input"), py::arg("weight"), py::arg("mean"), py::arg("rstd"), py::arg("out"),
      py::arg("out_weight"), py::arg("out_bias"));
  def(m, "rms_norm_fwd", &rms_fwd,
      "out = input * rstd * weight over each row of input (rows, n), rstd = 1 / sqrt(mean(input^2) + eps), the\n"
      "sums in double; out_rstd (rows,) gets each row's rstd. weight (n,) may be None.",
      py::arg("input"), py::arg("weight"), py::arg("eps"), py::arg("out"), py::arg("out_rstd"));
  def(m, "rms_norm_bwd", &rms_bwd,
      "out = the input gradient of rms_norm_fwd for grad_output, from its input, weight and rstd; out_weight\n"
      "(n,), if not None, gets the weight gradient.",
      py::arg("grad_output"), py::arg("input"), py::arg("weight"), py::arg("rstd"), py::arg("out"),
      py::arg("out_weight"));
}

}  // namespace ember::bindings
