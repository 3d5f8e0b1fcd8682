// ember._cuda bindings: cross_entropy_fwd, cross_entropy_bwd.
#include "bindings/cuda_common.h"
#include "ops/cross_entropy/cross_entropy_cuda.h"

namespace ember::cuda_bind {
namespace {

struct XentArrays {
  ArrayView z, target, weight, error;
  bool has_weight = false, has_error = false;
  ember::cuda::XentProblem p;
};

XentArrays xent_args(py::handle z_obj, py::handle target_obj, py::handle weight_obj, double eps, int64_t ignore_index,
                     py::handle error_obj) {
  XentArrays x;
  x.z = dense(z_obj, "logits", DType::float32, {-1, -1});
  const int64_t b = x.z.shape[0], v = x.z.shape[1];
  EMBER_CHECK_VALUE(v >= 1, "logits must have at least one class, got shape ", shape_str(x.z.shape));
  require_below(b, int64_t(1) << 31, "the number of rows");
  EMBER_CHECK_VALUE(eps >= 0.0 && eps <= 1.0, "label_smoothing (eps) must be in [0, 1], got ", eps);
  x.p.b = b;
  x.p.v = v;
  x.p.z = x.z.ptr<const float>();
  x.p.eps = static_cast<float>(eps);
  x.p.ignore_index = ignore_index;
  x.target = device_array(target_obj, "target", "int64 or float32");
  if (x.target.ndim() == 2) {
    check_dtype(x.target, {DType::float32});
    check_shape(x.target, {b, v});
    check_layout(x.target, Layout::contiguous);
    x.p.soft = x.target.ptr<const float>();
  } else {
    EMBER_CHECK_TYPE(x.target.dtype == DType::int64, "target must be int64 class indices of shape (", b,
                     ",) or float32 probabilities of shape (", b, ", ", v, "), got ", dtype_str(x.target),
                     " with shape ", shape_str(x.target.shape));
    check_shape(x.target, {b});
    check_layout(x.target, Layout::contiguous);
    x.p.target = x.target.ptr<const int64_t>();
  }
  if ((x.has_weight = optional_device_array(weight_obj, "weight", x.weight))) {
    check_dtype(x.weight, {DType::float32});
    check_shape(x.weight, {v});
    check_layout(x.weight, Layout::contiguous);
    x.p.weight = x.weight.ptr<const float>();
  }
  if ((x.has_error = optional_device_array(error_obj, "error", x.error))) {
    check_dtype(x.error, {DType::int32});
    check_shape(x.error, {1});
    check_writable(x.error);
  }
  return x;
}

void py_xent_fwd(py::handle z_obj, py::handle target_obj, py::handle weight_obj, double eps, int64_t ignore_index,
                 py::handle lse_obj, py::handle nll_obj, py::handle smooth_obj, py::handle error_obj,
                 py::handle stream) {
  XentArrays x = xent_args(z_obj, target_obj, weight_obj, eps, ignore_index, error_obj);
  const int64_t b = x.p.b;
  ArrayView lse = dense(lse_obj, "out_lse", DType::float64, {b}, Access::write);
  ArrayView nll = dense(nll_obj, "out_nll", DType::float64, {b}, Access::write);
  ArrayView smooth = dense(smooth_obj, "out_smooth", DType::float64, {b}, Access::write);
  for (const ArrayView* o : {&lse, &nll, &smooth}) {
    check_apart(*o, x.z);
    check_apart(*o, x.target);
    if (x.has_weight) check_apart(*o, x.weight);
    if (x.has_error) check_apart(*o, x.error);
  }
  bindings::check_disjoint({&lse, &nll, &smooth});
  const auto s = stream_arg(stream);
  int32_t* err = x.has_error ? x.error.ptr<int32_t>() : nullptr;
  py::gil_scoped_release release;
  ember::cuda::cross_entropy_fwd(x.p, lse.ptr<double>(), nll.ptr<double>(), smooth.ptr<double>(), err, s);
}

void py_xent_bwd(py::handle z_obj, py::handle target_obj, py::handle weight_obj, double eps, int64_t ignore_index,
                 py::handle lse_obj, py::handle scale_obj, py::handle out_obj, py::handle error_obj,
                 py::handle stream) {
  XentArrays x = xent_args(z_obj, target_obj, weight_obj, eps, ignore_index, error_obj);
  const int64_t b = x.p.b, v = x.p.v;
  ArrayView lse = dense(lse_obj, "lse", DType::float64, {b});
  ArrayView scale = dense(scale_obj, "scale", DType::float32, {b});
  ArrayView out = dense(out_obj, "out", DType::float32, {b, v}, Access::write);
  check_in_place(out, x.z);  // in place over the logits is allowed
  check_apart(out, x.target);
  if (x.has_weight) check_apart(out, x.weight);
  if (x.has_error) check_apart(out, x.error);
  check_apart(out, lse);
  check_apart(out, scale);
  const auto s = stream_arg(stream);
  int32_t* err = x.has_error ? x.error.ptr<int32_t>() : nullptr;
  py::gil_scoped_release release;
  ember::cuda::cross_entropy_bwd(x.p, lse.ptr<const double>(), scale.ptr<const float>(), out.ptr<float>(), err, s);
}

}  // namespace

void register_cross_entropy(py::module_& m) {
  m.def("cross_entropy_fwd", &py_xent_fwd,
        "Per-row softmax cross-entropy of float32 logits (B, V), C-contiguous, against int64 class indices (B,)\n"
        "or float32 probabilities (B, V), with optional float32 class weights (V,), label smoothing eps and\n"
        "ignore_index. Writes float64 (B,) out_lse (log-sum-exp), out_nll and out_smooth exactly as\n"
        "ember._C's cross-entropy does; the caller reduces them. A class index that is neither in [0, V) nor\n"
        "ignore_index makes its row NaN and, when `error` (int32 (1,), preset to >= B) is given, lowers\n"
        "error[0] to the first such row. One read of the logits; asynchronous on `stream`.",
        py::arg("logits"), py::arg("target"), py::arg("weight"), py::arg("eps"), py::arg("ignore_index"),
        py::arg("out_lse"), py::arg("out_nll"), py::arg("out_smooth"), py::arg("error") = py::none(),
        py::arg("stream") = 0);
  m.def("cross_entropy_bwd", &py_xent_bwd,
        "Gradient of the cross-entropy with respect to the logits: out = scale_r (a_r softmax(z_r) - b_r) with\n"
        "lse the forward's float64 (B,) log-sum-exps and scale float32 (B,) per-row factors (0 for ignored\n"
        "rows). out is float32 (B, V) C-contiguous and may be the logits themselves (in place). Bad class\n"
        "indices give NaN rows and lower `error` as in cross_entropy_fwd. One read of the logits and one\n"
        "write; asynchronous on `stream`.",
        py::arg("logits"), py::arg("target"), py::arg("weight"), py::arg("eps"), py::arg("ignore_index"),
        py::arg("lse"), py::arg("scale"), py::arg("out"), py::arg("error") = py::none(), py::arg("stream") = 0);
}

}  // namespace ember::cuda_bind
